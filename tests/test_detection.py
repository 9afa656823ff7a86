"""The detection worker and CLI on real footage with the real YOLO model (DETECTION_MODEL).

Worker tests use transactional databases: the worker recycles its DB connection every pass, as it
does in production, which would end the test-wrapping transaction of a plain django_db test.
"""

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from alerts.models import Alert
from detection.detectors import YoloCounter
from detection.sources import Backoff
from detection.worker import DetectionWorker, Feed, camera_feeds
from locations.models import Camera, CrowdLog, Location

from .conftest import wait_for

REPO = Path(settings.BASE_DIR)
SHARED_DATA = REPO.parent / "shared" / "data"
VIDEO = SHARED_DATA / "video" / "pets09_s2l1_view001_frames301-795.mp4"
VIDEO_COUNTS = SHARED_DATA / "video" / "pets09_s2l1_frames301-795_counts.csv"
BUS = Path(__import__("ultralytics").__file__).parent / "assets" / "bus.jpg"

needs_model = pytest.mark.skipif(
    not Path(settings.DETECTION_MODEL).exists(),
    reason="DETECTION_MODEL does not point at local weights (scripts/test sets it to ../shared/models)",
)
needs_video = pytest.mark.skipif(not VIDEO.exists(), reason="../shared/data/video is not beside the repo")
# The outage below is a closed PostgreSQL port; an SQLite file cannot be made unreachable that way.
needs_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs DATABASE_URL on PostgreSQL")


@pytest.fixture(scope="session")
def counter() -> YoloCounter:
    return YoloCounter(settings.DETECTION_MODEL)


def ground_truth() -> dict[int, int]:
    with VIDEO_COUNTS.open() as f:
        return {int(row["video_frame"]): int(row["count"]) for row in csv.DictReader(f)}


@needs_model
@needs_video
@pytest.mark.django_db(transaction=True)
def test_run_detection_once_on_video_matches_ground_truth() -> None:
    location = Location.objects.create(name="Walkway", capacity_limit=10)
    out = StringIO()
    call_command("run_detection", "--once", "--source", str(VIDEO), "--location", str(location.pk), stdout=out)
    log = CrowdLog.objects.get(location=location)
    assert log.source == CrowdLog.Source.CAMERA
    assert log.details["frame_index"] == 0
    assert abs(log.count - ground_truth()[0]) <= 2
    assert len(log.details["boxes"]) == log.count
    assert "Walkway" in out.getvalue()


@needs_model
@needs_video
@pytest.mark.django_db(transaction=True)
def test_worker_follows_the_video_frame_by_frame(counter: YoloCounter) -> None:
    """Each pass samples the frame `interval` seconds further on; every count is within ±2 of the humans'."""
    location = Location.objects.create(name="Walkway", capacity_limit=10)
    camera = Camera.objects.create(location=location, name="cam", source=f"file://{VIDEO}")
    worker = DetectionWorker(counter, camera_feeds, interval=0.1, stop=threading.Event())
    # A 0.1 s interval advances one frame per pass, so 12 passes cover frames 0-11 at 10 fps.
    assert worker.run(cycles=12) == 12
    truth = ground_truth()
    logs = list(CrowdLog.objects.filter(camera=camera).order_by("timestamp"))
    assert [log.details["frame_index"] for log in logs] == list(range(12))
    errors = [abs(log.count - truth[log.details["frame_index"]]) for log in logs]
    assert max(errors) <= 2, errors
    camera.refresh_from_db()
    assert camera.status == Camera.Status.ONLINE and camera.last_seen_at is not None
    location.refresh_from_db()
    assert location.current_count == logs[-1].count


@needs_model
@pytest.mark.django_db(transaction=True)
def test_broken_camera_goes_offline_without_stopping_the_others(counter: YoloCounter) -> None:
    location = Location.objects.create(name="Concourse", capacity_limit=50)
    good = Camera.objects.create(location=location, name="good", source=str(BUS))
    broken = Camera.objects.create(location=location, name="broken", source="/nonexistent/camera.mp4")

    def feeds() -> list[Feed]:
        # Retry quickly so the test sees several failures in a few passes.
        return [Feed(location.pk, c.source, c.pk, backoff=Backoff(base=0.01)) for c in (good, broken)]

    worker = DetectionWorker(counter, feeds, interval=0.05, stop=threading.Event())
    worker.run(cycles=6)
    assert CrowdLog.objects.filter(camera=good).count() == 6
    assert all(log.count == 4 for log in CrowdLog.objects.filter(camera=good))
    assert not CrowdLog.objects.filter(camera=broken).exists()
    broken.refresh_from_db()
    assert broken.status == Camera.Status.OFFLINE and "does not exist" in broken.last_error
    alert = Alert.objects.get(kind="CAMERA_OFFLINE")
    assert alert.camera == broken and alert.status == Alert.Status.ACTIVE

    # The camera comes back: the alert clears by itself.
    broken.source = str(BUS)
    broken.save()
    DetectionWorker(counter, lambda: [Feed(location.pk, broken.source, broken.pk)], 0.05, threading.Event()).run(1)
    alert.refresh_from_db()
    broken.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED and alert.resolved_by is None
    assert broken.status == Camera.Status.ONLINE


