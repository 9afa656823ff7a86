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


def parse_zone(value: Any) -> Zone | None:
    """Validate a stored zone: None / [] = whole frame, else >= 3 [x, y] points with 0 <= x, y <= 1."""
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
    return points


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
