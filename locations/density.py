"""Occupancy and density levels: pure functions over plain numbers, no database."""

from datetime import datetime, timedelta
from enum import StrEnum


class DensityLevel(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class FeedStatus(StrEnum):
    """Whether a location's current figures can be trusted right now."""

    LIVE = "LIVE"
    STALE = "STALE"  # had readings, but none within the stale limit
    NO_DATA = "NO_DATA"  # never had a reading


DEFAULT_MEDIUM_THRESHOLD = 30.0
DEFAULT_HIGH_THRESHOLD = 70.0


def occupancy_percentage(count: int, capacity_limit: int) -> float:
    """`count / capacity_limit * 100`, rounded to one decimal. Capacity must be positive."""
    if capacity_limit <= 0:
        raise ValueError("capacity_limit must be a positive integer")
    if count < 0:
        raise ValueError("count cannot be negative")
    return round(count / capacity_limit * 100, 1)


def density_level(
    occupancy: float,
    medium_threshold: float = DEFAULT_MEDIUM_THRESHOLD,
    high_threshold: float = DEFAULT_HIGH_THRESHOLD,
) -> DensityLevel:
    """LOW below `medium_threshold`, MEDIUM up to below `high_threshold`, HIGH from there on.

    Takes the rounded occupancy that users see, so a displayed 30.0 % is never called LOW.
    Over 100 % stays HIGH (callers flag over-capacity separately).
    """
    if occupancy >= high_threshold:
        return DensityLevel.HIGH
    if occupancy >= medium_threshold:
        return DensityLevel.MEDIUM
    return DensityLevel.LOW


def feed_status(last_reading_at: datetime | None, now: datetime, stale_after: timedelta) -> FeedStatus:
    if last_reading_at is None:
        return FeedStatus.NO_DATA
    if now - last_reading_at > stale_after:
        return FeedStatus.STALE
    return FeedStatus.LIVE
