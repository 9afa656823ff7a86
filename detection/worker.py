"""The detection worker loop: sample every camera each interval, count people, record readings.

One broken camera never stops the others: its source is closed, retried with back-off, marked
OFFLINE (with a CAMERA_OFFLINE alert after repeated failures) and cleared when frames come back.
A live camera whose picture stops changing (a frozen encoder or stream) counts as offline too.

The work of a pass is pipelined so that the CPU spends its time on inference rather than waiting:

    sampling threads (`fetch_threads`)                 main thread                writer thread
    open / read / decode frames, count people   -->   per-camera state   -->   record_readings (or spool),
                                                                                latest frame, status

Live sources (RTSP, MJPEG, webcams) already read on a thread of their own, keeping only the newest frame;
a sampling thread takes that frame, or fetches a snapshot / decodes a file frame, and counts it. Several
cameras' frames are counted at once where the counter can run them side by side (`Counter.parallel`: OpenVINO
inference streams); the counter's own request pool bounds how many. The main thread keeps what must stay in
order per camera (the previous reading, online / offline state) and hands readings to the writer. The writer
stores what was counted since its last write together, in order, through `locations.services.record_readings`,
each reading with an idempotency key; while the database is unreachable it keeps them in the spool
(detection/spool.py) and writes them, in order and exactly once, when it is back. With a `LeaseKeeper`
(detection/leases.py) the worker samples only the cameras it holds, so several workers share the cameras.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import cv2
import numpy as np
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from alerts import services as alert_services
from alerts.engine import AlertKind, Condition, Severity
from alerts.models import Alert
from crowd_monitor.redaction import redact_uri
from locations.models import Camera, CameraFrame, CrowdLog, Location
from locations.services import InvalidReading, NewReading, record_readings

from .counting.engine import CameraProfile, CameraState, count_frame, median_index, settle
from .detectors import Counter, CountResult
from .faults import Database, DatabaseDown, reset_connection
from .metrics import WorkerMetrics
from .sources import Backoff, Frame, FrameSource, SourceEnded, SourceError, open_source
from .spool import PendingReading, Spool

logger = logging.getLogger(__name__)

# Consecutive failed attempts before a camera's outage is raised as an alert: one dropped
# connection is routine, three in a row is an operator's problem.
OFFLINE_ALERT_AFTER = 3
MAX_FRAME_WIDTH = 960
# The dashboard shows each camera's newest frame and when it was last seen; encoding and writing them more often than
# this is wasted CPU and database writes (a camera sampled ten times a second would double the writes per reading).
FRAME_STORE_SECONDS = 1.0
# How often the list of cameras and their counting profiles (mode, zone, calibration) are re-read.
FEEDS_REFRESH_SECONDS = 2.0
PROFILE_REFRESH_SECONDS = 10.0
# Spooled readings are retried this often while the database is down.
SPOOL_RETRY_SECONDS = 1.0
# A spooled reading that fails this many times for a reason other than the database being down is dropped.
SPOOL_MAX_ATTEMPTS = 5
FROZEN_THUMBNAIL = (64, 36)
# A pass stops waiting for a fetch still running this long after it started (or after an interval, if longer).
STRAGGLER_SECONDS = 2.0
# Readings are written at most this often, and at most this many in one transaction (see _write_loop).
WRITE_INTERVAL = 0.1
WRITE_BATCH = 64


class FrozenCheck:
    """A live camera whose picture is identical `samples` times in a row is frozen (0: never).

    Frames are compared by a hash of a 64x36 grey thumbnail: a stuck encoder or a stream that repeats one
    frame gives identical thumbnails, while a live scene, even an empty one, changes a few of its pixels (noise,
    light, an on-screen clock). Once frozen, the camera stays frozen until its picture changes.
    """

    def __init__(self, samples: int) -> None:
        self.samples = samples
        self.last: bytes | None = None
        self.repeats = 0  # identical samples in a row after the first

    @staticmethod
    def signature(image: np.ndarray) -> bytes:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        thumbnail = cv2.resize(grey, FROZEN_THUMBNAIL, interpolation=cv2.INTER_AREA)
        return hashlib.blake2b(thumbnail.tobytes(), digest_size=16).digest()

    def update(self, signature: bytes) -> bool:
        """Record a sample; True when the camera is frozen."""
        self.repeats = self.repeats + 1 if signature == self.last else 0
        self.last = signature
        return self.samples > 0 and self.repeats + 1 >= self.samples


@dataclass
class Feed:
    """One thing to sample: a configured camera, or an ad-hoc source for a location."""

    location_id: int
    uri: str
    camera_id: int | None = None
    source: FrameSource | None = None
    backoff: Backoff = field(default_factory=Backoff)
    retry_at: float = 0.0
    online: bool = False  # known to be sending frames since this worker started
    counting: CameraState = field(default_factory=CameraState)  # previous reading, for hold_untrusted
    location_name: str = ""
    profile: CameraProfile | None = None  # counting mode, zone and calibration; reloaded every few seconds
    profile_loaded_at: float = float("-inf")
    frozen: FrozenCheck | None = None
    offline_alerted: bool = False
    frame_stored_at: float = float("-inf")
    # The sample in flight, if any (a source is read by one thread at a time): the frames of one reading, counted.
    fetching: Future[_Counted] | None = None
    retired: bool = False  # no longer wanted; closed once its fetch returns

    @property
    def label(self) -> str:
        return f"camera {self.camera_id}" if self.camera_id else redact_uri(self.uri)

    @property
    def metric_label(self) -> str:
        return str(self.camera_id) if self.camera_id else f"location-{self.location_id}"


def camera_feeds(location_id: int | None = None, camera_ids: frozenset[int] | None = None) -> list[Feed]:
    cameras = Camera.objects.filter(enabled=True, location__is_active=True).select_related("location")
    if location_id is not None:
        cameras = cameras.filter(location_id=location_id)
    if camera_ids is not None:
        cameras = cameras.filter(pk__in=camera_ids)
    return [
        Feed(location_id=c.location_id, uri=c.source, camera_id=c.pk, location_name=c.location.name) for c in cameras
    ]


def store_latest_frame(camera_id: int, image: np.ndarray, result: CountResult, at: datetime) -> None:
    """Keep the camera's newest frame (JPEG, at most MAX_FRAME_WIDTH wide) with its person boxes for the dashboard."""
    height, width = image.shape[:2]
    if width > MAX_FRAME_WIDTH:
        image = cv2.resize(
            image, (MAX_FRAME_WIDTH, round(height * MAX_FRAME_WIDTH / width)), interpolation=cv2.INTER_AREA
        )
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
    if not ok:
        return
    CameraFrame.objects.update_or_create(
        camera_id=camera_id,
        defaults={
            "jpeg": jpeg.tobytes(),
            "width": width,  # boxes are in these (original) pixels; clients scale them to the image shown
            "height": height,
            "count": result.count,
            "boxes": result.details()["boxes"],
            "captured_at": at,
        },
    )


