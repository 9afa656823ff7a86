"""A location's count from its cameras: pure functions over plain data, no database.

Each camera of a location watches its own part of it (counting zones keep overlapping views apart), so the
location's count is the sum of each enabled camera's newest count. A camera that stopped counting keeps its last
count in the sum, marked as held: the product never lowers a location's figure because it lost sight of part of it
(the camera's CAMERA_OFFLINE alert says so, and disabling the camera takes it out of the sum).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class CameraPart:
    """One camera's newest count, and how far the counter trusted it (its reading's `quality`, if any)."""

    camera_id: int
    count: int
    at: datetime
    quality: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class LocationCount:
    count: int
    # How far the sum can be trusted, in a reading's `quality` form; None when no camera's counter judged it.
    quality: dict[str, Any] | None
    cameras: dict[str, int]  # each camera's part: its count by camera id (a string: these go into JSON)
    held: list[int]  # the cameras whose count is held


def combine(parts: Sequence[CameraPart], at: datetime, stale_after: timedelta) -> LocationCount:
    """The location's count at `at` from its cameras' newest counts.

    A part older than `stale_after` is held: its count stays in the sum, but the interval no longer vouches for it
    (its people may have left, or doubled), so it adds nothing to `low` and leaves no upper bound. A saturated or
    dense part makes the sum so; parts counted in different modes make a blend.
    """
    held = [at - part.at > stale_after for part in parts]
    judged = [part.quality for part in parts if part.quality]
    quality = None
    if judged:
        low, high = 0.0, 0.0
        for part, is_held in zip(parts, held, strict=True):
            part_low, part_high = _interval(part)
            low += 0.0 if is_held else part_low
            high = None if high is None or is_held or part_high is None else high + part_high
        modes = {q.get("mode_used") for q in judged}
        notes = [f"sum of {len(parts)} cameras"]
        notes += [
            f"camera {part.camera_id}: count held since {part.at.isoformat()}"
            for part, is_held in zip(parts, held, strict=True)
            if is_held
        ]
        quality = {
            "mode_used": modes.pop() if len(modes) == 1 else "blend",
            "low": round(low, 1),
            "high": None if high is None else round(high, 1),
            "dense": any(q.get("dense", False) for q in judged),
            "saturated": any(q.get("saturated", False) for q in judged),
            "estimates": {},
            "notes": notes,
        }
    return LocationCount(
        count=sum(part.count for part in parts),
        quality=quality,
        cameras={str(part.camera_id): part.count for part in parts},
        held=[part.camera_id for part, is_held in zip(parts, held, strict=True) if is_held],
    )


def _interval(part: CameraPart) -> tuple[float, float | None]:
    """A part's plausible (lowest, highest) true count; a count without a judgement is taken as exact."""
    if not part.quality:
        return float(part.count), float(part.count)
    low, high = part.quality.get("low"), part.quality.get("high")
    return (float(part.count) if low is None else float(low)), (None if high is None else float(high))
