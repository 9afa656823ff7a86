"""The density engine: occupancy, levels and feed status as pure functions (no database)."""

from datetime import UTC, datetime, timedelta

import pytest

from locations.density import DensityLevel, FeedStatus, density_level, feed_status, occupancy_percentage
from locations.models import Location

# --- occupancy -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "capacity", "expected"),
    [
        (145, 200, 72.5),  # the design's example payload
        (0, 200, 0.0),
        (200, 200, 100.0),
        (300, 200, 150.0),  # over capacity is not clipped
        (1, 3, 33.3),  # 33.333... rounds down
        (2, 3, 66.7),  # 66.666... rounds up
        (1, 7, 14.3),  # 14.2857...
        (29996, 100000, 30.0),  # 29.996 rounds to one decimal
        (29940, 100000, 29.9),
        (1, 1, 100.0),
    ],
)
def test_occupancy_is_count_over_capacity_rounded_to_one_decimal(count: int, capacity: int, expected: float) -> None:
    assert occupancy_percentage(count, capacity) == expected


@pytest.mark.parametrize("capacity", [0, -1, -200])
def test_capacity_must_be_positive(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        occupancy_percentage(10, capacity)


def test_negative_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        occupancy_percentage(-1, 100)


# --- density levels ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("occupancy", "expected"),
    [
        (0.0, DensityLevel.LOW),
        (29.9, DensityLevel.LOW),
        (30.0, DensityLevel.MEDIUM),
        (50.0, DensityLevel.MEDIUM),
        (69.9, DensityLevel.MEDIUM),
        (70.0, DensityLevel.HIGH),
        (72.5, DensityLevel.HIGH),  # the seed's example payload
        (80.0, DensityLevel.HIGH),
        (100.0, DensityLevel.HIGH),
        (150.0, DensityLevel.HIGH),  # over capacity stays HIGH
    ],
)
def test_default_level_edges(occupancy: float, expected: DensityLevel) -> None:
    assert density_level(occupancy) == expected


def test_rounded_occupancy_drives_the_level() -> None:
    """29.996 % is shown as 30.0 %, so it must not be called LOW."""
    assert density_level(occupancy_percentage(29996, 100000)) == DensityLevel.MEDIUM
    assert density_level(occupancy_percentage(145, 200)) == DensityLevel.HIGH


@pytest.mark.parametrize(
    ("occupancy", "expected"),
    [
        (9.9, DensityLevel.LOW),
        (10.0, DensityLevel.MEDIUM),
        (49.9, DensityLevel.MEDIUM),
        (50.0, DensityLevel.HIGH),
        # Values that would differ under the defaults:
        (29.9, DensityLevel.MEDIUM),
        (69.9, DensityLevel.HIGH),
    ],
)
def test_custom_thresholds(occupancy: float, expected: DensityLevel) -> None:
    assert density_level(occupancy, medium_threshold=10, high_threshold=50) == expected


def test_custom_thresholds_can_be_stricter_than_the_defaults() -> None:
    assert density_level(75.0, medium_threshold=40, high_threshold=90) == DensityLevel.MEDIUM
    assert density_level(35.0, medium_threshold=40, high_threshold=90) == DensityLevel.LOW
    assert density_level(90.0, medium_threshold=40, high_threshold=90) == DensityLevel.HIGH


# --- feed status ---------------------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=5)
STALE_AFTER = 3 * INTERVAL


def test_no_reading_ever_is_no_data() -> None:
    assert feed_status(None, NOW, STALE_AFTER) == FeedStatus.NO_DATA


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(0), FeedStatus.LIVE),
        (INTERVAL, FeedStatus.LIVE),
        (STALE_AFTER - timedelta(microseconds=1), FeedStatus.LIVE),
        (STALE_AFTER, FeedStatus.LIVE),  # exactly three intervals is still live
        (STALE_AFTER + timedelta(microseconds=1), FeedStatus.STALE),
        (STALE_AFTER + timedelta(seconds=1), FeedStatus.STALE),
        (timedelta(hours=5), FeedStatus.STALE),
    ],
)
def test_feed_status_boundary(age: timedelta, expected: FeedStatus) -> None:
    assert feed_status(NOW - age, NOW, STALE_AFTER) == expected


def test_location_stale_limit_is_three_expected_intervals() -> None:
    location = Location(name="Gate", capacity_limit=100, expected_interval_seconds=5)  # unsaved, no database
    assert location.stale_after == timedelta(seconds=15)
    assert feed_status(NOW - timedelta(seconds=15), NOW, location.stale_after) == FeedStatus.LIVE
    assert feed_status(NOW - timedelta(seconds=16), NOW, location.stale_after) == FeedStatus.STALE
    location.expected_interval_seconds = 60
    assert location.stale_after == timedelta(minutes=3)
    assert feed_status(NOW - timedelta(seconds=16), NOW, location.stale_after) == FeedStatus.LIVE
