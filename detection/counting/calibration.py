"""Per-camera calibration: a monotone map from the counter's raw estimate to the true count.

Fitted from a handful of frames with human counts (manage.py calibrate_camera), chosen by cross-validation among

- `identity`  : no correction (kept when nothing beats it on held-back frames);
- `scale`     : y = a * x (one parameter: a camera's systematic under/over-count);
- `linear`    : y = a * x + b (a >= 0);
- `isotonic`  : a non-decreasing step map (pool-adjacent-violators), extended beyond the fitted range by the
                ratio at its ends so that a crowd larger than any calibration frame still counts higher.

Stored on the camera as JSON (see `Calibration.to_json`) and applied by the worker to every reading of that camera
(count and interval bounds). Pure functions, no Django.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("identity", "scale", "linear", "isotonic")


@dataclass(frozen=True)
class Calibration:
    kind: str = "identity"
    mode: str = ""  # the counting mode the map was fitted for ("" = any)
    a: float = 1.0
    b: float = 0.0
    xs: tuple[float, ...] = ()
    ys: tuple[float, ...] = ()
    report: dict[str, Any] = field(default_factory=dict)

    def apply(self, value: float) -> float:
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
        data.update(self.report)
        return data

    @classmethod
    def from_json(cls, data: Any) -> Calibration | None:
        if not data or not isinstance(data, dict):
            return None
        kind = data.get("kind", "identity")
        if kind not in KINDS:
            return None
        return cls(
            kind=kind,
            mode=str(data.get("mode", "")),
            a=float(data.get("a", 1.0)),
            b=float(data.get("b", 0.0)),
            xs=tuple(float(v) for v in data.get("x", ())),
            ys=tuple(float(v) for v in data.get("y", ())),
        )


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


def cross_validate(kind: str, x: Sequence[float], y: Sequence[float], folds: int = 5) -> float:
    """MAE of `kind` on held-back frames (k interleaved folds; leave-one-out when there are few frames)."""
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x_arr)
    errors = []
    for held in _folds(n, min(folds, n)):
        train = np.setdiff1d(np.arange(n), held)
        if len(train) == 0:
            continue
        model = fit(kind, x_arr[train], y_arr[train])
        errors.extend(abs(model.apply(v) - t) for v, t in zip(x_arr[held], y_arr[held], strict=True))
    return float(np.mean(errors)) if errors else math.nan


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
