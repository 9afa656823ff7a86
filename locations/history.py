"""Occupancy history for charts, from the per-minute snapshots the write path keeps."""

from dataclasses import dataclass
from datetime import datetime, timedelta
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
    chosen = RANGES[range_name]
    now = now or timezone.now()
    snapshots = DensitySnapshot.objects.filter(
        location=location, bucket_start__gte=now - chosen.span, bucket_start__lte=now
    ).order_by("bucket_start")
    buckets: dict[int, list[DensitySnapshot]] = {}
    for snapshot in snapshots:
        epoch = int(snapshot.bucket_start.timestamp())
        buckets.setdefault(epoch - epoch % chosen.bucket_seconds, []).append(snapshot)
    points = []
    for start, group in sorted(buckets.items()):
        readings = sum(s.readings for s in group)
        points.append(
            {
                "t": isoformat(datetime.fromtimestamp(start, tz=now.tzinfo)),
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
