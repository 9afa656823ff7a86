"""The one write path for readings.

Every count, from the detection worker, the API or a test, goes through `record_readings` (`record_reading` for
one): in one transaction it stores the CrowdLog, updates the location's current state and its snapshot bucket,
and runs the alert engine; after commit it broadcasts. Nothing else writes counts or sends crowd
updates (a capacity change re-derives the state through `refresh_location`, here too).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from alerts.engine import Sample
from alerts.services import LocationAlerts

from .aggregation import CameraPart, combine
from .density import density_level, occupancy_percentage
from .models import Camera, CameraCount, CrowdLog, DensitySnapshot, Location
from .state import broadcast_location

MAX_COUNT = 1_000_000
# Readings may come from devices with slightly fast clocks, but never from the future.
MAX_CLOCK_SKEW = timedelta(seconds=60)
# Back-filled history is welcome; a timestamp before this is a broken clock or a typo (and year 1 cannot even have a
# spike window subtracted from it).
EARLIEST_READING = datetime(2000, 1, 1, tzinfo=UTC)
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
        if at < EARLIEST_READING:
            raise InvalidReading(f"timestamp is before {EARLIEST_READING:%Y-%m-%d}.")


@dataclass(frozen=True)
class NewReading:
    """One count to store (`record_readings`); `at` defaults to now, `key` makes the write idempotent."""

    location_id: int
    count: int
    source: str
    camera_id: int | None = None
    at: datetime | None = None
    details: dict[str, Any] | None = None
    key: str | None = None


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
    """Store one reading and everything that follows from it (see `record_readings`)."""
    return record_readings([NewReading(location.pk, count, source, camera_id, at, details, key)])[0]


def record_readings(readings: Sequence[NewReading]) -> list[CrowdLog]:
    """Store readings and everything that follows from them, in one transaction; returns their CrowdLogs in order.

    The outcome is that of storing them one after the other (the alert rules run for each reading in turn), but a
    location is locked, loaded and broadcast once per call rather than once per reading: the detection
    worker writes what its cameras counted since its last write together.

    Raises InvalidReading (nothing stored) if any reading is invalid, Location.DoesNotExist if a location is gone.

    A reading older than its location's newest one (a late or back-filled reading) is stored and counted in the
    history, but does not change the current state or raise alerts.

    `key` makes a write idempotent: a reading whose key is already stored is not stored, evaluated or broadcast
    again, and the stored one is returned (the detection worker retries and flushes its spool with the key it gave
    each sample, so a write whose commit was lost on the wire is never doubled).
    """
    now = timezone.now()
    for reading in readings:
        validate_reading(reading.count, reading.at, now)
        key = reading.key
        if key is not None and not (isinstance(key, str) and 0 < len(key) <= 64):
            raise InvalidReading("key must be a string of 1 to 64 characters.")
    with transaction.atomic():
        # Row locks, taken in id order so that two writers never wait on each other crosswise, serialise the readings
        # of a location: the newest always wins, and the key check below is race-free for writers of a location.
        ids = sorted({reading.location_id for reading in readings})
        locations = {loc.pk: loc for loc in Location.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        for location_id in ids:
            if location_id not in locations:
                raise Location.DoesNotExist(f"Location {location_id} does not exist.")
        # Only for camera readings: a write of readings pushed over the API costs no query for cameras.
        camera_ids = {reading.camera_id for reading in readings if reading.camera_id is not None}
        parts = _camera_parts(ids) if camera_ids else {}
        # A camera deleted since it counted: its reading is still stored (never lose a reading), without the camera,
        # rather than fail the whole write on the foreign key at commit. Each camera's location and whether it is
        # enabled, as they are now: one deleted, disabled or moved elsewhere is no longer part of the sum.
        cameras = {
            pk: (location_id, enabled)
            for pk, location_id, enabled in Camera.objects.filter(pk__in=camera_ids).values_list(
                "pk", "location_id", "enabled"
            )
        }
        counted: dict[int, CameraCount] = {}  # the cameras' newest counts to store
        camera_news: list[bool] = []  # per fresh log: it is its camera's newest count
        # Per fresh log: when a camera last joined its location's count, as of that reading (the spike rule compares
        # only readings after it; a camera joining later in this call must not hide a surge before it).
        joins: list[datetime | None] = []
        seen_until: dict[int, datetime] = {}  # per location, the newest reading time so far, stored or in this call
        keys = [reading.key for reading in readings if reading.key is not None]
        logs: dict[str, CrowdLog] = {log.reading_key: log for log in CrowdLog.objects.filter(reading_key__in=keys)}
        fresh: list[CrowdLog] = []
        results: list[CrowdLog] = []  # each reading's log, in order
        for reading in readings:
            if reading.key is not None and reading.key in logs:
                results.append(logs[reading.key])  # stored before (or twice in this call)
                continue
            location = locations[reading.location_id]
            # A fast clock's reading is taken as made now: stored ahead of time, it would stay the location's
            # newest and make every reading of the next minute a late one, leaving the live state frozen.
            # In UTC: Python compares and subtracts two times of one zone (the site's, as DRF parses them) by their
            # wall clocks, so across a DST change the spike window ending at 02:30 CET would reach back to 02:29
            # CEST, an hour earlier (a surge that never was), and one ending just after the clocks go forward would
            # start after its end (a surge missed).
            timestamp = min(reading.at, now).astimezone(UTC) if reading.at else now
            camera_id = reading.camera_id if reading.camera_id in cameras else None
            count, details, news = reading.count, reading.details or {}, False
            latest = max(timestamp, seen_until.get(location.pk) or location.last_reading_at or timestamp)
            if reading.camera_id is not None:
                known = parts.setdefault(location.pk, {})
                # Not `camera_id`: a deleted camera's reading is still one camera's part, not the whole location's.
                counts_here = cameras.get(reading.camera_id) == (location.pk, True)
                count, details, news, joined = _add_camera(known, reading, timestamp, location, counted, counts_here)
                if joined:
                    # The count grows because more of the place is seen, not because people came: the spike rule
                    # compares only readings after this one and any the location already has (Location field).
                    location.cameras_changed_at = max(latest, location.cameras_changed_at or latest)
            seen_until[location.pk] = latest
            occupancy = occupancy_percentage(count, location.capacity_limit)
            log = CrowdLog(
                location=location,
                camera_id=camera_id,
                source=reading.source,
                count=count,
                capacity_limit=location.capacity_limit,
                occupancy_percentage=occupancy,
                density_level=density_level(occupancy, location.medium_threshold, location.high_threshold),
                timestamp=timestamp,
                details=details,
                reading_key=reading.key,
            )
            fresh.append(log)
            camera_news.append(news)
            joins.append(location.cameras_changed_at)
            results.append(log)
            if reading.key is not None:
                logs[reading.key] = log
        CrowdLog.objects.bulk_create(fresh)  # sets each log's id
        CameraCount.objects.bulk_create(
            counted.values(),
            update_conflicts=True,
            unique_fields=["camera"],
            update_fields=["location", "count", "at", "quality"],
        )
        _add_to_snapshots(fresh)
        # Per location, the new readings that became its newest in turn (sample, occupancy), with when a camera last
        # joined as of each.
        newest: dict[int, list[tuple[Sample, float, datetime | None]]] = {}
        for log, news, joined_at in zip(fresh, camera_news, joins, strict=True):
            location = locations[log.location_id]
            # A camera's newest count is news about its location even when another camera of it counted a moment
            # later (the worker samples cameras in parallel): the sum it makes is the location's current count.
            if news or location.last_reading_at is None or log.timestamp >= location.last_reading_at:
                location.current_count = log.count
                location.occupancy_percentage = log.occupancy_percentage
                location.density_level = log.density_level
                location.last_reading_at = max(log.timestamp, location.last_reading_at or log.timestamp)
                # Judged as of the location's newest reading: a camera's count taken before it (even long before: a
                # spooled one) is summed with the other cameras' counts as they stand then, so comparing that sum with
                # the location's counts around its own older time would see a surge in the crowd's slow growth.
                sample = Sample(log.count, location.last_reading_at)
                newest.setdefault(location.pk, []).append((sample, log.occupancy_percentage, joined_at))
        for location_id, logs_in_turn in newest.items():
            location = locations[location_id]
            location.save(
                update_fields=[
                    "current_count",
                    "occupancy_percentage",
                    "density_level",
                    "last_reading_at",
                    "cameras_changed_at",
                ]
            )
            alerts = LocationAlerts(location)
            alerts.evaluate(
                [(sample, occupancy) for sample, occupancy, _ in logs_in_turn],
                now,
                [joined_at for _, _, joined_at in logs_in_turn],
            )
            # The alert flag of the broadcast, as the rules just left it (saves a query per location).
            location.has_open_alert = alerts.any_open
            transaction.on_commit(lambda location=location: broadcast_location(location))
    return results


def _camera_parts(location_ids: Sequence[int]) -> dict[int, dict[int, CameraPart]]:
    """Per location, the newest count of each enabled camera still there (call with the locations locked).

    The counts of cameras disabled or moved elsewhere since are deleted: such a camera that counts here again joins
    the sum afresh (`_add_camera`), rather than bring back a count from before it was disabled.
    """
    rows = CameraCount.objects.filter(location_id__in=location_ids).values(
        "camera_id", "location_id", "count", "at", "quality", "camera__enabled", "camera__location_id"
    )
    parts: dict[int, dict[int, CameraPart]] = {}
    gone = []
    for row in rows:
        if not row["camera__enabled"] or row["camera__location_id"] != row["location_id"]:
            gone.append(row["camera_id"])
            continue
        part = CameraPart(row["camera_id"], row["count"], row["at"], row["quality"])
        parts.setdefault(row["location_id"], {})[part.camera_id] = part
    if gone:
        CameraCount.objects.filter(camera_id__in=gone, location_id__in=location_ids).delete()
    return parts


def _add_camera(
    parts: dict[int, CameraPart],
    reading: NewReading,
    at: datetime,
    location: Location,
    counted: dict[int, CameraCount],
    counts_here: bool,
) -> tuple[int, dict[str, Any], bool, bool]:
    """The location's count and the reading's details once a camera's count joins its location's other cameras',
    whether it is the camera's newest count, and whether the camera joins the sum with it (new, moved here or
    enabled again).

    Updates `parts` (and `counted`, the rows to store) unless the camera has counted since `at` (a late reading: it is
    summed with the others as they stand, but does not replace the camera's newer count), or unless it no longer
    `counts_here` (deleted, disabled or moved elsewhere since it counted: its reading, taken while it was part of the
    location, is summed with the others as they stand, but does not bring the camera back into the sum).
    """
    details = reading.details or {}
    part = CameraPart(reading.camera_id, reading.count, at, details.get("quality"))
    previous = parts.get(part.camera_id)
    news = counts_here and (previous is None or at >= previous.at)
    if news:
        parts[part.camera_id] = part
        counted[part.camera_id] = CameraCount(
            camera_id=part.camera_id, location=location, count=part.count, at=at, quality=part.quality
        )
    others = [other for camera_id, other in parts.items() if camera_id != part.camera_id]
    if not others:
        # the location's only camera: its count is the location's
        return reading.count, details, news, counts_here and previous is None
    total = combine([part, *others], at, location.stale_after)
    # Compact (a stadium may have dozens of cameras in one location): each camera's count, and which are held.
    details = {**details, "cameras": total.cameras, "held": total.held, "camera_quality": part.quality}
    if total.quality is None:
        details.pop("quality", None)
    else:
        details["quality"] = total.quality
    return total.count, details, news, counts_here and previous is None


def refresh_location(location: Location) -> None:
    """Re-derive the current state after a settings change (capacity, thresholds) and broadcast it.

    A capacity cut with the crowd unchanged raises occupancy, and so may raise an alert at once (`reassess`).
    """
    with transaction.atomic():
        location = Location.objects.select_for_update().get(pk=location.pk)
        if location.current_count is not None and location.last_reading_at is not None:
            occupancy = occupancy_percentage(location.current_count, location.capacity_limit)
            location.occupancy_percentage = occupancy
            location.density_level = density_level(occupancy, location.medium_threshold, location.high_threshold)
            location.save(update_fields=["occupancy_percentage", "density_level"])
            current = Sample(location.current_count, location.last_reading_at)
            LocationAlerts(location).reassess(current, occupancy, timezone.now())
        transaction.on_commit(lambda: broadcast_location(location))


def _add_to_snapshots(logs: Sequence[CrowdLog]) -> None:
    """Fold new readings into their per-location, per-minute aggregates: one statement (an upsert) per bucket.

    The write path runs for every reading of every camera; a read-then-write per reading cost two to four ORM
    round trips.
    """
    buckets: dict[tuple[int, datetime], list[CrowdLog]] = {}
    for log in logs:
        epoch = int(log.timestamp.timestamp())
        start = datetime.fromtimestamp(epoch - epoch % SNAPSHOT_BUCKET_SECONDS, tz=UTC)
        buckets.setdefault((log.location_id, start), []).append(log)
    table = connection.ops.quote_name(DensitySnapshot._meta.db_table)
    least, greatest = ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")
    # On conflict every right-hand side sees the row as it was: the means are weighted by the old and new numbers
    # of readings (excluded.avg_* holds the new readings' mean).
    sql = f"""
        INSERT INTO {table} (location_id, bucket_seconds, bucket_start, readings,
                             min_count, avg_count, max_count, min_occupancy, avg_occupancy, max_occupancy)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (location_id, bucket_seconds, bucket_start) DO UPDATE SET
            readings = {table}.readings + excluded.readings,
            min_count = {least}({table}.min_count, excluded.min_count),
            max_count = {greatest}({table}.max_count, excluded.max_count),
            avg_count = ({table}.avg_count * {table}.readings + excluded.avg_count * excluded.readings)
                        / ({table}.readings + excluded.readings),
            min_occupancy = {least}({table}.min_occupancy, excluded.min_occupancy),
            max_occupancy = {greatest}({table}.max_occupancy, excluded.max_occupancy),
            avg_occupancy = ({table}.avg_occupancy * {table}.readings + excluded.avg_occupancy * excluded.readings)
                            / ({table}.readings + excluded.readings)
    """
    with connection.cursor() as cursor:
        for (location_id, start), group in buckets.items():
            counts = [log.count for log in group]
            occupancies = [log.occupancy_percentage for log in group]
            cursor.execute(
                sql,
                [
                    location_id,
                    SNAPSHOT_BUCKET_SECONDS,
                    connection.ops.adapt_datetimefield_value(start),  # stored exactly as the ORM stores it
                    len(group),
                    min(counts),
                    sum(counts) / len(counts),
                    max(counts),
                    min(occupancies),
                    sum(occupancies) / len(occupancies),
                    max(occupancies),
                ],
            )
