"""The detection worker loop: sample every camera each interval, count people, record readings.

One broken camera never stops the others: its source is closed, retried with back-off, marked
OFFLINE (with a CAMERA_OFFLINE alert after repeated failures) and cleared when frames come back.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np
from django.db import close_old_connections
from django.utils import timezone

from alerts import services as alert_services
from alerts.engine import AlertKind, Condition, Severity
from alerts.models import Alert
from crowd_monitor.redaction import redact_uri
from locations.models import Camera, CameraFrame, CrowdLog, Location
from locations.services import record_reading

from .detectors import Counter, CountResult
from .sources import Backoff, FrameSource, SourceEnded, SourceError, open_source

logger = logging.getLogger(__name__)

# Consecutive failed attempts before a camera's outage is raised as an alert: one dropped
# connection is routine, three in a row is an operator's problem.
OFFLINE_ALERT_AFTER = 3
MAX_FRAME_WIDTH = 960


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

    @property
    def label(self) -> str:
        return f"camera {self.camera_id}" if self.camera_id else redact_uri(self.uri)


def camera_feeds(location_id: int | None = None) -> list[Feed]:
    cameras = Camera.objects.filter(enabled=True, location__is_active=True)
    if location_id is not None:
        cameras = cameras.filter(location_id=location_id)
    return [Feed(location_id=c.location_id, uri=c.source, camera_id=c.pk) for c in cameras]


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


class DetectionWorker:
    def __init__(
        self,
        counter: Counter,
        feeds: Callable[[], list[Feed]],
        interval: float,
        stop: threading.Event,
        report: Callable[[str], None] = logger.info,
    ) -> None:
        self.counter = counter
        self.load_feeds = feeds
        self.interval = interval
        self.stop = stop
        self.report = report
        self.feeds: dict[tuple[int | None, str], Feed] = {}

    def run(self, cycles: int | None = None) -> int:
        """Sample until stopped (or for `cycles` passes). Returns the number of readings recorded."""
        recorded = 0
        done = 0
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                close_old_connections()  # a worker runs for days; don't reuse a connection the DB dropped
                self._refresh_feeds()
                for feed in list(self.feeds.values()):
                    if self.stop.is_set():
                        break
                    try:
                        recorded += self.sample(feed)
                    except Exception:
                        # A bad frame or a database hiccup costs this sample, not the worker.
                        logger.exception("Sampling %s failed", feed.label)
                done += 1
                if cycles is not None and done >= cycles:
                    break
                self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            for feed in self.feeds.values():
                self._close(feed)
        return recorded

    def _refresh_feeds(self) -> None:
        """Pick up cameras added, changed or disabled in admin without a restart."""
        wanted = {(f.camera_id, f.uri): f for f in self.load_feeds()}
        for key in set(self.feeds) - set(wanted):
            self._close(self.feeds.pop(key))
        for key, feed in wanted.items():
            self.feeds.setdefault(key, feed)

    def sample(self, feed: Feed) -> int:
        if time.monotonic() < feed.retry_at:
            return 0
        try:
            if feed.source is None:
                feed.source = open_source(feed.uri, interval=self.interval)
            frame = feed.source.read()
        except SourceError as exc:
            self._failed(feed, exc)
            return 0
        result = self.counter.count(frame.image)
        location = Location.objects.get(pk=feed.location_id)
        details = {**result.details(), "position": frame.position, "frame_index": frame.index}
        log = record_reading(
            location,
            result.count,
            source=CrowdLog.Source.CAMERA,
            camera_id=feed.camera_id,
            details=details,
        )
        if feed.camera_id is not None:
            store_latest_frame(feed.camera_id, frame.image, result, log.timestamp)
        self.report(f"{location.name}: {result.count} people ({feed.label}, {frame.position})")
        self._seen(feed)
        return 1

    def _failed(self, feed: Feed, exc: SourceError) -> None:
        self._close(feed)
        feed.online = False
        delay = feed.backoff.failed()
        feed.retry_at = time.monotonic() + delay
        kind = "ended" if isinstance(exc, SourceEnded) else "failed"
        logger.warning("Source %s %s (%s); retrying in %.0f s", feed.label, kind, exc, delay)
        if feed.camera_id is None:
            return
        Camera.objects.filter(pk=feed.camera_id).update(status=Camera.Status.OFFLINE, last_error=str(exc)[:1000])
        if feed.backoff.failures == OFFLINE_ALERT_AFTER:
            camera = Camera.objects.select_related("location").get(pk=feed.camera_id)
            alert_services.raise_alert(
                camera.location,
                Condition(
                    key=f"{AlertKind.CAMERA_OFFLINE}:{camera.pk}",
                    kind=AlertKind.CAMERA_OFFLINE,
                    severity=Severity.WARNING,
                    message=f"Camera {camera.name!r} is offline: {exc}",
                ),
                camera=camera,
            )

    def _seen(self, feed: Feed) -> None:
        was_online = feed.online
        feed.online = True
        feed.backoff.succeeded()
        if feed.camera_id is None:
            return
        Camera.objects.filter(pk=feed.camera_id).update(
            status=Camera.Status.ONLINE, last_seen_at=timezone.now(), last_error=""
        )
        if was_online:
            return
        offline = Alert.objects.filter(
            camera_id=feed.camera_id, kind=AlertKind.CAMERA_OFFLINE, status__in=Alert.OPEN_STATUSES
        ).first()
        if offline is not None:
            alert_services.resolve_by_system(offline, "Camera is sending frames again.")

    @staticmethod
    def _close(feed: Feed) -> None:
        if feed.source is not None:
            try:
                feed.source.close()
            finally:
                feed.source = None
