"""Person detection with adaptive slicing.

A detector resizes the frame to its input size (640 px), so a person 25 px tall in a 1024 px frame is 16 px at
the model and mostly missed, and people half hidden in a crowd score too low to count. Slicing runs the detector
on overlapping tiles, each magnified to the model's input size. Whether to slice is decided per frame from what a
first full-frame pass shows (`crowded_view`):

- people fill the view: at least `crowd_count` people whose boxes cover at least `crowd_cover` of the frame
  (crowds occlude: the detector misses people behind others), or
- people look small to the detector: median person height below `small_px` at the model input.

The grid then follows the frame size (tiles of about `tile_px`, 2..`max_grid` per side). Sparse scenes with
large people get one pass: no extra cost and no tile-edge duplicates. Tile results are merged with the full-frame
pass: boxes cut by an inner tile edge that fit in the overlap are dropped (the neighbouring tile sees them whole),
then class-agnostic NMS on IoU and a fusion of boxes lying almost entirely inside a higher-scoring box of similar
height (intersection over the smaller box) remove cross-tile duplicates. The number of boxes is not capped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..yolo import EMPTY, PersonDetector

# No cap on the people a pass may find (ultralytics' default of 300 would cap a dense crowd).
MAX_DET = 5000


@dataclass(frozen=True)
class SliceConfig:
    imgsz: int = 640  # the detector's input size
    # A view is crowded (look closer) when at least crowd_count people are found and their boxes cover at least
    # crowd_cover of the frame, or when people are small at the model input (below small_px tall).
    crowd_count: int = 6
    crowd_cover: float = 0.05
    small_px: float = 40.0
    # In crowded views people are partly hidden and score lower: boxes count from crowd_conf_factor x conf.
    crowd_conf_factor: float = 0.4
    tile_px: int = 300  # wanted tile size (frame px, before overlap): grid = ceil(long side / tile_px)
    max_grid: int = 3  # at most max_grid x max_grid tiles
    overlap: float = 0.25  # fraction of a tile shared with its neighbour
    iou: float = 0.5  # NMS IoU across tiles
    ios: float = 0.8  # fuse a box that lies this much inside a higher-scoring one of similar height


@dataclass(frozen=True)
class FirstPass:
    """What one full-frame detector pass shows."""

    boxes: np.ndarray  # (N, 5) at the normal confidence
    candidates: np.ndarray  # (M, 5) down to the crowd confidence
    count: int
    cover: float  # fraction of the frame covered by person boxes
    person_px: float  # median person height in frame px (0: nobody)
    person_at_model: float  # the same at the model input


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (N, 5): x1, y1, x2, y2, conf in frame pixels
    grid: int  # 1 = single pass
    first: FirstPass
    tiles: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.boxes)

    @property
    def passes(self) -> int:
        return 1 + (len(self.tiles) if self.grid > 1 else 0)


def crowded_view(first: FirstPass, config: SliceConfig) -> bool:
    """People fill the view (occlusion likely) or look small to the detector. Pure."""
    filled = first.count >= config.crowd_count and first.cover >= config.crowd_cover
    small = first.count >= 1 and first.person_at_model < config.small_px
    return filled or small


def choose_grid(width: int, height: int, config: SliceConfig) -> int:
    """Tiles per side for a frame that needs a closer look: tiles of about tile_px, 2..max_grid per side. Pure."""
    return int(min(config.max_grid, max(2, math.ceil(max(width, height) / config.tile_px))))


def tile_rects(width: int, height: int, grid: int, overlap: float) -> list[tuple[int, int, int, int]]:
    if grid <= 1:
        return [(0, 0, width, height)]
    rects = []
    tile_w = width / (grid - (grid - 1) * overlap)
    tile_h = height / (grid - (grid - 1) * overlap)
    for row in range(grid):
        for col in range(grid):
            x1 = round(col * tile_w * (1 - overlap))
            y1 = round(row * tile_h * (1 - overlap))
            rects.append((x1, y1, min(width, round(x1 + tile_w)), min(height, round(y1 + tile_h))))
    return rects


def _iou_and_ios(box: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ix1 = np.maximum(box[0], others[:, 0])
    iy1 = np.maximum(box[1], others[:, 1])
    ix2 = np.minimum(box[2], others[:, 2])
    iy2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return inter / np.maximum(union, 1e-6), inter / np.maximum(np.minimum(area, areas), 1e-6)


def merge(boxes: np.ndarray, iou: float = 0.5, ios: float = 0.8) -> np.ndarray:
    """Greedy class-agnostic suppression: IoU >= iou, or one box almost inside another of similar height."""
    if len(boxes) == 0:
        return EMPTY.copy()
    order = np.argsort(-boxes[:, 4])
    boxes = boxes[order]
    heights = boxes[:, 3] - boxes[:, 1]
    keep = []
    suppressed = np.zeros(len(boxes), dtype=bool)
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = np.arange(i + 1, len(boxes))
        rest = rest[~suppressed[rest]]
        if len(rest) == 0:
            break
        overlap_iou, overlap_ios = _iou_and_ios(boxes[i], boxes[rest])
        ratio = heights[rest] / max(heights[i], 1e-6)
        similar = (ratio > 0.5) & (ratio < 2.0)
        suppressed[rest[(overlap_iou >= iou) | ((overlap_ios >= ios) & similar)]] = True
    return boxes[keep]


def pool_views(views: Sequence[np.ndarray], floor: float, iou: float = 0.5) -> np.ndarray:
    """One candidate per group of boxes that several views of a frame found (the frame and its mirror image, boxes in
    frame pixels, each down to confidence `floor`): boxes overlapping the strongest remaining box by at least `iou`
    join it; the group keeps that box, with the mean over the views of each view's best confidence in the group (a
    view that found nothing there counts as `floor`). A person one view misses is kept, weaker; a person both views
    find stands out from a fluke of one view. Pure."""
    stacked = [np.asarray(v, dtype=float).reshape(-1, 5) for v in views]
    boxes = np.concatenate(stacked)
    view = np.concatenate([np.full(len(v), i) for i, v in enumerate(stacked)])
    order = np.argsort(-boxes[:, 4], kind="stable")
    boxes, view = boxes[order], view[order]
    free = np.ones(len(boxes), dtype=bool)
    pooled = []
    for i in range(len(boxes)):
        if not free[i]:
            continue
        group = free & (_iou_and_ios(boxes[i], boxes)[0] >= iou)
        group[i] = True
        free &= ~group
        best = [boxes[group & (view == v), 4].max(initial=floor) for v in range(len(stacked))]
        pooled.append([*boxes[i, :4], float(np.mean(best))])
    return np.array(pooled, dtype=float).reshape(-1, 5)


def mirror(boxes: np.ndarray, width: int) -> np.ndarray:
    """Boxes found on a frame's mirror image, in the frame's pixels (and back). Pure."""
    out = np.array(boxes, dtype=float).reshape(-1, 5)
    out[:, [0, 2]] = width - out[:, [2, 0]]
    return out


def _drop_cut(boxes: np.ndarray, rect: tuple[int, int, int, int], frame: tuple[int, int], margin: tuple[float, float]):
    """Drop boxes cut by an inner tile edge that are small enough to be seen whole in the neighbouring tile."""
    if len(boxes) == 0:
        return boxes
    x1, y1, x2, y2 = rect
    width, height = frame
    edge = 2.0
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cut_x = ((boxes[:, 0] <= x1 + edge) & (x1 > 0)) | ((boxes[:, 2] >= x2 - edge) & (x2 < width))
    cut_y = ((boxes[:, 1] <= y1 + edge) & (y1 > 0)) | ((boxes[:, 3] >= y2 - edge) & (y2 < height))
    drop = (cut_x & (w < margin[0])) | (cut_y & (h < margin[1]))
    return boxes[~drop]


def first_pass(detector: PersonDetector, image: np.ndarray, config: SliceConfig) -> FirstPass:
    height, width = image.shape[:2]
    candidates = detector(image, config.imgsz, conf=detector.conf * config.crowd_conf_factor, max_det=MAX_DET)
    boxes = merge(candidates[candidates[:, 4] >= detector.conf], config.iou, config.ios)
    heights = boxes[:, 3] - boxes[:, 1]
    cover = float(((boxes[:, 2] - boxes[:, 0]) * heights).sum() / max(width * height, 1))
    person_px = float(np.median(heights)) if len(boxes) else 0.0
    at_model = person_px * config.imgsz / max(width, height)
    return FirstPass(boxes, candidates, len(boxes), min(cover, 1.0), person_px, at_model)


def sliced_detect(
    detector: PersonDetector,
    image: np.ndarray,
    config: SliceConfig,
    grid: int | None = None,
    first: FirstPass | None = None,
) -> Detections:
    """Full-frame pass, then tiles when the view is crowded (or `grid` > 1 forces them), merged into one box set.

    Sliced frames count boxes down to the crowd confidence (people partly hidden in crowds score lower).
    """
    height, width = image.shape[:2]
    first = first or first_pass(detector, image, config)
    if grid is None:
        grid = choose_grid(width, height, config) if crowded_view(first, config) else 1
    if grid <= 1:
        return Detections(first.boxes, 1, first, [(0, 0, width, height)])
    rects = tile_rects(width, height, grid, config.overlap)
    found = [first.candidates]
    tiles = [np.ascontiguousarray(image[y1:y2, x1:x2]) for x1, y1, x2, y2 in rects]
    # The tiles are inferred side by side where the detector can (OpenVINO streams).
    tile_boxes = detector.detect_many(
        tiles, config.imgsz, conf=detector.conf * config.crowd_conf_factor, max_det=MAX_DET
    )
    for rect, boxes in zip(rects, tile_boxes, strict=True):
        x1, y1, x2, y2 = rect
        if len(boxes):
            boxes[:, [0, 2]] += x1
            boxes[:, [1, 3]] += y1
            margin = ((x2 - x1) * config.overlap, (y2 - y1) * config.overlap)
            found.append(_drop_cut(boxes, rect, (width, height), margin))
    return Detections(merge(np.concatenate(found), config.iou, config.ios), grid, first, rects)