@needs_model
@pytest.mark.django_db(transaction=True)
def test_a_location_seen_by_two_cameras_counts_the_people_of_both() -> None:
    location = Location.objects.create(name="Bus stop", capacity_limit=10)
    for side in ("kerb", "shelter"):
        Camera.objects.create(location=location, name=side, source=str(BUS))
    call_command("run_detection", "--once", "--location", str(location.pk), stdout=StringIO())
    location.refresh_from_db()
    assert location.current_count == 8  # four people on each camera's picture
    assert location.density_level == "HIGH"
    assert Alert.objects.filter(location=location, kind="OVERCROWDING").exists()


@contextlib.contextmanager
def database_unreachable() -> Iterator[None]:
    """Point every new connection at a closed port, as if PostgreSQL were down (run() closes its connections)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]
    connection.close()
    real_port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = str(dead_port)  # the dict every thread's connection is made from
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port


@needs_model
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_camera_back_during_a_database_outage_clears_its_offline_alert(counter: YoloCounter, tmp_path: Path) -> None:
    location = Location.objects.create(name="Gate", capacity_limit=50)
    picture = tmp_path / "gate.jpg"
    camera = Camera.objects.create(location=location, name="gate", source=str(picture))
    stop = threading.Event()
    worker = DetectionWorker(
        counter,
        lambda: [Feed(location.pk, camera.source, camera.pk, backoff=Backoff(base=0.01))],
        interval=0.05,
        stop=stop,
    )
    worker.run(cycles=4)  # the picture does not exist yet: offline, alert
    alert = Alert.objects.get(kind="CAMERA_OFFLINE", camera=camera)

    picture.write_bytes(BUS.read_bytes())  # the camera comes back ...
    with database_unreachable():  # ... while the database is down: its readings are spooled
        worker.run(cycles=worker.cycles + 4)  # `cycles` counts every pass of this worker
        spooled = worker.spool.depth()
    assert spooled > 0

    running = threading.Thread(target=worker.run)  # the database is back; the worker goes on
    running.start()
    try:
        wait_for(
            lambda: Alert.objects.filter(pk=alert.pk, status=Alert.Status.RESOLVED).exists(),
            10,
            "the offline alert of a camera that is sending frames again to clear",
        )
    finally:
        stop.set()
        running.join()
    camera.refresh_from_db()
    assert camera.status == Camera.Status.ONLINE
    assert CrowdLog.objects.filter(camera=camera).count() == worker.recorded > spooled


@needs_model
def test_detect_image_finds_the_four_people_on_the_bus() -> None:
    out = StringIO()
    call_command("detect_image", str(BUS), "--json", stdout=out)
    result = json.loads(out.getvalue())
    # Exactly the object of the detection contract (DESIGN.md), nothing more: integrators and benchmarks parse it.
    assert set(result) == {"image", "count", "boxes"}
    assert result["image"] == str(BUS)
    assert result["count"] == 4
    assert len(result["boxes"]) == 4
    for x1, y1, x2, y2, conf in result["boxes"]:
        assert 0 <= x1 < x2 and 0 <= y1 < y2 and 0.25 <= conf <= 1
    out = StringIO()
    call_command("detect_image", str(BUS), "--json", "--quality", stdout=out)
    assert json.loads(out.getvalue())["quality"]["mode_used"]


@needs_model
def test_detect_image_says_why_a_path_gave_no_image_and_still_counts_the_others(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("not a picture")
    paths = [str(tmp_path / "missing.jpg"), str(tmp_path), str(tmp_path / "notes.jpg"), str(BUS)]
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="3 of 4 image"):
        call_command("detect_image", *paths, "--json", stdout=out, stderr=err)
    assert err.getvalue().splitlines() == [
        f"{paths[0]}: no such file",
        f"{paths[1]}: a directory, not an image (pass its images, e.g. DIR/*.jpg)",
        f"{paths[2]}: not a readable image (OpenCV cannot decode it)",
    ]
    assert json.loads(out.getvalue())["count"] == 4


@pytest.mark.parametrize("command", ["detect_image", "run_detection", "calibrate_camera"])
@pytest.mark.parametrize("conf", ["0", "1.5", "-0.2", "high"])
def test_the_commands_refuse_a_confidence_outside_0_to_1(command: str, conf: str) -> None:
    # Refused before anything is loaded or read: with --conf 5 detect_image used to report 0 people, with 0 thousands.
    with pytest.raises(CommandError, match=r"argument --conf: (must be above 0 and at most 1|'high' is not a number)"):
        call_command(command, "1" if command == "calibrate_camera" else str(BUS), "--conf", conf)


def test_a_detection_confidence_outside_0_to_1_in_the_environment_stops_the_start() -> None:
    env = {**os.environ, "DETECTION_CONFIDENCE": "25", "DJANGO_SETTINGS_MODULE": "crowd_monitor.settings"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DETECTION_CONFIDENCE must be above 0 and at most 1, not 25." in result.stderr


def test_missing_model_is_a_clear_error_not_a_zero_count() -> None:
    with pytest.raises(CommandError, match=r"does not exist.*DETECTION_MODEL"):
        call_command("detect_image", str(BUS), "--model", "/nowhere/yolov8n_openvino_model")


@pytest.mark.django_db
def test_run_detection_with_missing_model_records_nothing() -> None:
    location = Location.objects.create(name="Gate", capacity_limit=10)
    with pytest.raises(CommandError, match="DETECTION_MODEL"):
        call_command(
            "run_detection", "--once", "--source", str(BUS), "--location", str(location.pk), "--model", "/no/such.pt"
        )
    assert not CrowdLog.objects.exists()


@pytest.mark.django_db
def test_run_detection_rejects_bad_arguments() -> None:
    with pytest.raises(CommandError, match="needs --location"):
        call_command("run_detection", "--once", "--source", str(BUS))
    with pytest.raises(CommandError, match="Location 999 does not exist"):
        call_command("run_detection", "--once", "--location", "999")
    with pytest.raises(CommandError, match="Nothing to sample"):
        call_command("run_detection", "--once")


def test_run_alerts_refuses_an_interval_that_would_spin() -> None:
    # --interval 0 or below used to check the database in a busy loop, a full core for nothing.
    for interval in ("0", "-1"):
        with pytest.raises(CommandError, match="--interval must be positive"):
            call_command("run_alerts", "--interval", interval)


@needs_model
def test_sigterm_stops_the_worker_cleanly(tmp_path: Path) -> None:
    """A real worker process: SIGTERM finishes the pass and exits 0."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.sqlite3'}", "PYTHONUNBUFFERED": "1"}
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=REPO)
    subprocess.run(
        [
            *manage,
            "shell",
            "-c",
            "from locations.models import Location; Location.objects.create(name='L', capacity_limit=9)",
        ],
        env=env,
        check=True,
        cwd=REPO,
    )
    worker = subprocess.Popen(
        [*manage, "run_detection", "--source", str(BUS), "--location", "1", "--interval", "0.5"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        for line in worker.stdout:
            if "people" in line:
                break
            assert time.monotonic() < deadline, "no reading within 120 s"
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, output
    assert "SIGTERM received" in output and "Stopped after recording" in output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_worker_starts_up_stops_it_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    """Ctrl+C (or a supervisor's SIGTERM) in the first seconds, while Django and the detection libraries are still
    being imported, used to end the worker with a KeyboardInterrupt traceback (or killed by SIGTERM, exit -15)."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.sqlite3'}"}
    # The signal lands in the middle of Django's imports, as a real Ctrl+C just after starting does.
    script = f"""
import os, runpy, sys
class SignalDuringStartup:
    def find_spec(self, name, path=None, target=None):
        if name == "django.core.management":
            os.kill(os.getpid(), {int(signum)})
        return None
sys.meta_path.insert(0, SignalDuringStartup())
sys.argv = ["manage.py", "run_detection", "--source", {str(BUS)!r}, "--location", "1", "--interval", "0.5"]
runpy.run_path("manage.py", run_name="__main__")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and f"{signum.name} received" in output


class ScriptedCamera(ThreadingHTTPServer):
    """An HTTP snapshot camera (a live source: every read fetches a new picture) serving `pictures` in turn."""

    daemon_threads = True

    def __init__(self, pictures: list[bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.pictures = pictures
        self.served = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/snapshot.jpg"


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedCamera

    def do_GET(self) -> None:
        body = self.server.pictures[self.server.served % len(self.server.pictures)]
        self.server.served += 1
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@needs_model
@needs_video
@pytest.mark.django_db(transaction=True)
def test_a_reading_of_a_live_camera_keeps_the_median_of_its_frames(counter: YoloCounter) -> None:
    """One frame of three with everyone hidden (a bus passing in front, a glitch) does not move the reading."""
    capture = cv2.VideoCapture(str(VIDEO))
    ok, crowd = capture.read()
    capture.release()
    assert ok
    hidden = np.full_like(crowd, 128)  # the same view with nobody visible
    people = counter.count(crowd).count
    assert people >= 3 and counter.count(hidden).count == 0
    jpeg = [cv2.imencode(".jpg", image)[1].tobytes() for image in (crowd, hidden, crowd)]
    server = ScriptedCamera(jpeg)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    location = Location.objects.create(name="Concourse", capacity_limit=50)
    camera = Camera.objects.create(location=location, name="gate", source=server.url)

    def feeds() -> list[Feed]:
        return [Feed(location.pk, camera.source, camera.pk, location_name=location.name)]

    def readings(frames_per_reading: int, passes: int) -> list[CrowdLog]:
        CrowdLog.objects.all().delete()
        server.served = 0
        worker = DetectionWorker(
            counter,
            feeds,
            interval=0.05,
            stop=threading.Event(),
            frozen_samples=0,
            frames_per_reading=frames_per_reading,
            frame_spacing=0.01,
        )
        worker.run(cycles=passes)
        return list(CrowdLog.objects.filter(camera=camera).order_by("timestamp"))

    try:
        single = readings(1, 3)
        burst = readings(3, 2)
    finally:
        server.shutdown()
        server.server_close()
    # One frame per reading: the hidden frame becomes a reading of nobody.
    assert [log.count for log in single] == [people, 0, people]
    # Three frames per reading (crowd, hidden, crowd): the median, with the boxes of a frame that gave it.
    assert [log.count for log in burst] == [people, people]
    assert server.served == 6
    assert len(burst[0].details["boxes"]) == people


@needs_model
@pytest.mark.django_db(transaction=True)
def test_a_write_that_fails_unexpectedly_keeps_its_readings_for_a_retry(
    counter: YoloCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write failing with something other than an outage (here a RuntimeError, once) used to lose every reading
    of that write: logged as writer_error, never stored, never spooled."""
    location = Location.objects.create(name="Bus stop", capacity_limit=50)
    write = DetectionWorker._write
    failures = []

    def fails_once(readings: list) -> list:
        if not failures:
            failures.append(len(readings))
            raise RuntimeError("a bug in the write path")
        return write(readings)

    monkeypatch.setattr(DetectionWorker, "_write", staticmethod(fails_once))
    worker = DetectionWorker(counter, lambda: [Feed(location.pk, str(BUS))], 0.0, threading.Event(), lambda _: None)
    assert worker.run(cycles=3) == 3
    assert failures == [1]
    assert list(CrowdLog.objects.filter(location=location).values_list("count", flat=True)) == [4, 4, 4]
    assert worker.spool.depth() == 0


@needs_model
@pytest.mark.django_db(transaction=True)
def test_a_reading_that_cannot_be_stored_costs_only_itself(counter: YoloCounter) -> None:
    pets, mall = str(SHARED_DATA / "pets09_s2l1" / "images"), str(SHARED_DATA / "mall" / "images")
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is not beside the repo")
    kept = Location.objects.create(name="Kept", capacity_limit=50)
    gone = Location.objects.create(name="Gone", capacity_limit=50)
    gone_id = gone.pk
    gone.delete()  # deleted while the worker still samples a feed for it
    feeds = [Feed(location_id=kept.pk, uri=pets), Feed(location_id=gone_id, uri=mall)]
    worker = DetectionWorker(counter, lambda: feeds, 0.0, threading.Event(), report=lambda _: None)
    # Both locations' readings reach the writer together; the one whose location is gone is refused alone.
    assert worker.run(cycles=3) == 3
    assert CrowdLog.objects.filter(location=kept).count() == 3
    assert worker.metrics.stats()["errors"] == 3


@needs_model
@pytest.mark.django_db(transaction=True)
def test_a_camera_moved_to_another_location_counts_there_without_a_restart(
    counter: YoloCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin moves a camera to the place it now watches: the running worker's next readings go there. They used to
    go on to the old location for as long as the worker ran, so the new place never counted the camera's people (and
    the old one stayed live, counting people it no longer sees)."""
    monkeypatch.setattr("detection.worker.FEEDS_REFRESH_SECONDS", 0.0)  # re-read the cameras every pass
    old = Location.objects.create(name="Old hall", capacity_limit=50)
    new = Location.objects.create(name="New hall", capacity_limit=50)
    camera = Camera.objects.create(location=old, name="cam", source=str(BUS))
    worker = DetectionWorker(counter, camera_feeds, interval=0.05, stop=threading.Event(), report=lambda _: None)
    worker.run(cycles=2)
    assert CrowdLog.objects.filter(location=old, camera=camera).count() == 2

    camera.location = new
    camera.save()
    worker.run(cycles=worker.cycles + 2)
    newest = CrowdLog.objects.filter(camera=camera).order_by("-timestamp").first()
    assert newest is not None and newest.location_id == new.pk
    assert CrowdLog.objects.filter(location=old).count() == 2
    new.refresh_from_db()
    assert new.current_count == 4
