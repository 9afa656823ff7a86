"""Per-camera calibration: a monotone map from the counter's raw estimate to the true count.

Fitted from a handful of frames with human counts (manage.py calibrate_camera), chosen by cross-validation among

- `identity`  : no correction (kept when nothing beats it on held-back frames);
- `scale`     : y = a * x (one parameter: a camera's systematic under/over-count);
- `linear`    : y = a * x + b (a >= 0);
- `isotonic`  : a non-decreasing step map (pool-adjacent-violators), extended beyond the fitted range by the
                ratio at its ends so that a crowd larger than any calibration frame still counts higher;
- `boxes`     : when the heads were clicked, not only counted: a per-camera model of which of the detector's
                boxes, down to a confidence of 0.01 in the frame and its mirror image, are people (`BoxModels`).
                The count is the sum of the boxes' probabilities plus the people no box finds. A map can only remove a
                camera's systematic error; the box model also learns which weak boxes are a person found twice, and
                where in this camera's view a weak box is a half-hidden person rather than a thing: errors that vary
                from frame to frame.

Stored on the camera as JSON (see `Calibration.to_json`) and applied by the worker to every reading of that camera
(count and interval bounds). Pure functions, no Django.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

import numpy as np

from .modes import ENGINE_MODES
from .slicing import pool_views

KINDS = ("identity", "scale", "linear", "isotonic", "boxes")
# A box model judges the detector's boxes down to this confidence: below it, boxes are almost never people.
BOX_FLOOR = 0.01
HEAD_AT = 0.12  # a person box's head point: top centre, this share of the box height down
FEATURES = 6  # columns of box_features
MIRRORED = True  # box models are fitted on, and judge, the frame's boxes pooled with its mirror image's
# Which boxes of the two views are one person is itself a guess: a box model fits one model on the views pooled at each
# of these overlaps and counts with their mean, which averages out part of the error each pooling's choices add.
# On Mall (fit on 10 frames) it lowered the held-back error on 96 of 100 random fits, by 0.10 on average.
POOL_IOUS = (0.3, 0.5)


@dataclass(frozen=True)
class BoxModel:
    """P(a box is a person) by logistic regression on `box_features`, and the people no box finds."""

    weights: tuple[float, ...]  # on the standardised features, then the intercept
    center: tuple[float, ...]
    scale: tuple[float, ...]
    missed: float  # mean people per frame that no box down to `floor` matched
    floor: float = BOX_FLOOR
    # The boxes are pooled from the frame and its mirror image (slicing.pool_views). Models stored before mirroring was
    # added lack the key and keep judging the frame's boxes alone, as they were fitted.
    mirrored: bool = False
    pool_iou: float = 0.5  # the overlap the views were pooled at (models stored before POOL_IOUS: 0.5)

    def candidates(self, views: Sequence[np.ndarray]) -> np.ndarray:
        """The boxes this model judges: the frame's views pooled as it was fitted (or the frame's own boxes)."""
        return pooled(views if self.mirrored else views[:1], self.floor, self.pool_iou)

    def probabilities(self, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """P(person) of each of `boxes` (its `candidates`)."""
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 5)
        if len(boxes) == 0:
            return np.zeros(0)
        x = (box_features(boxes, width, height) - np.asarray(self.center)) / np.asarray(self.scale)
        z = x @ np.asarray(self.weights[:-1]) + self.weights[-1]
        return 1 / (1 + np.exp(-np.clip(z, -30, 30)))

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": [round(v, 6) for v in self.weights],
            "center": [round(v, 6) for v in self.center],
            "scale": [round(v, 6) for v in self.scale],
            "missed": round(self.missed, 4),
            "floor": self.floor,
            "mirrored": self.mirrored,
            "pool_iou": self.pool_iou,
        }

    @classmethod
    def from_json(cls, data: Any) -> BoxModel | None:
        try:
            model = cls(
                tuple(float(v) for v in data["weights"]),
                tuple(float(v) for v in data["center"]),
                tuple(float(v) for v in data["scale"]),
                float(data["missed"]),
                float(data.get("floor", BOX_FLOOR)),
                bool(data.get("mirrored", False)),
                float(data.get("pool_iou", 0.5)),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if len(model.center) != FEATURES or len(model.scale) != FEATURES or len(model.weights) != FEATURES + 1:
            return None
        return model


@dataclass(frozen=True)
class BoxModels:
    """A camera's box models, one per pooling overlap (`POOL_IOUS`); the count is the mean of theirs."""

    members: tuple[BoxModel, ...]

    @property
    def floor(self) -> float:
        return min(m.floor for m in self.members)

    @property
    def mirrored(self) -> bool:
        return any(m.mirrored for m in self.members)

    @property
    def missed(self) -> float:
        return float(np.mean([m.missed for m in self.members]))

    def weigh(self, views: Sequence[np.ndarray], width: int, height: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each member's candidate boxes and the probability it gives each of them."""
        judged = []
        for member in self.members:
            boxes = member.candidates(views)
            judged.append((boxes, member.probabilities(boxes, width, height)))
        return judged

    def total(self, judged: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
        """The count from `weigh`'s answer: the members' mean sum of probabilities, plus the people no box finds."""
        return float(np.mean([probability.sum() for _, probability in judged])) + self.missed

    def count(self, views: Sequence[np.ndarray], width: int, height: int) -> float:
        return self.total(self.weigh(views, width, height))

    def to_json(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in self.members]

    @classmethod
    def from_json(cls, data: Any) -> BoxModels | None:
        # One object: a model stored before the members were (pooled at 0.5, or the frame's own boxes).
        members = [BoxModel.from_json(d) for d in (data if isinstance(data, list) else [data])]
        if not members or any(m is None for m in members):
            return None
        return cls(tuple(members))


def pooled(views: Sequence[np.ndarray], floor: float = BOX_FLOOR, iou: float = 0.5) -> np.ndarray:
    """The views' boxes down to `floor` as one set: pooled at overlap `iou` (`pool_views`), or the one view's. Pure."""
    boxes = pool_views(views, floor, iou) if len(views) > 1 else np.asarray(views[0], dtype=float).reshape(-1, 5)
    return boxes[boxes[:, 4] >= floor]


class CalibrationError(ValueError):
    """A stored calibration the counter cannot apply; the message says why, for the person who typed it."""


EXAMPLE = '{"kind": "scale", "a": 1.2}'


@dataclass(frozen=True)
class Calibration:
    kind: str = "identity"
    mode: str = ""  # the counting mode the map was fitted for ("" = any)
    a: float = 1.0
    b: float = 0.0
    xs: tuple[float, ...] = ()
    ys: tuple[float, ...] = ()
    boxes: BoxModels | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def apply(self, value: float) -> float:
        """The map applied to a raw estimate (a box model needs the boxes: the counting engine applies it)."""
        value = max(0.0, float(value))
        if self.kind in ("scale", "linear"):
            return max(0.0, self.a * value + self.b)
        if self.kind == "isotonic" and self.xs:
            xs, ys = np.asarray(self.xs), np.asarray(self.ys)
            if value <= xs[0]:
                return value * (ys[0] / xs[0]) if xs[0] > 0 else float(ys[0])
            if value >= xs[-1]:
                return value * (ys[-1] / xs[-1]) if xs[-1] > 0 else float(ys[-1])
            return float(np.interp(value, xs, ys))
        return value

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "mode": self.mode}
        if self.kind in ("scale", "linear"):
            data.update(a=round(self.a, 6), b=round(self.b, 6))
        if self.kind == "isotonic":
            data.update(x=[round(v, 4) for v in self.xs], y=[round(v, 4) for v in self.ys])
        if self.kind == "boxes" and self.boxes is not None:
            data.update(boxes=self.boxes.to_json())
        data.update(self.report)
        return data

    @classmethod
    def parse(cls, data: Any) -> Calibration | None:
        """The stored calibration (see `to_json`), None when there is none; CalibrationError, saying why in words,
        when the counter cannot apply it. The one rule for what a camera may store: the admin form refuses what this
        refuses, and the worker counts uncalibrated when a stored value fails it (`from_json`)."""
        if not data:
            return None
        if not isinstance(data, dict):
            raise CalibrationError(f"A calibration is a JSON object, e.g. {EXAMPLE}, or {{}} for none.")
        kind = data.get("kind", "identity")
        if kind not in KINDS:
            raise CalibrationError(f"Unknown calibration kind {kind!r}: use one of {', '.join(KINDS)}.")
        mode = data.get("mode", "")
        if mode not in ("", *ENGINE_MODES):
            # A typo would never match the mode in use, so the map would silently never apply.
            raise CalibrationError(f"Unknown counting mode {mode!r}: use one of {', '.join(ENGINE_MODES)}, or none.")
        calibration = cls(kind=kind, mode=mode)
        if kind in ("scale", "linear"):
            return replace(calibration, a=_slope(data.get("a", 1.0)), b=_number(data.get("b", 0.0), "b"))
        if kind == "isotonic":
            xs, ys = _knots(data.get("x"), data.get("y"))
            return replace(calibration, xs=xs, ys=ys)
        if kind == "boxes":
            boxes = BoxModels.from_json(data.get("boxes"))
            if boxes is None:
                raise CalibrationError("The box model (boxes) is damaged: clear the calibration and fit it again.")
            return replace(calibration, boxes=boxes)
        return calibration

    @classmethod
    def from_json(cls, data: Any) -> Calibration | None:
        """As `parse`, but None for a value the counter cannot apply (stored by SQL or an older version): that camera
        counts uncalibrated rather than stopping the worker, which samples every camera."""
        try:
            return cls.parse(data)
        except CalibrationError:
            return None


def _number(value: Any, name: str) -> float:
    # JSON numbers only: true/false are ints to Python, and NaN or Infinity would turn every count into 0 or a crash.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CalibrationError(f"Calibration field {name!r} must be a number, not {value!r}.")
    return float(value)


def _slope(value: Any) -> float:
    a = _number(value, "a")
    if a <= 0:  # 0 would report an empty place whatever the camera sees; below 0, fewer people as more arrive
        raise CalibrationError(f"Calibration field 'a' must be above 0 (count = a * raw + b), not {value!r}.")
    return a


def _knots(x: Any, y: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """An isotonic map's knots: equally long, non-empty lists of non-decreasing numbers >= 0 (np.interp needs x
    sorted; a count is never negative and never falls as the raw estimate rises)."""
    message = (
        "An isotonic calibration needs 'x' and 'y': two lists of the same length, at least one number each, "
        "every number 0 or more and none below the one before it."
    )
    if not isinstance(x, list) or not isinstance(y, list) or not x or len(x) != len(y):
        raise CalibrationError(message)
    xs, ys = tuple(_number(v, "x") for v in x), tuple(_number(v, "y") for v in y)
    for values in (xs, ys):
        if values[0] < 0 or any(later < earlier for earlier, later in pairwise(values)):
            raise CalibrationError(message)
    return xs, ys


def _pav(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic (non-decreasing) regression of y on x by pool-adjacent-violators; returns knots (x, y)."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    blocks: list[list[float]] = []  # [sum_y, n, sum_x]
    for xi, yi in zip(x, y, strict=True):
        blocks.append([yi, 1.0, xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, n, sx = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
            blocks[-1][2] += sx
    return np.array([b[2] / b[1] for b in blocks]), np.array([b[0] / b[1] for b in blocks])


def fit(kind: str, x: Sequence[float], y: Sequence[float], mode: str = "") -> Calibration:
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if kind == "scale":
        denom = float((x_arr * x_arr).sum())
        return Calibration("scale", mode, a=float((x_arr * y_arr).sum() / denom) if denom > 0 else 1.0)
    if kind == "linear":
        if len(x_arr) < 3 or np.ptp(x_arr) == 0:
            return fit("scale", x, y, mode)
        a, b = np.polyfit(x_arr, y_arr, 1)
        if a <= 0:
            return fit("scale", x, y, mode)
        return Calibration("linear", mode, a=float(a), b=float(b))
    if kind == "isotonic":
        xs, ys = _pav(x_arr, y_arr)
        return Calibration("isotonic", mode, xs=tuple(xs.tolist()), ys=tuple(ys.tolist()))
    return Calibration("identity", mode)


def _folds(n: int, k: int) -> list[np.ndarray]:
    return [np.arange(i, n, k) for i in range(min(k, n))]


def _cross_validated(
    n: int, folds: int, held_back_errors: Callable[[np.ndarray, np.ndarray], Iterable[float]]
) -> float:
    """Mean of `held_back_errors(train, held)` over k interleaved folds of n frames (leave-one-out when few)."""
    errors: list[float] = []
    for held in _folds(n, min(folds, n)):
        train = np.setdiff1d(np.arange(n), held)
        if len(train):
            errors.extend(held_back_errors(train, held))
    return float(np.mean(errors)) if errors else math.nan


def cross_validate(kind: str, x: Sequence[float], y: Sequence[float], folds: int = 5) -> float:
    """MAE of `kind` on held-back frames (k interleaved folds; leave-one-out when there are few frames)."""
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def errors(train: np.ndarray, held: np.ndarray) -> Iterable[float]:
        model = fit(kind, x_arr[train], y_arr[train])
        return (abs(model.apply(v) - t) for v, t in zip(x_arr[held], y_arr[held], strict=True))

    return _cross_validated(len(x_arr), folds, errors)


def choose(x: Sequence[float], y: Sequence[float], mode: str = "", folds: int = 5) -> Calibration:
    """The kind with the lowest cross-validated MAE (isotonic only with >= 8 frames), fitted on all frames."""
    if len(x) < 2:
        raise ValueError("Calibration needs at least 2 frames with counts.")
    kinds = ["identity", "scale", "linear"] + (["isotonic"] if len(x) >= 8 else [])
    scores = {kind: cross_validate(kind, x, y, folds) for kind in kinds}
    # Prefer the simpler map unless a richer one is clearly better (5 % lower error).
    best = "identity"
    for kind in kinds[1:]:
        if scores[kind] < scores[best] * 0.95:
            best = kind
    model = fit(best, x, y, mode)
    before = scores["identity"]
    return Calibration(
        model.kind,
        mode,
        model.a,
        model.b,
        model.xs,
        model.ys,
        report={
            "cv_mae_before": round(before, 3),
            "cv_mae_after": round(scores[best], 3),
            "cv_mae": {k: round(v, 3) for k, v in scores.items()},
            "n_frames": len(x),
        },
    )


# --- box models (fitted from clicked heads) ----------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledFrame:
    """A frame's candidate boxes (x1, y1, x2, y2, conf; down to BOX_FLOOR) from each view searched (the frame, and
    its mirror image when mirrored; in frame pixels) and the heads a person clicked on it."""

    views: tuple[np.ndarray, ...]
    heads: np.ndarray  # (H, 2) frame pixels
    width: int
    height: int

    @property
    def boxes(self) -> np.ndarray:
        """The views' boxes as one set (pooled at the default overlap)."""
        return pooled(self.views)


def box_features(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Per box: confidence (logit), foot height and centre across the frame, size (log height), shape (w / h), and
    the share of it covered by a stronger box (a duplicate of a person already found). Pure."""
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 5)
    order = np.argsort(-boxes[:, 4], kind="stable")
    ranked = boxes[order]
    h = np.maximum(ranked[:, 3] - ranked[:, 1], 1.0)
    w = np.maximum(ranked[:, 2] - ranked[:, 0], 1.0)
    covered = np.zeros(len(ranked))
    for i in range(1, len(ranked)):
        ix = np.clip(np.minimum(ranked[i, 2], ranked[:i, 2]) - np.maximum(ranked[i, 0], ranked[:i, 0]), 0, None)
        iy = np.clip(np.minimum(ranked[i, 3], ranked[:i, 3]) - np.maximum(ranked[i, 1], ranked[:i, 1]), 0, None)
        covered[i] = (ix * iy).max() / (w[i] * h[i])
    score = np.clip(ranked[:, 4], 1e-4, 1 - 1e-4)
    features = np.column_stack(
        [
            np.log(score / (1 - score)),
            ranked[:, 3] / max(height, 1),
            (ranked[:, 0] + ranked[:, 2]) / 2 / max(width, 1),
            np.log(h),
            w / h,
            covered,
        ]
    )
    out = np.empty_like(features)
    out[order] = features
    return out


def match_heads(boxes: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Which boxes are a clicked person: each head goes to at most one box, nearest first, when it lies in the
    box's upper half near its head point (a second box on the same person stays unmatched). The heads left then go
    to the boxes left under a looser rule, stronger boxes first: a head clicked a little off its person's box (a
    bent or half-hidden person, a box cut short) is still that person. Pure."""
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 5)
    heads = np.asarray(heads, dtype=float).reshape(-1, 2)
    matched = np.zeros(len(boxes), dtype=bool)
    if len(boxes) == 0 or len(heads) == 0:
        return matched
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 4.0)[:, None]
    hx, hy = heads[None, :, 0], heads[None, :, 1]
    head_x = (boxes[:, 0] + boxes[:, 2])[:, None] / 2
    head_y = boxes[:, 1][:, None] + HEAD_AT * h
    distance = np.hypot(hx - head_x, hy - head_y) / h
    taken = np.zeros(len(heads), dtype=bool)
    for slack, depth, reach, stronger_first in ((0.1, 0.5, 0.5, False), (0.2, 0.7, 1.0, True)):
        pad = slack * h
        near = (
            (hx >= boxes[:, None, 0] - pad)
            & (hx <= boxes[:, None, 2] + pad)
            & (hy >= boxes[:, None, 1] - 1.5 * pad)
            & (hy <= boxes[:, None, 1] + depth * h)
            & (distance < reach)
        )
        pairs = np.argwhere(near)
        keys = (distance[near], -boxes[pairs[:, 0], 4]) if stronger_first else (distance[near],)
        for box, head in pairs[np.lexsort(keys)]:
            if not matched[box] and not taken[head]:
                matched[box] = taken[head] = True
    return matched


def fit_box_model(frames: Sequence[LabelledFrame], l2: float = 1.0) -> BoxModels:
    """Logistic regressions (L2, Newton's method) of "this box is a clicked person" over the frames' boxes: one per
    pooling overlap when the frames were searched in their mirror images too (as the models will see them), else one
    on the frames' own boxes."""
    if not frames:
        raise ValueError("A box model needs frames with clicked heads.")
    mirrored = all(len(frame.views) > 1 for frame in frames)
    return BoxModels(tuple(_fit_one(frames, mirrored, iou, l2) for iou in (POOL_IOUS if mirrored else (0.5,))))


def _fit_one(frames: Sequence[LabelledFrame], mirrored: bool, pool_iou: float, l2: float) -> BoxModel:
    features, labels, missed = [], [], []
    for frame in frames:
        boxes = pooled(frame.views if mirrored else frame.views[:1], BOX_FLOOR, pool_iou)
        matched = match_heads(boxes, frame.heads)
        features.append(box_features(boxes, frame.width, frame.height))
        labels.append(matched.astype(float))
        missed.append(len(frame.heads) - int(matched.sum()))
    x, y = np.concatenate(features), np.concatenate(labels)
    if len(x) == 0:
        weights = (0.0,) * FEATURES + (-30.0,)
        return BoxModel(
            weights, (0.0,) * FEATURES, (1.0,) * FEATURES, float(np.mean(missed)), mirrored=mirrored, pool_iou=pool_iou
        )
    center, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    design = np.column_stack([(x - center) / scale, np.ones(len(x))])
    weights = np.zeros(design.shape[1])
    penalty = l2 * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(design @ weights, -30, 30)))
        gradient = design.T @ (p - y) + penalty @ weights
        hessian = (design * (p * (1 - p) + 1e-9)[:, None]).T @ design + penalty + 1e-9 * np.eye(len(weights))
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-8:
            break
    return BoxModel(
        tuple(weights.tolist()),
        tuple(center.tolist()),
        tuple(scale.tolist()),
        float(np.mean(missed)),
        mirrored=mirrored,
        pool_iou=pool_iou,
    )


def cross_validate_boxes(frames: Sequence[LabelledFrame], truth: Sequence[float], folds: int = 5) -> float:
    """MAE of a box model on held-back frames (k interleaved folds, as `cross_validate`)."""

    def errors(train: np.ndarray, held: np.ndarray) -> Iterable[float]:
        model = fit_box_model([frames[i] for i in train])
        return (abs(model.count(frames[i].views, frames[i].width, frames[i].height) - truth[i]) for i in held)

    return _cross_validated(len(frames), folds, errors)
