from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from .engine import AlertKind, Comparison, Metric, Severity


def _choices(enum: type) -> list[tuple[str, str]]:
    return [(member.value, member.value.replace("_", " ").title()) for member in enum]


class AlertRule(models.Model):
    """An admin-defined (CUSTOM) alert rule for one location."""

    location = models.ForeignKey("locations.Location", on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=120)
    metric = models.CharField(max_length=24, choices=_choices(Metric), default=Metric.COUNT)
    comparison = models.CharField(max_length=4, choices=_choices(Comparison), default=Comparison.GTE)
    threshold = models.FloatField(validators=[MinValueValidator(0)])
    severity = models.CharField(max_length=8, choices=_choices(Severity), default=Severity.WARNING)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["location__name", "name"]

    def __str__(self) -> str:
        return f"{self.location}: {self.name}"


class Alert(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "ACTIVE", "Active"
        ACKNOWLEDGED = "ACKNOWLEDGED", "Acknowledged"
        RESOLVED = "RESOLVED", "Resolved"

    OPEN_STATUSES = (Status.ACTIVE, Status.ACKNOWLEDGED)

    location = models.ForeignKey("locations.Location", on_delete=models.PROTECT, related_name="alerts")
    camera = models.ForeignKey(
        "locations.Camera", on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts"
    )
    rule = models.ForeignKey(AlertRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts")
    kind = models.CharField(max_length=16, choices=_choices(AlertKind))
    # "The same alert" for de-duplication: the kind, plus the rule or camera it is about.
    key = models.CharField(max_length=64, editable=False)
    severity = models.CharField(max_length=8, choices=_choices(Severity))
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    message = models.TextField()
    count = models.PositiveIntegerField(null=True, blank=True, help_text="Count when triggered.")
    occupancy_percentage = models.FloatField(null=True, blank=True, help_text="Occupancy % when triggered.")
    triggered_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-triggered_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["location", "key"],
                condition=~models.Q(status="RESOLVED"),
                name="one_open_alert_per_location_and_key",
            )
        ]
        indexes = [
            models.Index(fields=["status", "-triggered_at"], name="alert_status_time"),
            models.Index(fields=["location", "-triggered_at"], name="alert_location_time"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} at {self.location} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class NotificationChannel(models.Model):
    """Where alerts are sent besides the dashboard: an email address, a webhook URL or a phone number."""

    class Kind(models.TextChoices):
        EMAIL = "EMAIL", "Email"
        WEBHOOK = "WEBHOOK", "Webhook"
        SMS = "SMS", "SMS"

    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    target = models.CharField(max_length=500, help_text="Email address, webhook URL or phone number.")
    enabled = models.BooleanField(default=True)
    min_severity = models.CharField(max_length=8, choices=_choices(Severity), default=Severity.WARNING)
    locations = models.ManyToManyField(
        "locations.Location", blank=True, related_name="+", help_text="Leave empty for every location."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class Notification(models.Model):
    """One alert event to deliver through one channel: an outbox row, written with the alert."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SENT = "SENT", "Sent"
        FAILED = "FAILED", "Failed"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=16, help_text="triggered or escalated")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="notification_due")]

    def __str__(self) -> str:
        return f"{self.event} {self.alert} → {self.channel} ({self.status})"
