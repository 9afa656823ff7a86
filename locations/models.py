from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from crowd_monitor.redaction import redact_uri

from .density import DEFAULT_HIGH_THRESHOLD, DEFAULT_MEDIUM_THRESHOLD, DensityLevel

DENSITY_CHOICES = [(level.value, level.value.title()) for level in DensityLevel]
PERCENT = [MinValueValidator(0.1), MaxValueValidator(1000)]
# The longest a location's reading interval, spike window or alert cooldown may be, for admin and API alike: a week.
# Longer than any of them sensibly is for a live monitor, and small enough that the datetimes computed from them
# (now - 3 intervals, now - the window, resolved + the cooldown) can never overflow; SQLite would otherwise store up
# to 2**63 - 1 seconds, and then every reading, the API and the dashboard for that location answered 500.
MAX_SETTING_SECONDS = 7 * 24 * 60 * 60


class Location(models.Model):
    """A monitored place, its safety settings and its current state (the newest reading)."""

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    latitude = models.FloatField(null=True, blank=True, validators=[MinValueValidator(-90), MaxValueValidator(90)])
    longitude = models.FloatField(null=True, blank=True, validators=[MinValueValidator(-180), MaxValueValidator(180)])
    capacity_limit = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text="Safe number of people; may be changed at any time."
    )
    medium_threshold = models.FloatField(
        default=DEFAULT_MEDIUM_THRESHOLD, validators=PERCENT, help_text="Occupancy % from which density is MEDIUM."
    )
    high_threshold = models.FloatField(
        default=DEFAULT_HIGH_THRESHOLD, validators=PERCENT, help_text="Occupancy % from which density is HIGH."
    )
    alert_threshold = models.FloatField(
        default=80.0, validators=PERCENT, help_text="Occupancy % at which an OVERCROWDING alert fires."
    )
    spike_percent = models.FloatField(
        default=30.0, validators=PERCENT, help_text="A rise of more than this % within the spike window is a SPIKE."
    )
    spike_window_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(MAX_SETTING_SECONDS)]
    )
    spike_min_delta = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1)], help_text="A spike must also add at least this many people."
    )
    alert_cooldown_seconds = models.PositiveIntegerField(
        default=300,
        validators=[MaxValueValidator(MAX_SETTING_SECONDS)],
        help_text="After an alert is resolved, the same alert is not raised again for this long.",
    )
    expected_interval_seconds = models.PositiveIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_SETTING_SECONDS)],
        help_text="How often readings should arrive; with none for 3 intervals the location shows 'no data'.",
    )
    is_active = models.BooleanField(default=True)

    # Current state: the figures of the newest reading. Written only by locations.services.
    current_count = models.PositiveIntegerField(null=True, blank=True, editable=False)
    occupancy_percentage = models.FloatField(null=True, blank=True, editable=False)
    density_level = models.CharField(max_length=8, choices=DENSITY_CHOICES, blank=True, editable=False)
    last_reading_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When a camera last joined the location's count (a camera new here, moved here or enabled again), or the newest
    # reading then if later: the spike rule compares only readings after it, since the count grew because more of the
    # place is seen, not by a surge.
    cameras_changed_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(capacity_limit__gte=1), name="location_capacity_positive"),
            models.CheckConstraint(
                condition=models.Q(medium_threshold__lt=models.F("high_threshold")),
                name="location_medium_below_high",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        medium, high = self.medium_threshold, self.high_threshold
        if medium is not None and high is not None and medium >= high:
            raise ValidationError({"medium_threshold": "The MEDIUM threshold must be below the HIGH threshold."})

    @property
    def stale_after(self) -> timedelta:
        return timedelta(seconds=3 * self.expected_interval_seconds)


def _validate_points(value: object, message: str, at_least: int = 0) -> None:
    """A list of at least `at_least` [x, y] points in 0-1 frame coordinates, else ValidationError(message)."""
    if not isinstance(value, list) or len(value) < at_least:
        raise ValidationError(message)
    for point in value:
        if not (isinstance(point, list) and len(point) == 2 and all(isinstance(v, int | float) for v in point)):
            raise ValidationError(message)
        if not all(0 <= v <= 1 for v in point):
            raise ValidationError(message)


def validate_zone(value: object) -> None:
    """A camera zone: empty, or at least three [x, y] points with 0 <= x, y <= 1."""
    if value in (None, [], {}):
        return
    _validate_points(value, "A zone is a list of at least three [x, y] points with coordinates between 0 and 1.", 3)


class Camera(models.Model):
    class Status(models.TextChoices):
        UNKNOWN = "UNKNOWN", "Unknown"
        ONLINE = "ONLINE", "Online"
        OFFLINE = "OFFLINE", "Offline"

    class CountingMode(models.TextChoices):
        AUTO = "auto", "Auto (detection or density, from what the frame shows)"
        DETECT = "detect", "Detect (person boxes, sliced when people are small)"
        DENSITY = "density", "Density (crowd-density model; needs DENSITY_MODEL)"

    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="cameras")
    name = models.CharField(max_length=120)
    source = models.CharField(
        max_length=1000,
        help_text="RTSP / HTTP(S) MJPEG or snapshot URL, video file, image file / folder / glob, or webcam "
        "index. May contain credentials: it is shown only here.",
    )
    enabled = models.BooleanField(
        default=True,
        help_text="Only enabled cameras are sampled. The location's count is the sum of its enabled cameras' newest "
        "counts (a camera that went offline keeps its last count in it): disable a camera to take it out.",
    )
    counting_mode = models.CharField(max_length=10, choices=CountingMode.choices, default=CountingMode.AUTO)
    zone = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_zone],
        help_text="Counting zone: a polygon [[x, y], ...] in 0-1 frame coordinates (0,0 top-left); only people "
        "whose feet are inside count. Empty: the whole frame.",
    )
    calibration = models.JSONField(
        default=dict,
        blank=True,
        help_text="Written by manage.py calibrate_camera: counting mode, fitted map from raw estimate to count, "
        "cross-validated error before/after and frames used. Empty: no correction.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UNKNOWN, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    # Which detection worker samples this camera, until when (database time). Written only by detection.leases:
    # a worker claims cameras whose lease is free or expired and renews its own; at most one samples a camera.
    leased_by = models.CharField(max_length=200, blank=True, default="", editable=False, db_index=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["location__name", "name"]
        constraints = [models.UniqueConstraint(fields=["location", "name"], name="camera_name_unique_per_location")]

    def __str__(self) -> str:
        return f"{self.location.name} / {self.name}"

    @property
    def safe_source(self) -> str:
        return redact_uri(self.source)

    @property
    def count_here(self) -> "CameraCount | None":
        """The camera's newest count at its current location (a camera moved elsewhere has none there yet)."""
        newest = getattr(self, "newest_count", None)
        return newest if newest is not None and newest.location_id == self.location_id else None


class CameraCount(models.Model):
    """The newest count each camera gave its location; the location's count is their sum (locations.aggregation).

    Written only by locations.services. `location` is where the camera was when it counted: a camera moved to another
    location leaves its old count behind rather than carry it along.
    """

    camera = models.OneToOneField(Camera, on_delete=models.CASCADE, primary_key=True, related_name="newest_count")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="+")
    count = models.PositiveIntegerField()
    at = models.DateTimeField(help_text="When the camera counted.")
    quality = models.JSONField(null=True, blank=True, help_text="The counter's judgement of this count, if any.")

    def __str__(self) -> str:
        return f"{self.camera} {self.count} @ {timezone.localtime(self.at):%Y-%m-%d %H:%M:%S}"


class CrowdLog(models.Model):
    """One stored reading. Never edited after it is written."""

    class Source(models.TextChoices):
        CAMERA = "camera", "Camera"
        API = "api", "API"
        MANUAL = "manual", "Manual"

    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="crowd_logs")
    camera = models.ForeignKey(Camera, on_delete=models.SET_NULL, null=True, blank=True, related_name="crowd_logs")
    source = models.CharField(max_length=10, choices=Source.choices)
    count = models.PositiveIntegerField()
    capacity_limit = models.PositiveIntegerField(help_text="Capacity in force when the reading was taken.")
    occupancy_percentage = models.FloatField()
    density_level = models.CharField(max_length=8, choices=DENSITY_CHOICES)
    timestamp = models.DateTimeField(help_text="When the people were counted.")
    recorded_at = models.DateTimeField(auto_now_add=True, help_text="When the reading was stored.")
    # What the counter saw: frame position, frame size and person boxes [x1, y1, x2, y2, conf].
    details = models.JSONField(default=dict, blank=True)
    # Idempotency key chosen by the writer (the detection worker: one per sample). A reading written again with the
    # same key (a retry after a lost connection, a spooled reading flushed twice) is stored once.
    reading_key = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [models.Index(fields=["location", "-timestamp"], name="crowdlog_location_time")]

    def __str__(self) -> str:
        return f"{self.location} {self.count} @ {timezone.localtime(self.timestamp):%Y-%m-%d %H:%M:%S}"

    @property
    def camera_count(self) -> int:
        """What the reading's camera itself counted; `count` is the location's (the sum over its cameras)."""
        return self.details.get("cameras", {}).get(str(self.camera_id), self.count)

    @property
    def camera_parts(self) -> list[dict[str, Any]]:
        """The cameras whose counts `count` adds up, each {"camera_id", "count", "held"}; none for a reading pushed
        without a camera."""
        if "cameras" in self.details:
            held = set(self.details.get("held", []))
            return [
                {"camera_id": int(camera_id), "count": count, "held": int(camera_id) in held}
                for camera_id, count in self.details["cameras"].items()
            ]
        if self.camera_id is None:
            return []
        return [{"camera_id": self.camera_id, "count": self.count, "held": False}]

    @property
    def camera_quality(self) -> dict[str, Any] | None:
        """How far the counter trusted what the camera itself counted; `details["quality"]` is the location's."""
        if "camera_quality" in self.details:
            return self.details["camera_quality"]
        return self.details.get("quality")


