"""The detection worker through ordinary faults, on real services and the real YOLO model.

- PostgreSQL stopped and restarted under a running worker process: every reading arrives exactly once, in order,
  with its original timestamp (the worker spools them on disk meanwhile). A throwaway cluster of its own
  (initdb + pg_ctl on a free port), never the shared server.
- Redis stopped and restarted under a running worker: readings are still stored at their cadence, and live
  updates reach (reconnecting) WebSocket clients again once Redis is back. A throwaway redis-server.
- A video that ends and a camera URL that refuses connections go OFFLINE with CAMERA_OFFLINE alerts, a camera
  that hangs is waited for in the background, a frozen stream is offline, and the good camera keeps its cadence.
- The idempotency key and the spool, without any fault injection.
"""

import contextlib
import itertools
import json
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from alerts.models import Alert
from detection.detectors import YoloCounter
from detection.sources import Backoff
from detection.spool import PendingReading, Spool
from detection.worker import DetectionWorker, Feed, camera_feeds
from locations.models import Camera, CrowdLog, Location
from locations.services import record_reading

from .conftest import wait_for

REPO = Path(settings.BASE_DIR)
IMAGES = REPO.parent / "shared" / "data" / "mall" / "images"
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)

needs_model = pytest.mark.skipif(
    not Path(settings.DETECTION_MODEL).exists(),
    reason="DETECTION_MODEL does not point at local weights (scripts/test sets it to ../shared/models)",
)
needs_images = pytest.mark.skipif(not IMAGES.is_dir(), reason="../shared/data/mall is not beside the repo")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def counter() -> YoloCounter:
    return YoloCounter(settings.DETECTION_MODEL)


# --- the idempotency key and the spool -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_reading_written_twice_with_its_key_is_stored_once() -> None:
    gate = Location.objects.create(name="Gate", capacity_limit=100)
    at = timezone.now() - timedelta(seconds=5)
    first = record_reading(gate, 40, source=CrowdLog.Source.CAMERA, at=at, key="k-1")
    again = record_reading(gate, 40, source=CrowdLog.Source.CAMERA, at=at, key="k-1")
    assert again.pk == first.pk
    assert CrowdLog.objects.count() == 1
    assert CrowdLog.objects.get().reading_key == "k-1"
    record_reading(gate, 41, source=CrowdLog.Source.CAMERA, key="k-2")
    record_reading(gate, 42, source=CrowdLog.Source.CAMERA)  # no key: always a new reading
    record_reading(gate, 42, source=CrowdLog.Source.CAMERA)
    assert CrowdLog.objects.count() == 4


def pending(key: str, location_id: int = 1, offset: float = 0.0) -> PendingReading:
    return PendingReading(key, location_id, None, 7, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=offset), "x")


def test_disk_spool_keeps_order_survives_reopening_and_is_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_items=5)
    for i in range(7):
        spool.append(pending(f"k{i}", offset=i, location_id=i))
    spool.append(pending("k6"))  # the same key again: kept once
    assert spool.depth() == 5 and spool.dropped == 2, "beyond max_items the oldest go"
    spool.close()

    reopened = Spool(tmp_path, max_items=5)
    first = reopened.peek(1)[0]
    assert (first.key, first.location_id, first.at) == ("k2", 2, datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC))
    written: list[str] = []

    def write(reading: PendingReading) -> None:
        if reading.key == "k4" and "k4" not in written:
            written.append("k4")
            raise ConnectionError("database went away mid-flush")
        written.append(reading.key)

    with pytest.raises(ConnectionError):
        reopened.flush(write)
    assert reopened.depth() == 3, "a reading leaves the spool only after it was written"
    assert reopened.flush(write) == 3
    assert written == ["k2", "k3", "k4", "k4", "k5", "k6"]
    assert reopened.depth() == 0


def test_memory_spool_has_the_same_behaviour() -> None:
    spool = Spool(None, max_items=2)  # in memory
    for i in range(3):
        spool.append(pending(f"k{i}"))
    assert spool.depth() == 2 and spool.dropped == 1
    assert spool.flush(lambda reading: None) == 2 and spool.depth() == 0


def fill_the_disk(spool: Spool) -> None:
    """The spool file may not grow by a page: SQLite then answers "database or disk is full", as on a full disk."""
    (pages,) = spool._db.execute("PRAGMA page_count").fetchone()
    spool._db.execute(f"PRAGMA max_page_count = {pages}")


def bulky(key: str, offset: float = 0.0) -> PendingReading:
    reading = pending(key, offset=offset)
    reading.details = {"boxes": [[1, 2, 3, 4, 0.5]] * 400}  # a crowded frame: more than a page
    return reading


