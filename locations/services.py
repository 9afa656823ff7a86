"""The one write path for readings.

Every count, from the detection worker, the API or a test, goes through `record_reading`: in one
transaction it stores the CrowdLog, updates the location's current state and its snapshot bucket,
and runs the alert engine; after commit it broadcasts. Nothing else writes counts or sends crowd
updates (a capacity change re-derives the state through `refresh_location`, here too).
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from alerts.engine import Sample
from alerts.services import evaluate_reading

from .density import density_level, occupancy_percentage
from .models import CrowdLog, DensitySnapshot, Location
from .state import broadcast_location

MAX_COUNT = 1_000_000
# Readings may come from devices with slightly fast clocks, but never from the future.
MAX_CLOCK_SKEW = timedelta(seconds=60)
SNAPSHOT_BUCKET_SECONDS = 60


class InvalidReading(ValueError):
    """The reading cannot be stored; the message says why."""


def validate_reading(count: Any, at: datetime | None, now: datetime) -> None:
    if isinstance(count, bool) or not isinstance(count, int):
        raise InvalidReading("count must be a whole number.")
    if count < 0:
        raise InvalidReading("count cannot be negative.")
    if count > MAX_COUNT:
        raise InvalidReading(f"count cannot exceed {MAX_COUNT}.")
    if at is not None:
        if timezone.is_naive(at):
            raise InvalidReading("timestamp must include a time zone.")
        if at > now + MAX_CLOCK_SKEW:
            raise InvalidReading("timestamp is in the future.")


def record_reading(
    location: Location,
    count: int,
    *,
    source: str,
    camera_id: int | None = None,
    at: datetime | None = None,
    details: dict[str, Any] | None = None,
    key: str | None = None,
) -> CrowdLog:
    """Store a reading and everything that follows from it. Raises InvalidReading for bad input.

    A reading older than the location's newest one (a late or back-filled reading) is stored and
    counted in the history, but does not change the current state or raise alerts.

    `key` makes the write idempotent: a reading whose key is already stored is not stored, evaluated or
    broadcast again, and the stored one is returned (the detection worker retries and flushes its spool
    with the key it gave each sample, so a write whose commit was lost on the wire is never doubled).
    """
    now = timezone.now()
    validate_reading(count, at, now)
    if key is not None and not (isinstance(key, str) and 0 < len(key) <= 64):
        raise InvalidReading("key must be a string of 1 to 64 characters.")
    at = at or now
    with transaction.atomic():
        # The row lock serialises concurrent readings of one location, so the newest always wins; it also makes
        # the key check below race-free for writers of the same location.
        location = Location.objects.select_for_update().get(pk=location.pk)
        if key is not None:
            stored = CrowdLog.objects.filter(reading_key=key).first()
            if stored is not None:
                return stored
        occupancy = occupancy_percentage(count, location.capacity_limit)
        level = density_level(occupancy, location.medium_threshold, location.high_threshold)
        log = CrowdLog.objects.create(
            location=location,
            camera_id=camera_id,
            source=source,
            count=count,
            capacity_limit=location.capacity_limit,
            occupancy_percentage=occupancy,
            density_level=level,
            timestamp=at,
            details=details or {},
            reading_key=key,
        )
        _add_to_snapshot(location, count, occupancy, at)
        if location.last_reading_at is None or at >= location.last_reading_at:
            location.current_count = count
            location.occupancy_percentage = occupancy
            location.density_level = level
            location.last_reading_at = at
            location.save(update_fields=["current_count", "occupancy_percentage", "density_level", "last_reading_at"])
            # The alert flag of the broadcast, as the rules just left it (saves a query per reading).
            location.has_open_alert = evaluate_reading(location, Sample(count, at), occupancy, now)
            transaction.on_commit(lambda: broadcast_location(location))
    return log


def refresh_location(location: Location) -> None:
    """Re-derive the current state after a settings change (capacity, thresholds) and broadcast it.

    A capacity cut with the crowd unchanged raises occupancy, and so may raise an alert at once.
    """
    with transaction.atomic():
        location = Location.objects.select_for_update().get(pk=location.pk)
        if location.current_count is not None and location.last_reading_at is not None:
            occupancy = occupancy_percentage(location.current_count, location.capacity_limit)
            location.occupancy_percentage = occupancy
            location.density_level = density_level(occupancy, location.medium_threshold, location.high_threshold)
            location.save(update_fields=["occupancy_percentage", "density_level"])
            now = timezone.now()
            evaluate_reading(location, Sample(location.current_count, location.last_reading_at), occupancy, now)
        transaction.on_commit(lambda: broadcast_location(location))


def _add_to_snapshot(location: Location, count: int, occupancy: float, at: datetime) -> None:
    """Fold the reading into its bucket's aggregate in one statement (an upsert): the write path runs for every
    reading of every camera, and a read-then-write here cost two to four ORM round trips."""
    epoch = int(at.timestamp())
    bucket_start = datetime.fromtimestamp(epoch - epoch % SNAPSHOT_BUCKET_SECONDS, tz=UTC)
    table = connection.ops.quote_name(DensitySnapshot._meta.db_table)
    least, greatest = ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")
    # On conflict every right-hand side sees the row as it was, so the running means use the old reading count.
    sql = f"""
        INSERT INTO {table} (location_id, bucket_seconds, bucket_start, readings,
                             min_count, avg_count, max_count, min_occupancy, avg_occupancy, max_occupancy)
        VALUES (%s, %s, %s, 1, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (location_id, bucket_seconds, bucket_start) DO UPDATE SET
            readings = {table}.readings + 1,
            min_count = {least}({table}.min_count, excluded.min_count),
            max_count = {greatest}({table}.max_count, excluded.max_count),
            avg_count = ({table}.avg_count * {table}.readings + excluded.avg_count) / ({table}.readings + 1),
            min_occupancy = {least}({table}.min_occupancy, excluded.min_occupancy),
            max_occupancy = {greatest}({table}.max_occupancy, excluded.max_occupancy),
            avg_occupancy = ({table}.avg_occupancy * {table}.readings + excluded.avg_occupancy)
                            / ({table}.readings + 1)
    """
    start = connection.ops.adapt_datetimefield_value(bucket_start)  # stored exactly as the ORM stores it
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [location.pk, SNAPSHOT_BUCKET_SECONDS, start, count, float(count), count, occupancy, occupancy, occupancy],
        )