class DensitySnapshot(models.Model):
    """Per-location aggregate of the readings in one time bucket, kept current by the write path."""

    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="snapshots")
    bucket_start = models.DateTimeField()
    bucket_seconds = models.PositiveIntegerField()
    readings = models.PositiveIntegerField(default=0)
    min_count = models.PositiveIntegerField()
    avg_count = models.FloatField()
    max_count = models.PositiveIntegerField()
    min_occupancy = models.FloatField()
    avg_occupancy = models.FloatField()
    max_occupancy = models.FloatField()

    class Meta:
        ordering = ["-bucket_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["location", "bucket_seconds", "bucket_start"], name="snapshot_unique_bucket"
            )
        ]
        indexes = [models.Index(fields=["location", "bucket_seconds", "-bucket_start"], name="snapshot_location_time")]

    def __str__(self) -> str:
        return f"{self.location} {timezone.localtime(self.bucket_start):%Y-%m-%d %H:%M} ({self.bucket_seconds}s)"


class CameraFrame(models.Model):
    """The newest frame a camera gave the detection worker, with the person boxes found on it."""

    camera = models.OneToOneField(Camera, on_delete=models.CASCADE, primary_key=True, related_name="latest_frame")
    jpeg = models.BinaryField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    count = models.PositiveIntegerField()
    boxes = models.JSONField(default=list, help_text="Person boxes [x1, y1, x2, y2, conf] in frame pixels.")
    captured_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.camera} @ {timezone.localtime(self.captured_at):%H:%M:%S}"


def validate_heads(value: object) -> None:
    """Heads a person marked on a frame: a list of [x, y] points with 0 <= x, y <= 1."""
    _validate_points(value, "Heads are a list of [x, y] points with coordinates between 0 and 1.")


class CalibrationFrame(models.Model):
    """A camera frame kept for calibration, with the people a person counted on it (Django admin: Calibrate)."""

    camera = models.ForeignKey(Camera, on_delete=models.CASCADE, related_name="calibration_frames")
    jpeg = models.BinaryField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    captured_at = models.DateTimeField()
    heads = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_heads],
        help_text="Heads clicked on the frame: [[x, y], ...] in 0-1 frame coordinates (0,0 top-left).",
    )
    # None until someone labels the frame; may exceed len(heads) when the count was typed rather than clicked.
    count = models.PositiveIntegerField(null=True, blank=True, help_text="People on the frame, counted by a person.")
    labelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["camera", "captured_at", "id"]

    def __str__(self) -> str:
        return f"{self.camera} @ {timezone.localtime(self.captured_at):%Y-%m-%d %H:%M:%S}"