def test_a_full_spool_disk_keeps_readings_in_memory_in_order(tmp_path: Path) -> None:
    """The database down and the spool's disk full: each reading used to be lost ("database or disk is full" out of
    the writer). Now they wait in memory, behind those in the file, and are written in order, once."""
    spool = Spool(tmp_path, max_items=100)
    spool.append(bulky("k0"))
    fill_the_disk(spool)
    for i in range(1, 4):
        spool.append(bulky(f"k{i}", offset=i))
    spool.append(bulky("k2"))  # the same key again: kept once
    assert spool.depth() == 4
    written: list[str] = []
    assert spool.flush(lambda reading: written.append(reading.key)) == 4
    assert written == ["k0", "k1", "k2", "k3"] and spool.depth() == 0
    spool._db.execute("PRAGMA max_page_count = 1000000")  # space again: the file takes readings again
    spool.append(bulky("k4"))
    assert spool._db.execute("SELECT reading_key FROM readings").fetchall() == [("k4",)]


def test_readings_in_memory_are_put_in_the_file_when_the_worker_stops(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_items=100)
    fill_the_disk(spool)
    spool.append(bulky("k0"))
    spool._db.execute("PRAGMA max_page_count = 1000000")
    spool.close()
    assert [r.key for r in Spool(tmp_path).peek()] == ["k0"]  # for the next worker started on this host


class RefusingDeletes:
    """A spool connection on a disk so full that even a DELETE (which writes to the journal) fails."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.full = db, True

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self.full and sql.startswith("DELETE"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def close(self) -> None:
        self.db.close()


def test_a_spool_that_cannot_delete_what_it_wrote_does_not_hold_the_flush_up(tmp_path: Path) -> None:
    """Each spooled reading is written once and the spool empties, so live readings are written again at once
    (the worker writes directly only with an empty spool); the rows go from the file when it has room."""
    spool = Spool(tmp_path, max_items=100)
    for i in range(3):
        spool.append(pending(f"k{i}", offset=i))
    spool._db = RefusingDeletes(spool._db)  # type: ignore[assignment]
    written: list[str] = []
    assert spool.flush(lambda reading: written.append(reading.key)) == 3
    assert spool.flush(lambda reading: written.append(reading.key)) == 0
    assert written == ["k0", "k1", "k2"] and spool.depth() == 0
    spool._db.full = False  # type: ignore[attr-defined]
    spool.append(pending("k3", offset=3))
    assert spool.flush(lambda reading: written.append(reading.key)) == 1
    assert spool._db.execute("SELECT COUNT(*) FROM readings").fetchone() == (0,)


# --- PostgreSQL restarting under a worker process ------------------------------------------------------------------


class ThrowawayPostgres:
    """A PostgreSQL cluster of this test's own: initdb in a temp dir, pg_ctl start/stop on a free port."""

    def __init__(self) -> None:
        assert PG_BIN is not None
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="crowd-pg-"))
        self.data = self.root / "data"
        postgres = pwd.getpwnam("postgres")
        os.chown(self.root, postgres.pw_uid, postgres.pw_gid)
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _as_postgres(self, *command: str) -> None:
        prefix = [] if os.geteuid() == pwd.getpwnam("postgres").pw_uid else ["runuser", "-u", "postgres", "--"]
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start"
        )

    def stop(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    if PG_BIN is None or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL's initdb/pg_ctl (/usr/lib/postgresql/*/bin) and runuser")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("needs a 'postgres' system user to run a throwaway cluster")
    server = ThrowawayPostgres()
    server.start()
    try:
        yield server
    finally:
        server.remove()


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_model
@needs_images
def test_database_restart_mid_run_loses_and_doubles_nothing(throwaway_postgres: ThrowawayPostgres, tmp_path) -> None:
    import psycopg

    pg = throwaway_postgres
    with psycopg.connect(pg.url("postgres"), autocommit=True) as admin:
        admin.execute("CREATE DATABASE crowd")
    spool_dir = tmp_path / "spool"
    env = {
        **os.environ,
        "DATABASE_URL": pg.url("crowd"),
        "DETECTION_SPOOL_DIR": str(spool_dir),
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "DEBUG",
        "DB_CONNECT_TIMEOUT": "2",
    }
    manage(env, "migrate", "-v0")
    manage(
        env,
        "shell",
        "-c",
        "from locations.models import Location, Camera; loc = Location.objects.create(name='Hall', capacity_limit=99);"
        f"[Camera.objects.create(location=loc, name=f'cam {{i}}', source={str(IMAGES)!r}) for i in range(2)]",
    )
    worker = subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "run_detection", "--mode", "yolo", "--interval", "0.5"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(worker.stdout), daemon=True).start()  # type: ignore[arg-type]

    def readings(outcome: str) -> int:
        return sum(f"outcome={outcome}" in line for line in list(lines))

    try:
        wait_for(lambda: readings("stored") >= 3, 90, "readings stored before the outage")
        pg.stop()
        down_at = datetime.now(UTC)
        wait_for(lambda: readings("spooled") >= 4, 30, "readings spooled while the database is down")
        pg.start()
        up_at = datetime.now(UTC)
        wait_for(lambda: any("event=spool_flushed" in line for line in list(lines)), 30, "the spool to be flushed")
        stored_before = readings("stored")
        wait_for(lambda: readings("stored") >= stored_before + 2, 30, "readings stored after the outage")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, "".join(lines[-30:])
    finally:
        if worker.poll() is None:
            worker.kill()
    output = "".join(lines)
    samples = re.findall(r"event=sample .*? outcome=(\w+) key=(\w+)", output)
    spooled_keys = {key for outcome, key in samples if outcome == "spooled"}
    recorded = int(re.search(r"Stopped after recording (\d+) reading", output).group(1))

    with psycopg.connect(pg.url("crowd")) as db:
        rows = db.execute("SELECT id, reading_key, camera_id, timestamp FROM locations_crowdlog ORDER BY id").fetchall()
        leases = db.execute("SELECT leased_by FROM locations_camera").fetchall()
    keys = [key for _, key, _, _ in rows]
    assert len(keys) == len(set(keys)) == len(samples) == recorded, "every reading exactly once"
    assert set(keys) == {key for _, key in samples}
    assert spooled_keys and spooled_keys <= set(keys)
    # In order: per camera, the readings were written in the order they were taken ...
    for camera in {camera for _, _, camera, _ in rows}:
        times = [at for _, _, cam, at in rows if cam == camera]
        assert times == sorted(times), f"camera {camera}: readings written out of order"
    # ... and the spooled ones keep the time they were taken: during the outage, not when they were written.
    spooled_times = [at for _, key, _, at in rows if key in spooled_keys]
    assert all(down_at - timedelta(seconds=2) <= at <= up_at + timedelta(seconds=2) for at in spooled_times)
    assert sqlite3.connect(spool_dir / "readings.sqlite3").execute("SELECT COUNT(*) FROM readings").fetchone() == (0,)
    assert leases and all(holder == ("",) for holder in leases), "SIGTERM gave the leases back"


# --- Redis restarting under a worker --------------------------------------------------------------------------------


class ThrowawayRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for(answers, 10, "redis-server to start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    redis = ThrowawayRedis()
    redis.start()
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": redis.url, **settings.REDIS_HOST_OPTIONS}],
                "capacity": 1000,
                "expiry": 30,
            },
        }
    }
    try:
        with override_settings(CHANNEL_LAYERS=layers):
            yield redis
    finally:
        redis.stop()


@needs_model
@needs_images
@pytest.mark.django_db(transaction=True)
def test_redis_restart_mid_run_keeps_readings_and_broadcasts_resume(
    throwaway_redis: ThrowawayRedis,
    live_asgi_server: Any,
    counter: YoloCounter,
    django_user_model: Any,
    session_cookie_for,
) -> None:
    from websockets.sync.client import connect

    location = Location.objects.create(name="Concourse", capacity_limit=500)
    Camera.objects.create(location=location, name="cam", source=str(IMAGES))
    sessionid = session_cookie_for(django_user_model.objects.create_superuser("ops", "ops@example.com", None))
    stop = threading.Event()
    worker = DetectionWorker(counter, camera_feeds, interval=0.3, stop=stop)
    thread = threading.Thread(target=worker.run, daemon=True)

    def live_update_after(since: datetime, timeout: float) -> dict[str, Any]:
        """A fresh client (as a dashboard reconnecting) gets the snapshot, then a live update newer than `since`."""
        with connect(
            live_asgi_server.ws_url + "/ws/crowd/",
            additional_headers=live_asgi_server.ws_headers(sessionid),
            proxy=None,
            open_timeout=5,
        ) as ws:
            deadline = time.monotonic() + timeout
            while True:
                message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                stamp = message.get("timestamp")
                if message["type"] == "crowd_update" and stamp and datetime.fromisoformat(stamp) > since:
                    return message

    thread.start()
    try:
        assert live_update_after(timezone.now(), 60)["location_id"] == location.pk

        throwaway_redis.stop()
        down_at = timezone.now()
        time.sleep(3)
        during = list(CrowdLog.objects.filter(timestamp__gt=down_at).order_by("timestamp").values_list("timestamp"))
        assert len(during) >= 3, "readings are still stored while Redis is down"
        times = [down_at] + [at for (at,) in during]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        # A publish to a Redis that is down gives up at once (connection refused; REDIS_CONNECT_TIMEOUT otherwise).
        assert max(gaps) < 0.3 + 2.0, f"the worker lost its cadence while Redis was down: gaps {gaps}"

        throwaway_redis.start()
        up_at = timezone.now()
        message = live_update_after(up_at, 30)
        assert message["location_id"] == location.pk and message["type"] == "crowd_update"
    finally:
        stop.set()
        thread.join(60)
    assert worker.recorded == CrowdLog.objects.count(), "no reading lost to the outage"


# --- camera faults ---------------------------------------------------------------------------------------------------


class HangingCamera(ThreadingHTTPServer):
    """Accepts connections and never answers (a camera stuck mid-boot); or, with `frozen`, an MJPEG stream that
    repeats one picture forever."""

    daemon_threads = True

    def __init__(self, jpeg: bytes) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/hang.jpg":
                    server.release.wait(30)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not server.release.is_set():
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + jpeg + b"\r\n")
                        time.sleep(0.05)
                except OSError:
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.release = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@needs_model
@needs_images
@pytest.mark.django_db(transaction=True)
def test_ended_refused_hanging_and_frozen_cameras_go_offline_and_the_good_one_keeps_its_cadence(
    counter: YoloCounter, tmp_path: Path
) -> None:
    frames = sorted(IMAGES.iterdir())
    image = cv2.imread(str(frames[0]))
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (image.shape[1], image.shape[0]))
    for path in frames[:3]:
        writer.write(cv2.imread(str(path)))
    writer.release()
    server = HangingCamera(cv2.imencode(".jpg", image)[1].tobytes())
    threading.Thread(target=server.serve_forever, daemon=True).start()

    location = Location.objects.create(name="Station", capacity_limit=300)
    sources = {
        "good": str(IMAGES),
        "ended": str(clip),  # 3 frames, one per 0.2 s pass at 5 fps: ends on the 4th read
        "refused": f"http://127.0.0.1:{free_port()}/snapshot.jpg",
        "hanging": server.url("/hang.jpg"),
        "frozen": server.url("/stream"),
    }
    cameras = {name: Camera.objects.create(location=location, name=name, source=uri) for name, uri in sources.items()}

    def feeds() -> list[Feed]:
        return [
            Feed(location.pk, c.source, c.pk, backoff=Backoff(base=0.1, maximum=0.5), location_name=location.name)
            for c in cameras.values()
        ]

    interval, passes = 0.2, 25
    worker = DetectionWorker(counter, feeds, interval=interval, stop=threading.Event(), frozen_samples=3)
    started = time.monotonic()
    try:
        worker.run(cycles=passes)
    finally:
        server.release.set()
        server.shutdown()
    elapsed = time.monotonic() - started

    good = list(CrowdLog.objects.filter(camera=cameras["good"]).order_by("timestamp").values_list("timestamp"))
    assert len(good) == passes, "the good camera was sampled on every pass"
    gaps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(good)]
    assert max(gaps) < 10.0 / 2, f"a hanging camera (10 s HTTP timeout) held the others up: gaps {gaps}"
    assert CrowdLog.objects.filter(camera=cameras["ended"]).count() == 3

    for name in ("ended", "refused", "frozen"):
        camera = Camera.objects.get(pk=cameras[name].pk)
        assert camera.status == Camera.Status.OFFLINE, name
        assert Alert.objects.filter(camera=camera, kind="CAMERA_OFFLINE", status=Alert.Status.ACTIVE).exists(), name
    assert "no more frames" in Camera.objects.get(pk=cameras["ended"].pk).last_error
    assert "Cannot reach" in Camera.objects.get(pk=cameras["refused"].pk).last_error
    assert "frozen" in Camera.objects.get(pk=cameras["frozen"].pk).last_error
    # A frozen stream's first samples (before it is known to be frozen) are readings like any other.
    assert CrowdLog.objects.filter(camera=cameras["frozen"]).count() <= 2
    print(f"\n{passes} passes in {elapsed:.1f} s; good camera gaps max {max(gaps):.2f} s")
