#!/usr/bin/env python3
"""How low can a per-camera calibration bring the error? Bounds from clicked heads, on the product's own boxes.

A map from raw count to true count (calibrate_camera's scale / linear / isotonic) removes a camera's systematic
error; on a camera whose counter is already unbiased what is left is per-frame noise. This benchmark uses the heads
a person clicked on each frame (points.json beside the dataset's manifest) to measure where that noise comes from
and how far a correction of the product's person boxes can go:

- `product`      : the product's detect count, uncalibrated;
- `box model`    : calibrate_camera's box model (detection/counting/calibration.py: a per-camera logistic model of
                   which boxes down to confidence 0.01 are people, plus the people no box finds), fitted on the fit
                   frames' clicked heads; on the boxes of the frame and its mirror image pooled (what the product
                   stores: one model per pooling overlap, their counts averaged), and on the frame's own boxes only
                   (`box model, frame`: models stored before mirroring);
                   `box model, all`: fitted on every frame and measured on the same frames, the best its features
                   allow;
- `oracle F`     : keep exactly the boxes down to confidence F that match a clicked head (no false box, no
                   duplicate) and add the mean number of people no such box finds (from the fit frames). No
                   correction that only accepts or rejects boxes can do better; what remains is the frame-to-frame
                   variation of the people the detector misses altogether. `oracle+mirror`: the same from the
                   pooled boxes of the frame and its mirror image.

Errors are MAE on held-back frames: fit on `--fit` evenly spaced frames (as `calibrate_camera --fit` does), and the
mean and worst over `--splits` random draws of as many frames.

    .venv/bin/python bench/calibration_bounds.py                   # Mall, fit on 10 frames
    .venv/bin/python bench/calibration_bounds.py --floors 0.01,0.1 --splits 50

The frames are research data for evaluation only: read where they lie, never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import _common
import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(_common.SHARED / "data" / "mall"), help="dataset folder")
    parser.add_argument("--model", default=os.environ.get("DETECTION_MODEL") or str(_common.DEFAULT_MODEL))
    parser.add_argument("--fit", type=int, default=10, help="frames to fit on (the rest are held back)")
    parser.add_argument("--splits", type=int, default=20, help="random fit draws besides the evenly spaced one")
    parser.add_argument("--floors", default="0.01,0.05,0.1,0.25", help="box confidences the oracle starts from")
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "points.json").is_file():
        parser.error(f"{data / 'points.json'} not found: this benchmark needs the clicked heads of every frame")

    sys.path.insert(0, str(_common.REPO))
    from detection.counting import calibration as calib

    frames, pooled, product, seconds = count_frames(data, args.model)
    n = len(frames)
    if not 2 <= args.fit < n:
        parser.error(f"--fit must be between 2 and {n - 1}")
    fits = [np.unique(np.round(np.linspace(0, n - 1, args.fit)).astype(int))]
    rng = np.random.default_rng(0)
    fits += [np.sort(rng.choice(n, args.fit, replace=False)) for _ in range(args.splits)]
    truth = np.array([len(f.heads) for f in frames], dtype=float)

    def held_back_mae(estimates: np.ndarray, fit: np.ndarray) -> float:
        rest = np.setdiff1d(np.arange(n), fit)
        return float(np.mean(np.abs(estimates[rest] - truth[rest])))

    print(f"# {_common.machine()}")
    print(f"# {data.name}: {n} frames, mean count {truth.mean():.1f}; fit on {args.fit}, held back {n - args.fit}")
    print(f"{'method':<18} {'held-back MAE':>13} {'random fits: mean':>18} {'worst':>6}   notes")
    report("product", [held_back_mae(product, fit) for fit in fits], "no calibration")
    for method, labelled, mirrored in (("box model", pooled, True), ("box model, frame", frames, False)):
        errors = []
        for fit in fits:
            model = calib.fit_box_model([labelled[i] for i in fit])
            errors.append(held_back_mae(np.array([model.count(f.views, f.width, f.height) for f in labelled]), fit))
        boxes = np.mean([len(f.boxes) for f in labelled])
        report(method, errors, f"{boxes:.0f} candidate boxes, {seconds[mirrored] / n * 1000:.0f} ms per frame")
    # What the box model can do at best on these features: fitted on every frame, measured on the same frames.
    everything = calib.fit_box_model(pooled)
    in_sample = np.array([everything.count(f.views, f.width, f.height) for f in pooled])
    report("box model, all", [float(np.mean(np.abs(in_sample - truth)))], f"fitted on all {n} frames, measured on them")

    def oracle(method: str, labelled: list, floor: float) -> None:
        found = np.array([calib.match_heads(f.boxes[f.boxes[:, 4] >= floor], f.heads).sum() for f in labelled])
        missed = truth - found
        report(
            method,
            [held_back_mae(found + missed[fit].mean(), fit) for fit in fits],
            f"boxes on a person {found.mean():.1f}, people missed {missed.mean():.1f} +- {missed.std():.2f} a frame",
        )

    floors = sorted(float(f) for f in args.floors.split(","))
    for floor in floors:
        oracle(f"oracle {floor:g}", frames, floor)
    oracle(f"oracle+mirror {floors[0]:g}", pooled, floors[0])
    return 0


def count_frames(data: Path, model: str) -> tuple[list, list, np.ndarray, dict[bool, float]]:
    """Every frame's candidate boxes down to the box model's floor (LabelledFrame): the frame's own, and pooled with
    its mirror image's; the product's detect count; the seconds spent finding each kind of candidates."""
    import cv2

    from detection.counting import calibration as calib
    from detection.counting.engine import CountingEngine

    engine = CountingEngine(model, mode="detect")
    points = json.loads((data / "points.json").read_text())
    names = [line.split(",")[0] for line in (data / "manifest.csv").read_text().splitlines()[1:] if line.strip()]
    frames, pooled, product = [], [], []
    seconds = {False: 0.0, True: 0.0}
    started = time.perf_counter()
    for index, name in enumerate(names, start=1):
        image = cv2.imread(str(data / name), cv2.IMREAD_COLOR)
        height, width = image.shape[:2]
        product.append(engine.count(image).count)
        heads = np.asarray(points[name], dtype=float).reshape(-1, 2)
        for labelled, mirrored in ((frames, False), (pooled, True)):
            began = time.perf_counter()
            views, _ = engine.candidate_views(image, None, calib.BOX_FLOOR, mirrored)
            seconds[mirrored] += time.perf_counter() - began
            labelled.append(calib.LabelledFrame(views, heads, width, height))
        elapsed = time.perf_counter() - started
        print(f"\rcounting {index}/{len(names)} frames ({elapsed:.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    return frames, pooled, np.array(product, dtype=float), seconds


def report(method: str, errors: list[float], notes: str) -> None:
    rest = errors[1:]
    spread = f"{np.mean(rest):>18.2f} {np.max(rest):>6.2f}" if rest else f"{'-':>18} {'-':>6}"
    print(f"{method:<18} {errors[0]:>13.2f} {spread}   {notes}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
