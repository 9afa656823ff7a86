"""Counting zones: a polygon in normalised 0-1 frame coordinates; only people standing inside it count.

A detected person stands at the foot point of the box (bottom centre); a density map counts the mass whose
pixel centre lies inside the polygon. An empty zone means the whole frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

Zone = list[list[float]]


class ZoneError(ValueError):
    pass


# The least share of the frame a zone may enclose: 1/10,000, e.g. 1 % of the width by 1 % of the height, less than
# anyone in view covers. A smaller polygon is in effect a line or a point (collinear or repeated points): nobody
# would ever stand in it, and the camera would report an empty place whatever it sees.
MIN_ZONE_AREA = 1e-4


def parse_zone(value: Any) -> Zone | None:
    """Validate a stored zone: None / [] = whole frame, else >= 3 [x, y] points with 0 <= x, y <= 1 around an area
    (MIN_ZONE_AREA or more) whose edges do not cross."""
    if value in (None, "", [], {}):
        return None
    if isinstance(value, dict):
        value = value.get("polygon") or value.get("points")
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) < 3:
        raise ZoneError("A zone is a list of at least three [x, y] points in 0-1 frame coordinates.")
    points = []
    for point in value:
        if not isinstance(point, Sequence) or isinstance(point, str) or len(point) != 2:
            raise ZoneError(f"Zone point {point!r} is not an [x, y] pair.")
        x, y = (float(v) for v in point)
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise ZoneError(f"Zone point {point!r} is outside 0-1: zones use coordinates relative to the frame.")
        points.append([x, y])
    _check_outline(points)
    return points


def _check_outline(zone: Zone) -> None:
    """A zone must enclose an area, with edges that do not cross (else the points are out of order)."""
    if _edges_cross(zone):
        raise ZoneError(
            "The zone's edges cross each other: list its corners in order around the area (clockwise or anticlockwise)."
        )
    if polygon_area(zone) < MIN_ZONE_AREA:
        raise ZoneError(
            "The zone encloses next to no area: its points lie on one line or repeat, so nobody would ever count. "
            "Give at least three corners around the area to count, or leave the zone empty for the whole frame."
        )


def polygon_area(zone: Zone) -> float:
    """The share of the frame the polygon encloses (shoelace formula). Pure."""
    x, y = np.asarray(zone, dtype=float).T
    return float(abs(x @ np.roll(y, -1) - y @ np.roll(x, -1)) / 2)


def _edges_cross(zone: Zone) -> bool:
    """Whether two edges of the closed polygon cross at a point inside both. Edges that only touch at a corner
    (neighbours always do) or lie on one line do not count: the area rule deals with those."""
    start = np.asarray(zone, dtype=float)
    end = np.roll(start, -1, axis=0)  # edge i runs from start[i] to end[i]
    direction = (end - start)[:, None, :]

    def side(points: np.ndarray) -> np.ndarray:
        # [i, j]: the sign of where points[j] lies relative to the line of edge i (0: on it)
        offset = points[None, :, :] - start[:, None, :]
        return np.sign(direction[..., 0] * offset[..., 1] - direction[..., 1] * offset[..., 0])

    straddles = side(start) * side(end) < 0  # [i, j]: edge j's ends lie on opposite sides of edge i's line
    return bool((straddles & straddles.T).any())


def _contour(zone: Zone, width: float, height: float) -> np.ndarray:
    return np.array([[x * width, y * height] for x, y in zone], dtype=np.float32).reshape(-1, 1, 2)


def boxes_inside(boxes: np.ndarray, zone: Zone | None, width: int, height: int) -> np.ndarray:
    """Boolean mask of the boxes (x1, y1, x2, y2, ...) whose foot point lies in the zone (edge included)."""
    if zone is None or len(boxes) == 0:
        return np.ones(len(boxes), dtype=bool)
    contour = _contour(zone, width, height)
    feet = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in feet], dtype=bool)


def map_mask(zone: Zone | None, shape: tuple[int, int]) -> np.ndarray | None:
    """Boolean mask, in a density map's own grid (h, w), of the cells whose centre lies in the zone."""
    if zone is None:
        return None
    h, w = shape
    xs = (np.arange(w) + 0.5) / w
    ys = (np.arange(h) + 0.5) / h
    return points_in_polygon(xs[None, :], ys[:, None], zone)


def points_in_polygon(x: np.ndarray, y: np.ndarray, polygon: Zone) -> np.ndarray:
    """Even-odd ray casting, vectorised over broadcastable coordinate arrays."""
    inside = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y)), dtype=bool)
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        if y1 == y2:
            continue
        crosses = (y1 > y) != (y2 > y)
        x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside
