"""Occupancy history for charts, from the per-minute snapshots the write path keeps."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from .models import DensitySnapshot, Location
from .state import isoformat


@dataclass(frozen=True)
class Range:
    span: timedelta
    bucket_seconds: int


# Bucket sizes keep every chart at a few hundred points at most.
RANGES = {
    "hour": Range(timedelta(hours=1), 60),
    "day": Range(timedelta(days=1), 600),
    "week": Range(timedelta(days=7), 3600),
}


def history(location: Location, range_name: str, now: datetime | None = None) -> dict[str, Any]:
    """The location's per-minute snapshots of the range, in buckets that start on the site's wall clock (TIME_ZONE):
    a week's hours start at 15:00 and 16:00 in India too, not at 15:30 (UTC's hours there), and a day with a DST
    change has 23 or 25 hourly buckets, each an hour long (both 02:00 of the night the clocks go back)."""
    chosen = RANGES[range_name]
    now = now or timezone.now()
    zone = timezone.get_current_timezone()
    snapshots = DensitySnapshot.objects.filter(
        location=location, bucket_start__gte=now - chosen.span, bucket_start__lte=now
    ).order_by("bucket_start")
    buckets: dict[int, list[DensitySnapshot]] = {}
    for snapshot in snapshots:
        # The bucket's start on the wall clock, at the UTC offset in force at the snapshot.
        offset = int(snapshot.bucket_start.astimezone(zone).utcoffset().total_seconds())
        wall = int(snapshot.bucket_start.timestamp()) + offset
        buckets.setdefault(wall - wall % chosen.bucket_seconds - offset, []).append(snapshot)
    points = []
    for start, group in sorted(buckets.items()):
        readings = sum(s.readings for s in group)
        points.append(
            {
                "t": isoformat(datetime.fromtimestamp(start, tz=UTC)),
                "readings": readings,
                "min_count": min(s.min_count for s in group),
                "avg_count": round(sum(s.avg_count * s.readings for s in group) / readings, 1),
                "max_count": max(s.max_count for s in group),
                "avg_occupancy": round(sum(s.avg_occupancy * s.readings for s in group) / readings, 1),
                "max_occupancy": max(s.max_occupancy for s in group),
            }
        )
    return {
        "location_id": location.pk,
        "range": range_name,
        "bucket_seconds": chosen.bucket_seconds,
        "points": points,
    }
