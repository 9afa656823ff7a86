"""Deleting old rows, so that stored data never fills the disk.

Raw readings (CrowdLog) go after READING_RETENTION_DAYS; the per-minute history behind the charts (DensitySnapshot)
is far smaller (one row a minute per location, where each camera stores a reading every few seconds) and goes after
HISTORY_RETENTION_DAYS. Everything else stays: each location's current state, the cameras' counts and the alerts.
"""

from collections.abc import Callable
from datetime import datetime

from django.db import models, transaction
from django.template.defaultfilters import pluralize

from .models import CrowdLog, DensitySnapshot, Location
from .services import SNAPSHOT_BUCKET_SECONDS


def rows(count: int, noun: str) -> str:
    """'1 reading', '2 readings': for the progress lines of the commands that prune."""
    return f"{count} {noun}{pluralize(count)}"


def readings_before(before: datetime) -> int:
    """How many stored readings were counted before `before`."""
    return CrowdLog.objects.filter(timestamp__lt=before).count()


def history_before(before: datetime) -> int:
    """How many per-minute history rows start before `before`."""
    return _history().filter(bucket_start__lt=before).count()


def prune_readings(
    before: datetime,
    *,
    batch_size: int = 5000,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete the readings counted before `before`, oldest first; returns how many were deleted.

    Deletes `batch_size` rows at a time, each batch in a transaction of its own: the write path locks location rows
    and inserts readings meanwhile, and must never wait behind one huge delete (nor SQLite's writers behind its one
    write lock). `limit` stops after that many rows (the alert worker prunes a backlog a slice at a time, between
    its checks). `progress` is called after every batch with the number deleted so far.
    """
    return _prune(CrowdLog.objects.all(), "timestamp", before, batch_size, limit, progress)


def prune_history(
    before: datetime,
    *,
    batch_size: int = 5000,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete the per-minute history rows that start before `before`, oldest first, as `prune_readings` does."""
    return _prune(_history(), "bucket_start", before, batch_size, limit, progress)


def _history() -> models.QuerySet:
    # The bucket size (the write path writes the one) keeps each batch on the (location, bucket size, start) index.
    return DensitySnapshot.objects.filter(bucket_seconds=SNAPSHOT_BUCKET_SECONDS)


def _prune(
    rows: models.QuerySet,
    time_field: str,
    before: datetime,
    batch_size: int,
    limit: int | None,
    progress: Callable[[int], None] | None,
) -> int:
    if batch_size < 1:
        raise ValueError("batch_size must be 1 or more.")
    deleted = 0
    # Location by location: the (location, time) indexes then find each batch directly, where a filter on the time
    # alone would scan the whole table (or index) for every batch. Oldest first: an interrupted prune leaves each
    # location's rows without gaps.
    for location_id in Location.objects.order_by("pk").values_list("pk", flat=True):
        while True:
            if limit is not None and deleted >= limit:
                return deleted
            size = batch_size if limit is None else min(batch_size, limit - deleted)
            with transaction.atomic():
                batch = list(
                    rows.filter(location_id=location_id, **{f"{time_field}__lt": before})
                    .order_by(time_field)
                    .values_list("pk", flat=True)[:size]
                )
                if not batch:
                    break
                # One DELETE ... WHERE id IN (...): no model refers to these rows, no signal listens to their deletion.
                count, _ = rows.model.objects.filter(pk__in=batch).delete()
            deleted += count
            if progress is not None:
                progress(deleted)
    return deleted