@dataclass
class _Counted:
    """The frames of one reading and their counts, from a sampling thread."""

    frames: list[Frame]
    results: list[CountResult]
    taken_at: datetime


@dataclass
class _Sampled:
    """A counted frame on its way to the writer."""

    feed: Feed
    reading: PendingReading
    image: np.ndarray | None  # for the dashboard's latest frame; None when not due
    result: CountResult
    position: str
    due: float  # monotonic time the sample was due (start of its pass)
    came_online: bool  # first good frame after a failure (or since start): clear the camera's offline state


@dataclass
class _Failure:
    feed: Feed
    message: str
    raise_alert: bool


_STOP = object()


class DetectionWorker:
    def __init__(
        self,
        counter: Counter,
        feeds: Callable[[], list[Feed]],
        interval: float,
        stop: threading.Event,
        report: Callable[[str], None] = logger.info,
        *,
        leases: Any = None,  # detection.leases.LeaseKeeper: sample only the cameras it holds
        spool: Spool | None = None,
        metrics: WorkerMetrics | None = None,
        database: Database | None = None,
        fetch_threads: int = 4,
        frozen_samples: int | None = None,
        frames_per_reading: int | None = None,
        frame_spacing: float | None = None,
        name: str = "",
    ) -> None:
        self.counter = counter
        self.load_feeds = feeds
        self.interval = interval
        self.stop = stop
        self.report = report
        self.leases = leases
        # Readings that could not be written yet: the command passes a disk spool; otherwise they wait in memory.
        self.spool = spool if spool is not None else Spool(None, max_items=10_000)
        self.database = database or (leases.database if leases is not None else Database())
        self.name = name or (leases.name if leases is not None else "worker")
        self.metrics = metrics or WorkerMetrics(self.name)
        self.fetch_threads = max(1, fetch_threads)
        self.frozen_samples = settings.DETECTION_FROZEN_SAMPLES if frozen_samples is None else frozen_samples
        self.frames_per_reading = max(
            1, settings.DETECTION_FRAMES_PER_READING if frames_per_reading is None else frames_per_reading
        )
        self.frame_spacing = settings.DETECTION_FRAME_SPACING if frame_spacing is None else frame_spacing
        self.feeds: dict[tuple[int | None, str], Feed] = {}
        self._feeds_refreshed_at = float("-inf")
        self._retired: list[Feed] = []  # removed feeds whose fetch was still running
        self._writes: queue.Queue[Any] = queue.Queue(maxsize=2 * self.fetch_threads + 8)
        self._writer: threading.Thread | None = None
        self._spool_retry_at = 0.0
        self.recorded = 0  # readings stored or spooled
        self.cycles = 0

    # --- the loop -------------------------------------------------------------------------------------------------

    def run(self, cycles: int | None = None) -> int:
        """Sample until stopped (or for `cycles` passes). Returns the number of readings recorded (stored or spooled).

        On stop the current pass is finished, its readings written (or spooled), the spool flushed if the
        database is reachable and the cameras' leases given back.
        """
        done = threading.Event()  # ends the heartbeat when run() returns without `stop` (cycles reached)
        self._writer = threading.Thread(target=self._write_loop, name="detection-writer", daemon=True)
        self._writer.start()
        pool = ThreadPoolExecutor(max_workers=self.fetch_threads, thread_name_prefix="detection-fetch")
        try:
            if self.leases is not None:
                try:
                    self.leases.beat()
                except DatabaseDown:
                    logger.warning("event=start_without_database worker=%s: no camera can be claimed yet", self.name)
                self.leases.start(_EitherEvent(self.stop, done))
            while not self.stop.is_set():
                started = time.monotonic()
                close_old_connections()  # a worker runs for days; don't reuse a connection the DB dropped
                self._refresh_feeds()
                sampled, failed = self._pass(pool, started)
                self.cycles += 1
                if self.leases is not None:
                    with contextlib.suppress(DatabaseDown):
                        self.leases.settle()  # between passes: give back cameras above this worker's share
                self._summary(started, sampled, failed)
                if cycles is not None and self.cycles >= cycles:
                    break
                self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            pool.shutdown(wait=True)
            for feed in [*self.feeds.values(), *self._retired]:
                self._close(feed)
            self._writes.put(_STOP)
            self._writer.join()
            done.set()
            if self.leases is not None:
                self.leases.join()
                try:
                    self.leases.release_all()
                except DatabaseDown:
                    logger.warning("event=lease_release_failed worker=%s: the leases will expire", self.name)
            reset_connection()
        return self.recorded

    def _refresh_feeds(self) -> None:
        """Pick up cameras added, changed, disabled (or leased to another worker) without a restart."""
        now = time.monotonic()
        if now - self._feeds_refreshed_at >= FEEDS_REFRESH_SECONDS or not self.feeds:
            try:
                wanted = {(f.camera_id, f.uri): f for f in self.database.call(self.load_feeds)}
            except DatabaseDown:
                wanted = None  # keep sampling what we have; the database will be back
            if wanted is not None:
                self._feeds_refreshed_at = now
                for key in set(self.feeds) - set(wanted):
                    feed = self.feeds.pop(key)
                    if feed.fetching is None:
                        self._close(feed)
                    else:  # closed when its fetch returns: a source must not be closed under a reading thread
                        feed.retired = True
                        self._retired.append(feed)
                for key, feed in wanted.items():
                    kept = self.feeds.setdefault(key, feed)
                    if kept.location_id != feed.location_id:
                        # A camera moved to another location (same camera, same source, so the same key): its readings
                        # belong there from now on. Kept as it is, it went on counting for the old location until a
                        # restart, and the place it now watches never counted its people.
                        kept.location_id = feed.location_id
                        kept.location_name = feed.location_name
        for feed in self.feeds.values():
            if feed.camera_id is not None and now - feed.profile_loaded_at >= PROFILE_REFRESH_SECONDS:
                try:
                    feed.profile = self.database.call(lambda f=feed: CameraProfile.load(f.camera_id))
                    feed.profile_loaded_at = now
                except DatabaseDown:
                    break
            if not feed.location_name:
                try:
                    feed.location_name = self.database.call(
                        lambda f=feed: Location.objects.filter(pk=f.location_id).values_list("name", flat=True)[0]
                    )
                except (DatabaseDown, IndexError):
                    feed.location_name = f"location {feed.location_id}"

    def _due_feeds(self) -> list[Feed]:
        now = time.monotonic()
        due = []
        for feed in self.feeds.values():
            if now < feed.retry_at or feed.fetching is not None:
                continue
            if feed.camera_id is not None and feed.profile is None:
                continue  # counted only once its mode, zone and calibration are known (the database was down)
            if self.leases is not None and feed.camera_id is not None and not self.leases.may_sample(feed.camera_id):
                continue
            due.append(feed)
        return due

    def _pass(self, pool: ThreadPoolExecutor, due: float) -> tuple[int, int]:
        """One pass over the due feeds: frames are fetched a few cameras ahead of the counter.

        A fetch still hanging when everything else is done and the pass's time is up (a camera that accepts the
        connection but sends nothing, until its timeout) is left to finish in the background: its frame is
        counted in a later pass, and the other cameras keep their cadence.
        """
        deadline = due + max(self.interval, STRAGGLER_SECONDS)
        # Fetches left running by earlier passes: counted if they are done, never waited for again.
        pending: dict[Future[_Counted], Feed] = {f.fetching: f for f in self.feeds.values() if f.fetching is not None}
        fresh: set[Future[_Counted]] = set()
        feeds = iter(self._due_feeds())
        exhausted = False
        sampled = failed = 0

        def submit_next() -> None:
            nonlocal exhausted
            feed = next(feeds, None)
            if feed is None:
                exhausted = True
            else:
                feed.fetching = pool.submit(self._sample, feed)
                pending[feed.fetching] = feed
                fresh.add(feed.fetching)

        while len(pending) <= self.fetch_threads and not exhausted:
            submit_next()
        while pending:
            if not fresh & pending.keys():
                timeout: float | None = 0.0
            elif exhausted:
                timeout = max(0.0, deadline - time.monotonic())
            else:
                timeout = None
            finished, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            if not finished:
                break  # only stragglers left, and the pass's time is up
            for future in finished:
                feed = pending.pop(future)
                feed.fetching = None
                if not exhausted:
                    submit_next()
                if feed.retired:
                    self._close(feed)  # removed while its frame was being fetched
                    continue
                try:
                    counted = future.result()
                except SourceError as exc:
                    self._failed(feed, exc)
                    failed += 1
                    continue
                except Exception:
                    # A bad frame or a counter hiccup costs this sample, not the worker.
                    logger.exception("Sampling %s failed", feed.label)
                    self.metrics.error(feed.metric_label, "count")
                    failed += 1
                    continue
                self._record(feed, counted, due)
                sampled += 1
        return sampled, failed

    def _fetch(self, feed: Feed) -> list[Frame]:
        """In a sampling thread: the frames of the feed's next reading (opening its source once and keeping it open).

        A live camera gives `frames_per_reading` frames, `frame_spacing` s apart; recordings and image sets give
        one, as they stand for a camera sampled once per interval.
        """
        frame = self._read(feed)
        live = getattr(feed.source, "live", False)
        if live and self.frozen_samples > 0:
            if feed.frozen is None:
                feed.frozen = FrozenCheck(self.frozen_samples)
            if feed.frozen.update(FrozenCheck.signature(frame.image)):
                raise SourceError(
                    f"{feed.label} is frozen: the same picture {feed.frozen.repeats + 1} samples in a row"
                )
        frames = [frame]
        while live and len(frames) < self.frames_per_reading and not self.stop.wait(self.frame_spacing):
            try:
                frames.append(self._read(feed))
            except SourceError as exc:
                # The reading still has the frames taken so far; the next pass finds out whether the source is down.
                logger.info("Source %s: frame %d of a reading failed (%s)", feed.label, len(frames) + 1, exc)
                break
        return frames

    def _read(self, feed: Feed) -> Frame:
        try:
            if feed.source is None:
                feed.source = open_source(feed.uri, interval=self.interval)
            return feed.source.read()
        except SourceError:
            raise
        except Exception as exc:  # a source bug must look like a failing camera, not kill the pass
            raise SourceError(f"{feed.label}: {type(exc).__name__}: {exc}") from exc

    def _sample(self, feed: Feed) -> _Counted:
        """In a sampling thread: the frames of the feed's next reading, each counted the camera's way (mode, zone,
        calibration). Source failures raise SourceError; anything else raised is the counter's."""
        frames = self._fetch(feed)
        taken_at = timezone.now()
        profile = feed.profile or CameraProfile()  # a camera's own profile is loaded before it is due
        results = []
        for each in frames:
            self.metrics.frame(feed.metric_label)
            started = time.perf_counter()
            results.append(count_frame(self.counter, each.image, profile))
            self.metrics.inference(feed.metric_label, time.perf_counter() - started)
        return _Counted(frames, results, taken_at)

    def _record(self, feed: Feed, counted: _Counted, due: float) -> None:
        """On the main thread, in each camera's order: settle the count and hand the reading to the writer."""
        frames, results = counted.frames, counted.results
        chosen = median_index(results)
        frame, result = frames[chosen], results[chosen]
        if len(results) > 1:
            counts = ", ".join(str(r.count) for r in results)
            result = replace(result, notes=(*result.notes, f"median of {len(results)} frames ({counts})"))
        # An untrusted reading never lowers the count on its own.
        result = settle(result, feed.counting)
        details = {**result.details(), "position": frame.position, "frame_index": frame.index}
        if self.leases is not None:
            details["worker"] = self.name
        reading = PendingReading(
            key=uuid.uuid4().hex,
            location_id=feed.location_id,
            camera_id=feed.camera_id,
            count=result.count,
            at=counted.taken_at,
            source=CrowdLog.Source.CAMERA,
            details=details,
        )
        store_frame = feed.camera_id is not None and time.monotonic() - feed.frame_stored_at >= FRAME_STORE_SECONDS
        if store_frame:
            feed.frame_stored_at = time.monotonic()
        came_online = not feed.online
        feed.online = True
        feed.backoff.succeeded()
        feed.offline_alerted = False
        self.metrics.online(feed.metric_label, True)
        self._writes.put(
            _Sampled(feed, reading, frame.image if store_frame else None, result, frame.position, due, came_online)
        )

    def _failed(self, feed: Feed, exc: SourceError) -> None:
        self._close(feed)
        feed.online = False
        delay = feed.backoff.failed()
        feed.retry_at = time.monotonic() + delay
        kind = "ended" if isinstance(exc, SourceEnded) else "frozen" if "is frozen" in str(exc) else "failed"
        self.metrics.error(feed.metric_label, "frozen" if kind == "frozen" else "source")
        self.metrics.online(feed.metric_label, False)
        if kind == "ended":
            # A recording that ended is over: playing it again from the start would pass old footage off as
            # live. It stays offline until its source is changed (or the worker restarts).
            feed.retry_at = float("inf")
            logger.warning("Source %s ended (%s); not sampled again until its source changes", feed.label, exc)
        else:
            logger.warning("Source %s %s (%s); retrying in %.0f s", feed.label, kind, exc, delay)
        if feed.camera_id is None:
            return
        raise_alert = (kind == "ended" or feed.backoff.failures >= OFFLINE_ALERT_AFTER) and not feed.offline_alerted
        if raise_alert:
            feed.offline_alerted = True
        self._writes.put(_Failure(feed, str(exc), raise_alert))

    def _summary(self, started: float, sampled: int, failed: int) -> None:
        figures = self.metrics.cycle(time.monotonic() - started)
        depth = self._spool_depth()
        self.metrics.database(self.database.up)
        if self.leases is not None:
            self.metrics.cameras(len(self.leases.held))
        logger.info(
            "event=cycle worker=%s cycle=%d cameras=%d sampled=%d failed=%d duration_ms=%.0f infer_ms_p50=%.1f "
            "infer_ms_max=%.1f lag_ms_p95=%.0f lag_ms_max=%.0f stored=%d spooled=%d spool_depth=%d db=%s",
            self.name,
            self.cycles,
            len(self.feeds),
            sampled,
            failed,
            figures["duration_ms"],
            figures["infer_ms_p50"],
            figures["infer_ms_max"],
            figures["lag_ms_p95"],
            figures["lag_ms_max"],
            figures["stored"],
            figures["spooled"],
            depth,
            "up" if self.database.up else "down",
        )

    def _spool_depth(self) -> int:
        depth = self.spool.depth()
        self.metrics.spool(depth, self.spool.dropped)
        return depth

    # --- the writer thread ------------------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            stopping = False
            last_write = float("-inf")
            while not stopping:
                try:
                    items = [self._writes.get(timeout=0.5)]
                except queue.Empty:
                    items = []
                # Group commit: everything counted since the last write is written together, at most every
                # WRITE_INTERVAL. A reading that follows a quiet spell is written at once; when readings pour in, they
                # wait up to WRITE_INTERVAL and share one transaction, so the write path costs the counter little CPU.
                write_at = last_write + WRITE_INTERVAL
                while items and len(items) < WRITE_BATCH and _STOP not in items:
                    try:
                        items.append(self._writes.get(timeout=max(0.0, write_at - time.monotonic())))
                    except queue.Empty:
                        break
                if items:
                    last_write = time.monotonic()
                if _STOP in items:
                    stopping = True
                    items = items[: items.index(_STOP)]
                try:
                    samples: list[_Sampled] = []
                    for item in items:  # in order: a camera's failure is handled after its earlier readings
                        if isinstance(item, _Sampled):
                            samples.append(item)
                            continue
                        self._store(samples)
                        samples = []
                        self._mark_offline(item)
                    self._store(samples)
                    self._retry_spool()
                except Exception:
                    logger.exception("event=writer_error worker=%s", self.name)
            self._retry_spool(force=True)  # one last try, even if the database seemed down
        finally:
            reset_connection()

    def _store(self, items: list[_Sampled]) -> None:
        """Store counted readings in one write (or spool them while the database is away), oldest first."""
        if not items:
            return
        if not self.database.up or self.spool.depth() > 0:
            self._retry_spool()  # older readings first
        logs: list[CrowdLog | None] = [None] * len(items)
        if self.database.up and self.spool.depth() == 0:
            try:
                logs = list(self.database.call(lambda: self._write([item.reading for item in items])))
            except DatabaseDown:
                pass
            except (InvalidReading, Location.DoesNotExist) as exc:
                if len(items) > 1:  # find the reading that cannot be stored; store the others
                    for item in items:
                        self._store([item])
                    return
                logger.error("event=reading_rejected camera=%s error=%r", items[0].feed.metric_label, str(exc))
                self.metrics.error(items[0].feed.metric_label, "store")
                return
            except Exception:
                # Not an outage and not a bad reading: a bug, or a race the write path did not foresee. The readings
                # wait in the spool, where each is retried alone and dropped only after SPOOL_MAX_ATTEMPTS, logged
                # (spooled_reading_dropped); a batch lost here would be lost without a trace in the figures.
                logger.exception("event=write_failed worker=%s readings=%d", self.name, len(items))
        for item, log in zip(items, logs, strict=True):
            if log is None:
                self.spool.append(item.reading)
            self._stored(item, "stored" if log is not None else "spooled", log)

    def _stored(self, item: _Sampled, outcome: str, log: CrowdLog | None) -> None:
        reading, feed = item.reading, item.feed
        lag = time.monotonic() - item.due
        self.metrics.reading(feed.metric_label, outcome, lag)
        self.recorded += 1
        if log is not None:
            self._after_store(item, log)
        elif item.came_online:
            # Clearing the offline state and its alert needs the database: leave it to the next reading stored.
            item.feed.online = False
        logger.debug(
            "event=sample worker=%s camera=%s location=%s count=%d infer_ms=%.1f lag_ms=%.0f outcome=%s key=%s "
            "position=%r",
            self.name,
            feed.metric_label,
            reading.location_id,
            reading.count,
            item.result.inference_ms,
            lag * 1000,
            outcome,
            reading.key,
            item.position,
        )
        suffix = " (spooled: database unreachable)" if outcome == "spooled" else ""
        self.report(f"{feed.location_name}: {reading.count} people ({feed.label}, {item.position}){suffix}")

    @staticmethod
    def _write(readings: list[PendingReading]) -> list[CrowdLog]:
        """The one write path, with each reading's own timestamp and idempotency key."""
        return record_readings(
            [NewReading(r.location_id, r.count, r.source, r.camera_id, r.at, r.details, r.key) for r in readings]
        )

    def _after_store(self, item: _Sampled, log: CrowdLog) -> None:
        """The camera's latest frame and status: nice to have, so a failure here never costs the reading.

        Written at most every FRAME_STORE_SECONDS per camera, and at once when a camera comes back.
        """
        feed = item.feed
        if feed.camera_id is None or (item.image is None and not item.came_online):
            return
        try:
            if item.image is not None:
                self.database.call(lambda: store_latest_frame(feed.camera_id, item.image, item.result, log.timestamp))
            self.database.call(lambda: self._mark_online(feed.camera_id, item.came_online))
        except DatabaseDown:
            if item.came_online:
                feed.online = False  # try clearing the offline state again with the next frame
        except Exception:
            logger.exception("event=status_update_failed camera=%s", feed.metric_label)

    @staticmethod
    def _mark_online(camera_id: int, came_online: bool) -> None:
        Camera.objects.filter(pk=camera_id).update(
            status=Camera.Status.ONLINE, last_seen_at=timezone.now(), last_error=""
        )
        if not came_online:
            return
        offline = Alert.objects.filter(
            camera_id=camera_id, kind=AlertKind.CAMERA_OFFLINE, status__in=Alert.OPEN_STATUSES
        ).first()
        if offline is not None:
            alert_services.resolve_by_system(offline, "Camera is sending frames again.")

    def _mark_offline(self, failure: _Failure) -> None:
        feed = failure.feed

        def update() -> None:
            Camera.objects.filter(pk=feed.camera_id).update(
                status=Camera.Status.OFFLINE, last_error=failure.message[:1000]
            )
            if not failure.raise_alert:
                return
            camera = Camera.objects.select_related("location").get(pk=feed.camera_id)
            alert_services.raise_alert(
                camera.location,
                Condition(
                    key=f"{AlertKind.CAMERA_OFFLINE}:{camera.pk}",
                    kind=AlertKind.CAMERA_OFFLINE,
                    severity=Severity.WARNING,
                    message=f"Camera {camera.name!r} is offline: {failure.message}",
                ),
                camera=camera,
            )

        try:
            self.database.call(update)
        except DatabaseDown:
            if failure.raise_alert:
                feed.offline_alerted = False  # raise it with the next failure, when the database is back

    def _retry_spool(self, force: bool = False) -> None:
        """Write spooled readings, oldest first, when the database may be back (at most every second while down)."""
        now = time.monotonic()
        if not force and not self.database.up and now < self._spool_retry_at:
            return
        self._spool_retry_at = now + SPOOL_RETRY_SECONDS
        if self.spool.depth() == 0:
            return
        try:
            written = self.spool.flush(self._write_spooled)
        except DatabaseDown:
            return
        if written:
            logger.info("event=spool_flushed worker=%s written=%d remaining=%d", self.name, written, self.spool.depth())
            self.metrics.flushed(written)

    def _write_spooled(self, reading: PendingReading) -> None:
        try:
            self.database.call(lambda: self._write([reading]))
        except (InvalidReading, Location.DoesNotExist) as exc:
            logger.error("event=spooled_reading_rejected key=%s error=%r", reading.key, str(exc))
        except DatabaseDown:
            raise
        except Exception:
            attempts = self.spool.failed_attempt(reading)
            if attempts < SPOOL_MAX_ATTEMPTS:
                raise
            logger.exception("event=spooled_reading_dropped key=%s attempts=%d", reading.key, attempts)

    @staticmethod
    def _close(feed: Feed) -> None:
        if feed.source is not None:
            try:
                feed.source.close()
            finally:
                feed.source = None


class _EitherEvent:
    """An Event-like view that is set when either of two events is."""

    def __init__(self, a: threading.Event, b: threading.Event) -> None:
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.a.wait(min(remaining, 0.2))
        return True
