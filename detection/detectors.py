"""People counters: the counting engine (detection/counting: modes auto, detect, density -- the product's
counter), plain single-pass ultralytics YOLO (`yolo`) and OpenCV's HOG (a weak, weights-free fallback).

A counter that cannot load its model raises ModelUnavailable with what to do about it: the
product never records a made-up zero because it could not see.
"""

import argparse
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from .yolo import ModelUnavailable, load_person_detector

logger = logging.getLogger(__name__)

# auto / detect / density: the counting engine (detection/counting); yolo: plain single-pass YOLO; hog: the weak,
# weights-free fallback.
MODES = ("auto", "detect", "density", "yolo", "hog")


def confidence(text: str) -> float:
    """The commands' --conf: a detector confidence above 0 and at most 1 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, not {text}")
    return value


@dataclass(frozen=True)
class CountResult:
    count: int
    # Person boxes as [x1, y1, x2, y2, confidence], in frame pixels.
    boxes: list[list[float]] = field(default_factory=list)
    width: int = 0
    height: int = 0
    inference_ms: float = 0.0
    # How far the count can be trusted (detection/counting): a plausible interval for the true count, how it was
    # obtained, and flags for scenes beyond reliable detection. Plain counters leave the defaults.
    low: float | None = None
    high: float | None = None  # None: no upper bound can be given (a detector that cannot see the crowd)
    mode_used: str = ""  # what produced the count: detect | density | blend (engine modes)
    requested_mode: str = ""  # the mode asked for: auto | detect | density | yolo | hog
    dense: bool = False  # many small people: the count comes (mostly) from a density model
    saturated: bool = False  # the counter in use cannot resolve this crowd: the count is a lower bound
    estimates: dict[str, float] = field(default_factory=dict)  # each method's raw count, e.g. detect / density
    notes: tuple[str, ...] = ()

    @property
    def trusted(self) -> bool:
        return not self.saturated

    def details(self) -> dict[str, Any]:
        """What a stored reading keeps of the detection (boxes rounded to keep rows small)."""
        details: dict[str, Any] = {
            "frame_size": [self.width, self.height],
            "boxes": [[round(v) for v in box[:4]] + [round(box[4], 2)] for box in self.boxes],
            "inference_ms": round(self.inference_ms, 1),
        }
        if self.mode_used:
            details["quality"] = {
                "mode_used": self.mode_used,
                "low": None if self.low is None else round(self.low, 1),
                "high": None if self.high is None else round(self.high, 1),
                "dense": self.dense,
                "saturated": self.saturated,
                "estimates": {k: round(v, 1) for k, v in self.estimates.items()},
                "notes": list(self.notes),
            }
        return details


class Counter(Protocol):
    name: str
    parallel: int  # frames it can usefully count at the same time, from different threads

    def count(self, image: np.ndarray) -> CountResult: ...


def _result(boxes: list[list[float]], image: np.ndarray, started: float, mode: str) -> CountResult:
    height, width = image.shape[:2]
    elapsed = (time.perf_counter() - started) * 1000
    return CountResult(len(boxes), boxes, width, height, elapsed, requested_mode=mode)


class YoloCounter:
    """Counts `person` boxes with one full-frame YOLO pass (.pt weights or an exported model folder)."""

    name = "yolo"

    def __init__(self, model: str, conf: float = 0.25, device: str = "cpu", imgsz: int = 640) -> None:
        self.model_name = model
        self.imgsz = imgsz
        self.detector = load_person_detector(model, device, conf)
        self.parallel = self.detector.parallel

    def count(self, image: np.ndarray) -> CountResult:
        started = time.perf_counter()
        boxes = self.detector(image, self.imgsz)
        return _result(boxes.tolist(), image, started, "yolo")


class HogCounter:
    """OpenCV's classic HOG + linear SVM pedestrian detector.

    Needs no weights, so it works where no YOLO model can be had, but it misses most people who
    are small, occluded or not upright: a weak fallback, not a crowd counter.
    """

    name = "hog"
    parallel = 1

    def __init__(self) -> None:
        if not hasattr(cv2, "HOGDescriptor"):
            raise ModelUnavailable("This OpenCV build has no HOGDescriptor (removed in OpenCV 5); use --mode yolo.")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def count(self, image: np.ndarray) -> CountResult:
        started = time.perf_counter()
        rects, weights = self.hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=1.05)
        keep = cv2.dnn.NMSBoxes([list(map(int, r)) for r in rects], [float(w) for w in weights], 0.3, 0.45)
        boxes = [
            [float(x), float(y), float(x + w), float(y + h), float(weights[i])]
            for i in np.array(keep).flatten()
            for x, y, w, h in [rects[i]]
        ]
        return _result(boxes, image, started, "hog")


def load_counter(
    mode: str,
    model: str,
    conf: float,
    device: str,
    density_model: str | None = None,
    density_arch: str | None = None,
    density_backend: str | None = None,
    density_max_side: int | None = None,
) -> Counter:
    """A counter for `mode`; the density settings default to DENSITY_MODEL / _ARCH / _BACKEND / _MAX_SIDE."""
    if mode == "yolo":
        return YoloCounter(model, conf=conf, device=device)
    if mode == "hog":
        return HogCounter()
    if mode in ("auto", "detect", "density"):
        from django.conf import settings

        from .counting.engine import CountingEngine

        return CountingEngine(
            model,
            conf=conf,
            device=device,
            mode=mode,
            density_model=settings.DENSITY_MODEL if density_model is None else density_model,
            density_arch=settings.DENSITY_MODEL_ARCH if density_arch is None else density_arch,
            density_backend=settings.DENSITY_BACKEND if density_backend is None else density_backend,
            density_max_side=settings.DENSITY_MAX_SIDE if density_max_side is None else density_max_side,
        )
    raise ModelUnavailable(f"Unknown detection mode {mode!r}; choose one of {', '.join(MODES)}.")
