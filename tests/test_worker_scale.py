"""Several detection workers sharing the cameras through leases in the database.

The lease rules are tested in-process on whatever database the suite runs on (SQLite included: there the
conditional UPDATE is what keeps a camera with one worker). The process tests run real `run_detection`
processes with the real YOLO model against the suite's PostgreSQL test database: killed with SIGKILL, a worker's
cameras move to the others within one lease; stopped with SIGTERM, a worker gives its cameras back and exits 0.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from detection.leases import LeaseKeeper
from detection.models import Worker
from locations.models import Camera, CrowdLog, Location

from .conftest import wait_for

REPO = Path(settings.BASE_DIR)
IMAGES = REPO.parent / "shared" / "data" / "mall" / "images"

pytestmark = pytest.mark.django_db(transaction=True)

needs_model = pytest.mark.skipif(
    not Path(settings.DETECTION_MODEL).exists(),
    reason="DETECTION_MODEL does not point at local weights (scripts/test sets it to ../shared/models)",
)
needs_images = pytest.mark.skipif(not IMAGES.is_dir(), reason="../shared/data/mall is not beside the repo")
needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="worker processes share the test database only on PostgreSQL (DATABASE_URL); SQLite tests run in-memory",
)


def make_cameras(n: int, source: str = "/nonexistent/never-sampled") -> list[Camera]:
    location = Location.objects.create(name="Stadium", capacity_limit=500)
    return [Camera.objects.create(location=location, name=f"gate {i}", source=source) for i in range(n)]


def leased() -> dict[int, str]:
    return dict(Camera.objects.values_list("pk", "leased_by"))


# --- the lease rules, in-process -------------------------------------------------------------------------------------


def test_one_worker_claims_every_camera_and_a_second_gets_a_fair_share() -> None:
    cameras = make_cameras(5)
    a, b = LeaseKeeper("a", lease_seconds=30), LeaseKeeper("b", lease_seconds=30)
    assert a.beat() == {c.pk for c in cameras}
    assert b.beat() == set(), "a camera held by a live worker is never taken"
    a.beat()  # a sees b: its fair share is now 3; it gives 2 back between two passes
    assert len(a.held) == 3
    a.settle()
    assert b.beat() == {c.pk for c in cameras} - a.held
    assert sorted(leased().values()) == ["a", "a", "a", "b", "b"]
    assert Worker.objects.count() == 2


def test_an_expired_lease_is_taken_over_and_never_renewed_by_its_old_holder() -> None:
    cameras = make_cameras(2)
    a, b = LeaseKeeper("a", lease_seconds=1), LeaseKeeper("b", lease_seconds=1)
    a.beat()
    assert all(a.may_sample(c.pk) for c in cameras)
    time.sleep(1.2)  # a stops renewing (it hangs, or died)
    assert not any(a.may_sample(c.pk) for c in cameras), "a lapsed lease must stop the sampling at once"
    assert b.beat() == {c.pk for c in cameras}
    assert a.beat() == set(), "the old holder finds its leases gone and does not renew them"
    assert set(leased().values()) == {"b"}


def test_disabled_cameras_are_given_back_and_release_all_frees_everything() -> None:
    cameras = make_cameras(3)
    a = LeaseKeeper("a", lease_seconds=30)
    a.beat()
    Camera.objects.filter(pk=cameras[0].pk).update(enabled=False)
    assert a.beat() == {cameras[1].pk, cameras[2].pk}
    assert a.release_all() == 2
    assert set(leased().values()) == {""}
    assert not Worker.objects.exists()


def test_max_cameras_caps_a_worker() -> None:
    make_cameras(4)
    assert len(LeaseKeeper("small", lease_seconds=30, max_cameras=1).beat()) == 1


def test_claims_racing_from_many_threads_never_share_a_camera() -> None:
    """Ten workers claim twenty cameras at once: every camera ends with exactly one holder."""
    if connection.vendor == "sqlite" and "memory" in connection.settings_dict["NAME"]:
        pytest.skip("threads cannot share pytest-django's in-memory SQLite database for writes")
    cameras = make_cameras(20)
    keepers = [LeaseKeeper(f"w{i}", lease_seconds=30) for i in range(10)]
    barrier = threading.Barrier(len(keepers))
    results: dict[str, frozenset[int]] = {}

    def claim(keeper: LeaseKeeper) -> None:
        barrier.wait()
        try:
            results[keeper.name] = keeper.beat()
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(k,)) for k in keepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    held = [pk for name in results for pk in results[name]]
    assert len(held) == len(set(held)), "a camera was claimed by two workers"
    assert set(held) <= {c.pk for c in cameras}
    assert all(holder == "" or holder in results for holder in leased().values())


# --- real worker processes -------------------------------------------------------------------------------------------


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """spawn(*args): a `manage.py run_detection` process on the test database, its output lines in `.lines`."""
    processes: list[subprocess.Popen[str]] = []
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DETECTION_SPOOL_DIR": str(tmp_path / "spool"),
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
    }

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), "run_detection", *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a SIGKILL of the test's choosing reaches only this process tree
        )
        process.lines = []  # type: ignore[attr-defined]

        def pump() -> None:
            for line in process.stdout:  # type: ignore[union-attr]
                process.lines.append(line)  # type: ignore[attr-defined]

        threading.Thread(target=pump, daemon=True).start()
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


LEASE = 3.0


@needs_postgres
@needs_model
@needs_images
def test_killed_worker_loses_its_cameras_to_the_others_within_one_lease(spawn) -> None:
    """`run_detection --workers 2`: SIGKILL one worker holding cameras; within a lease they are sampled again.

    Also: the two workers split the cameras, a camera is never sampled by two workers at once, the supervisor
    replaces the dead worker, and SIGTERM stops everything with exit 0 and no lease left behind.
    """
    cameras = make_cameras(4, source=str(IMAGES))
    supervisor = spawn(
        "--workers", "2", "--mode", "yolo", "--interval", "0.5", "--lease-seconds", str(LEASE), "--fetch-threads", "2"
    )

    def started_pids() -> list[int] | None:
        pids = [int(m) for m in re.findall(r"started \(pid (\d+)\)", "".join(supervisor.lines))]
        return pids[:2] if len(pids) >= 2 else None

    pids = wait_for(started_pids, 60, "the supervisor to start two workers")

    def two_holders() -> set[str] | None:
        holders = set(leased().values())
        return holders if len(holders) == 2 and "" not in holders else None

    holders = wait_for(two_holders, 90, "both workers to hold cameras")
    wait_for(lambda: CrowdLog.objects.filter(details__worker__in=list(holders)).count() >= 4, 60, "readings")

    # Kill the worker that holds camera 0, mid-run, without a chance to clean up.
    victim_name = leased()[cameras[0].pk]
    victim_pid = int(victim_name.split(":")[1])
    assert victim_pid in pids
    victim_cameras = {pk for pk, name in leased().items() if name == victim_name}
    os.kill(victim_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(
        lambda: not any(name == victim_name for name in leased().values()),
        LEASE * 7 / 6 + 2.0,  # one lease, then the next heartbeat (lease / 6), and scheduling slack on 2 busy cores
        "the victim's cameras to be claimed by a live worker",
        step=0.05,
    )
    taken_after = time.monotonic() - killed_at
    # ... and sampled again.
    since = CrowdLog.objects.order_by("-id").values_list("id", flat=True).first()
    wait_for(
        lambda: set(CrowdLog.objects.filter(id__gt=since).values_list("camera_id", flat=True)) >= victim_cameras,
        30,
        "the victim's cameras to be sampled again",
    )
    wait_for(lambda: len(set(re.findall(r"started \(pid (\d+)\)", "".join(supervisor.lines)))) >= 3, 30, "restart")

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(120) == 0, "".join(supervisor.lines[-40:])
    assert set(leased().values()) == {""}, "a clean stop gives every lease back"
    # Workers that stopped cleanly left the registry; the killed one is forgotten after a few leases.
    assert set(Worker.objects.values_list("name", flat=True)) <= {victim_name}

    # Never two workers on one camera at the same time: per camera, readings in time order change worker only
    # when the camera moved (rebalancing or the takeover), never back and forth.
    for camera in cameras:
        workers = [
            w
            for w in CrowdLog.objects.filter(camera=camera)
            .order_by("timestamp")
            .values_list("details__worker", flat=True)
        ]
        runs = [w for i, w in enumerate(workers) if i == 0 or w != workers[i - 1]]
        assert len(runs) == len(set(runs)), f"camera {camera.pk} went back and forth between workers: {runs}"
    print(f"\ncameras of the killed worker claimed {taken_after:.1f} s after SIGKILL (lease {LEASE:g} s)")


@needs_postgres
@needs_model
@needs_images
def test_sigterm_gives_the_cameras_back_at_once(spawn) -> None:
    make_cameras(2, source=str(IMAGES))
    worker = spawn("--mode", "yolo", "--interval", "0.5", "--lease-seconds", "60")
    wait_for(lambda: CrowdLog.objects.count() >= 2, 90, "readings")
    assert set(leased().values()) != {""}
    stopped_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0, "".join(worker.lines[-30:])
    assert time.monotonic() - stopped_at < 30
    assert set(leased().values()) == {""}, "leases are released on SIGTERM, not left to expire (60 s)"
    output = "".join(worker.lines)
    assert "event=lease_release" in output and "Stopped after recording" in output


# --- figures for Prometheus ------------------------------------------------------------------------------------------


def test_web_metrics_show_every_worker_and_camera(client, settings) -> None:
    from detection.metrics import WorkerMetrics

    cameras = make_cameras(2)
    figures = WorkerMetrics("w")
    figures.frame("1")
    figures.reading("1", "spooled", 0.2)
    keeper = LeaseKeeper("host:1:abc", lease_seconds=30, stats=figures.stats)
    keeper.beat()
    Camera.objects.filter(pk=cameras[0].pk).update(status=Camera.Status.ONLINE)

    body = client.get("/metrics").content.decode()
    assert 'crowd_worker_frames_total{worker="host:1:abc"} 1.0' in body
    assert 'crowd_worker_spooled_total{worker="host:1:abc"} 1.0' in body
    assert 'crowd_worker_cameras{worker="host:1:abc"} 2.0' in body
    assert f'crowd_camera_online{{camera="{cameras[0].pk}"}} 1.0' in body
    assert f'crowd_camera_leased{{camera="{cameras[1].pk}",worker="host:1:abc"}} 1.0' in body
    assert "Stadium" not in body and "/nonexistent" not in body, "no names or sources in metrics"

    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_worker_metrics_registry_has_the_documented_series() -> None:
    from prometheus_client import generate_latest

    from detection.metrics import WorkerMetrics

    figures = WorkerMetrics("w")
    figures.frame("7")
    figures.inference("7", 0.03)
    figures.reading("7", "stored", 0.5)
    figures.error("7", "frozen")
    figures.spool(3, 0)
    summary = figures.cycle(1.5)
    text = generate_latest(figures.registry).decode()
    for series in (
        'crowd_worker_frames_total{camera="7"} 1.0',
        'crowd_worker_readings_total{camera="7",outcome="stored"} 1.0',
        'crowd_worker_errors_total{camera="7",kind="frozen"} 1.0',
        "crowd_worker_spool_depth 3.0",
        "crowd_worker_inference_seconds_count",
        "crowd_worker_lag_seconds_bucket",
        "crowd_worker_cycle_seconds_count 1.0",
    ):
        assert series in text, series
    assert summary["stored"] == 1 and summary["infer_ms_p50"] == 30.0
