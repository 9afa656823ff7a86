"""A location's live state as clients see it, and the one function that broadcasts it."""

from datetime import UTC, datetime
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from alerts.models import Alert
from crowd_monitor.realtime import publish

from .density import FeedStatus, feed_status
from .models import Location


def isoformat(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a `Z`, the form used in every payload."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def with_alert_flag(queryset: QuerySet[Location]) -> QuerySet[Location]:
    """Annotate `has_open_alert` so listing many locations costs one query."""
    open_alerts = Alert.objects.filter(location=OuterRef("pk"), status__in=Alert.OPEN_STATUSES)
    return queryset.annotate(has_open_alert=Exists(open_alerts))


def has_open_alert(location: Location) -> bool:
    annotated = getattr(location, "has_open_alert", None)
    if annotated is not None:
        return annotated
    return location.alerts.filter(status__in=Alert.OPEN_STATUSES).exists()


def status_of(location: Location, now: datetime | None = None) -> FeedStatus:
    return feed_status(location.last_reading_at, now or timezone.now(), location.stale_after)


def crowd_update(location: Location, now: datetime | None = None) -> dict[str, Any]:
    """The crowd_update payload of the design's real-time contract.

    Without fresh data `density_level` is None: the product never calls a place LOW when it
    simply cannot see it. The last known count stays, with its timestamp.
    """
    live = status_of(location, now) == FeedStatus.LIVE
    return {
        "type": "crowd_update",
        "location_id": location.pk,
        "current_count": location.current_count,
        "capacity_limit": location.capacity_limit,
        "occupancy_percentage": location.occupancy_percentage,
        "density_level": (location.density_level or None) if live else None,
        "alert": has_open_alert(location),
        "timestamp": isoformat(location.last_reading_at),
    }


def broadcast_location(location: Location) -> None:
    """Push the location's current state to live clients (call after the change is committed)."""
    publish(location.pk, crowd_update(location))
