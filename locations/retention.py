"""Deleting old raw readings, so that stored readings never fill the disk (READING_RETENTION_DAYS).

Only CrowdLog rows go. Everything derived from them stays: the per-minute DensitySnapshots behind the history charts,
each location's current state, the cameras' newest counts and the alerts.
"""

from collections.abc import Callable
from datetime import datetime

from django.db import transaction

from .models import CrowdLog, Location


def readings_before(before: datetime) -> int:
    """How many stored readings were counted before `before`."""
    return CrowdLog.objects.filter(timestamp__lt=before).count()


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
    if batch_size < 1:
        raise ValueError("batch_size must be 1 or more.")
    deleted = 0
    # Location by location: the (location, timestamp) index then finds each batch directly, where a filter on the
    # timestamp alone would scan the whole table (or index) for every batch. Oldest first: an interrupted prune leaves
    # each location's readings without gaps.
    for location_id in Location.objects.order_by("pk").values_list("pk", flat=True):
        while True:
            if limit is not None and deleted >= limit:
                return deleted
            size = batch_size if limit is None else min(batch_size, limit - deleted)
            with transaction.atomic():
                batch = list(
                    CrowdLog.objects.filter(location_id=location_id, timestamp__lt=before)
                    .order_by("timestamp")
                    .values_list("pk", flat=True)[:size]
                )
                if not batch:
                    break
                # One DELETE ... WHERE id IN (...): no model refers to a CrowdLog, no signal listens to its deletion.
                count, _ = CrowdLog.objects.filter(pk__in=batch).delete()
            deleted += count
            if progress is not None:
                progress(deleted)
    return deleted
