"""The counting engine: `detect`, `density` and `auto` modes behind the `Counter` protocol.

- `detect`  : YOLO person boxes with adaptive slicing (detection/counting/slicing.py).
- `density` : a crowd-density model whose map sums to the count (detection/counting/density.py).
- `auto`    : one full-frame detector pass and (when DENSITY_MODEL is set) the density model on every frame;
              tiles only where the frame shows a crowd; `decide`, a pure function of what the frame showed (never
              of where the frame came from), picks the count.

Every result carries its quality: an interval (low, high), the mode used, and the `dense` / `saturated` flags.
`hold_untrusted` is the rule that a reading the counter cannot trust never lowers the count on its own; the
worker applies it per camera (`settle`) after counting each frame with the camera's zone and calibration
(`count_frame`) and keeping the median of a reading's frames (`median_index`).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..detectors import Counter, CountResult, ModelUnavailable
from ..yolo import PersonDetector, as_bgr, load_person_detector
from .calibration import BoxModels, Calibration
from .density import HOW_TO_SET, DensityEnsemble, DensityModel, load_density_model
from .modes import ENGINE_MODES
from .slicing import SliceConfig, choose_grid, crowded_view, first_pass, mirror, sliced_detect
from .zones import Zone, boxes_inside, map_mask, parse_zone

logger = logging.getLogger(__name__)


# --- the scene decision (pure) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoRule:
    """Thresholds of the auto mode, in terms of what the frame shows.

    Fitted once on the shared (non-held-out) split of four public datasets, then fixed: no per-image tuning.
    """

    # A density count at least this high marks a crowd even where detection sees few people (a dense crowd far
    # away can give the detector nothing to find).
    density_crowd: float = 15.0
    # In a crowd, the density count is used when it accounts for at least this share of the people detection
    # found; well below that, the density model is out of its depth (an unfamiliar, occluded indoor scene) and
    # the detections are the better count.
    density_agrees: float = 0.5
    # A detection-only count of a crowd is flagged saturated (a lower bound) when it is at least saturated_from
    # people and zooming in (slicing) found at least saturated_ratio times what one full-frame pass did: the
    # detector is clearly resolution-bound, and even the tiles miss people.
    saturated_from: int = 15
    saturated_ratio: float = 2.0
    dense_count: int = 20  # a density-mode reading of at least this many people is flagged dense
    # Interval half-widths relative to the estimate (from the benchmark's errors), low side / high side.
    detect_rel: tuple[float, float] = (0.15, 0.15)
    crowd_detect_rel: tuple[float, float] = (0.15, 0.30)
    density_rel: tuple[float, float] = (0.20, 0.35)
    very_dense_rel: tuple[float, float] = (0.35, 0.90)  # beyond the density model's training crowds


@dataclass(frozen=True)
class Scene:
    """What the frame showed the engine (the input of `decide`)."""

    full_count: int  # people found by one full-frame detector pass
    crowded_view: bool  # the first pass shows a crowd (see slicing.crowded_view)
    detect_count: float  # people found after slicing (= full_count when not sliced)
    grid: int
    density_count: float | None = None  # None: no density model (or not run)
    very_dense: bool = False  # denser than the density model's training crowds (wider uncertainty)


@dataclass(frozen=True)
class Decision:
    estimate: float
    mode_used: str  # detect | density
    dense: bool
    saturated: bool
    low: float
    high: float | None
    reason: str


def is_crowd(scene: Scene, rule: AutoRule = AutoRule()) -> bool:
    """A crowd: the detector's view is crowded, or the density model sees many people. Pure."""
    if scene.crowded_view:
        return True
    return scene.density_count is not None and scene.density_count >= rule.density_crowd


def needs_closer_look(scene: Scene, rule: AutoRule = AutoRule()) -> bool:
    """Slice the frame: a crowd, or -- without a density count -- nobody found at all (people may be too small
    for one full-frame pass; a closer look has to confirm an empty scene). Pure."""
    return is_crowd(scene, rule) or (scene.density_count is None and scene.full_count == 0)


def decide(scene: Scene, rule: AutoRule = AutoRule()) -> Decision:
    """The auto mode's count from what the frame showed. Pure.

    1. No crowd: the full-frame detections (sparse scenes: detection is exact enough, density models are not).
    2. A crowd, and the density model sees at least `density_agrees` of what sliced detection found: the density
       count (people are many and small or hidden: a box per person cannot be had).
    3. A crowd the density model under-sees (< `density_agrees` of the detections): sliced detection.
    4. A crowd and no density model: sliced detection, flagged saturated when large (a lower bound).
    """
    d = scene.detect_count
    if not is_crowd(scene, rule):
        low, high = _interval(d, rule.detect_rel)
        return Decision(d, "detect", False, False, low, high, "sparse: detection")
    s = scene.density_count
    if s is None:
        saturated = d >= rule.saturated_from and d >= rule.saturated_ratio * max(scene.full_count, 1)
        low, high = _interval(d, rule.crowd_detect_rel)
        reason = "crowd, no density model" + (": lower bound" if saturated else "")
        return Decision(d, "detect", False, saturated, low, None if saturated else high, reason)
    if s >= rule.density_agrees * d:
        low, high = _interval(s, rule.very_dense_rel if scene.very_dense else rule.density_rel)
        return Decision(s, "density", s >= rule.dense_count, False, max(low, min(d, s)), high, "crowd: density model")
    low, high = _interval(d, rule.crowd_detect_rel)
    return Decision(d, "detect", False, False, low, high, "crowd the density model under-sees: sliced detection")


def _interval(estimate: float, rel: tuple[float, float]) -> tuple[float, float]:
    return max(0.0, estimate * (1 - rel[0]) - 1), estimate * (1 + rel[1]) + 1


def density_decision(
    density_count: float, detect_count: float | None, very_dense: bool = False, rule: AutoRule = AutoRule()
) -> Decision:
    """The forced `density` mode: the density count, with its interval and flags."""
    low, high = _interval(density_count, rule.very_dense_rel if very_dense else rule.density_rel)
    if detect_count is not None:
        low = max(low, min(detect_count, density_count))
    return Decision(density_count, "density", density_count >= rule.dense_count, False, low, high, "density model")


def detect_decision(scene: Scene, rule: AutoRule = AutoRule()) -> Decision:
    """The forced `detect` mode: sliced detection; a large crowd is flagged saturated (a lower bound)."""
    return decide(replace(scene, density_count=None), rule)


def hold_untrusted(count: int, saturated: bool, previous: int | None) -> int:
    """A reading the counter cannot trust never lowers the count on its own. Pure.

    A saturated reading (the counter is known to be blind to part of the crowd) is a lower bound: it may raise the
    count, but when it is below the previous reading of the same camera the previous count stands.
    """
    if saturated and previous is not None and count < previous:
        return previous
    return count


# --- the engine ------------------------------------------------------------------------------------------------


class CountingEngine:
    """Counter with modes per call; `count(image)` uses the engine's default mode (the Counter protocol)."""

    def __init__(
        self,
        model: str,
        conf: float = 0.25,
        device: str = "cpu",
        mode: str = "auto",
        density_model: str = "",
        density_arch: str = "",
        density_backend: str = "openvino",
        density_max_side: int = 1024,
        slicing: SliceConfig | None = None,
        rule: AutoRule | None = None,
        detector: PersonDetector | None = None,
        density: DensityEnsemble | DensityModel | None = None,
    ) -> None:
        if mode not in ENGINE_MODES:
            raise ModelUnavailable(f"Unknown counting mode {mode!r}; choose one of {', '.join(ENGINE_MODES)}.")
        self.mode = mode
        self.name = mode
        self.forced = False  # run_detection sets it when --mode overrides the cameras' own modes
        self.slicing = slicing or SliceConfig()
        self.rule = rule or AutoRule()
        if isinstance(density, DensityModel):
            density = DensityEnsemble([density])
        self.density = density
        if self.density is None and density_model:
            self.density = load_density_model(density_model, density_arch, density_backend, density_max_side)
        if mode == "density" and self.density is None:
            load_density_model("")  # raises ModelUnavailable saying how to set DENSITY_MODEL
        self.detector = detector if detector is not None else load_person_detector(model, device, conf)
        # Frames of several cameras can be counted at once when the detector runs requests side by side (the density
        # models are safe to share between threads too).
        self.parallel = self.detector.parallel

    def count(self, image: np.ndarray, mode: str | None = None, zone: Zone | None = None) -> CountResult:
        started = time.perf_counter()
        mode = self._check(mode or self.mode)
        scene, boxes = self.look(image, zone, mode)
        decision = self.judge(mode, scene)
        estimates = {"detect": scene.detect_count} if mode != "density" else {}
        if scene.density_count is not None:
            estimates["density"] = scene.density_count
        notes = [f"sliced {scene.grid}x{scene.grid}"] if scene.grid > 1 else []
        return self._result(image, mode, decision, boxes, estimates, notes, started)

    def count_boxes(self, image: np.ndarray, model: BoxModels, zone: Zone | None = None) -> CountResult:
        """The `detect` count of a camera with a box model (calibration fitted from clicked heads): every box down
        to the model's floor, weighed by the probability that it is a person, plus the people no box finds."""
        started = time.perf_counter()
        image = as_bgr(image)
        height, width = image.shape[:2]
        views, grid = self.candidate_views(image, zone, model.floor, model.mirrored)
        judged = model.weigh(views, width, height)
        estimate = model.total(judged)
        low, high = _interval(estimate, self.rule.crowd_detect_rel)
        decision = Decision(estimate, "detect", False, False, low, high, "detection judged by the camera's box model")
        # Shown on the frame: the boxes the last model (pooled at 0.5, as before) finds more likely people than not.
        candidates, probability = judged[-1]
        boxes = candidates[probability >= 0.5]
        # About what the plain detect mode counts: the boxes that clear its crowd confidence (on a mirrored model's
        # pooled boxes, with the mean of the two views' confidences).
        uncalibrated = float((candidates[:, 4] >= self.detector.conf * self.slicing.crowd_conf_factor).sum())
        estimates = {"detect": estimate, "uncalibrated": uncalibrated}
        notes = [f"sliced {grid}x{grid}", "calibrated (boxes)"]
        return self._result(image, "detect", decision, boxes, estimates, notes, started)

    def candidate_views(
        self, image: np.ndarray, zone: Zone | None, floor: float, mirrored: bool = False
    ) -> tuple[tuple[np.ndarray, ...], int]:
        """Person boxes down to confidence `floor` in the zone, from the full frame and its tiles (every frame is
        sliced: the boxes a box model weighs are the small and half-hidden people), and the grid used.

        `mirrored`: the frame's mirror image is searched too, for twice the detector passes, and its boxes (in the
        frame's pixels) are a second view; a box model pools the views (`calibration.pooled`). The detector is not
        symmetric: the mirror image finds some of the people the frame's own boxes miss, and whether both views see a
        weak box tells a person from a fluke."""
        image = as_bgr(image)
        height, width = image.shape[:2]
        config = replace(self.slicing, crowd_conf_factor=floor / self.detector.conf)
        grid = choose_grid(width, height, config)
        views = [sliced_detect(self.detector, image, config, grid=grid).boxes]
        if mirrored:
            flipped = np.ascontiguousarray(image[:, ::-1])
            views.append(mirror(sliced_detect(self.detector, flipped, config, grid=grid).boxes, width))
        return tuple(boxes[boxes_inside(boxes, zone, width, height)] for boxes in views), grid

    def _result(
        self,
        image: np.ndarray,
        mode: str,
        decision: Decision,
        boxes: np.ndarray,
        estimates: dict[str, float],
        notes: list[str],
        started: float,
    ) -> CountResult:
        height, width = image.shape[:2]
        return CountResult(
            count=round(float(decision.estimate)),
            boxes=boxes.tolist(),
            width=width,
            height=height,
            inference_ms=(time.perf_counter() - started) * 1000,
            low=decision.low,
            high=decision.high,
            mode_used=decision.mode_used,
            requested_mode=mode,
            dense=decision.dense,
            saturated=decision.saturated,
            estimates={**estimates, "combined": decision.estimate},
            notes=(*notes, decision.reason),
        )

    def estimates_by_mode(self, image: np.ndarray, modes: list[str], zone: Zone | None = None) -> dict[str, float]:
        """Each mode's unrounded estimate of one frame (for calibration), sharing the detection and density passes."""
        for mode in modes:
            self._check(mode)
        scene, _ = self.look(image, zone, "density" if "density" in modes else "auto" if "auto" in modes else "detect")
        return {mode: self.judge(mode, scene).estimate for mode in modes}

    def _check(self, mode: str) -> str:
        if mode not in ENGINE_MODES:
            raise ModelUnavailable(f"Unknown counting mode {mode!r}; choose one of {', '.join(ENGINE_MODES)}.")
        if mode == "density" and self.density is None:
            load_density_model("")  # raises ModelUnavailable saying how to set DENSITY_MODEL
        return mode

    def look(self, image: np.ndarray, zone: Zone | None, mode: str) -> tuple[Scene, np.ndarray]:
        """Run what `mode` needs on the frame: a full-frame detector pass, the density model (auto, density), and
        tiles where the frame shows a crowd (auto, detect). Returns the scene and the person boxes in the zone."""
        image = as_bgr(image)
        height, width = image.shape[:2]
        first = first_pass(self.detector, image, self.slicing)
        density, very_dense = None, False
        if mode in ("auto", "density") and self.density is not None:
            maps = self.density.predict(image)
            density = max(m.count_in(map_mask(zone, m.map.shape)) for m in maps)
            very_dense = maps[0].per_10k_px >= self.density.very_dense
        scene = Scene(first.count, crowded_view(first, self.slicing), float(first.count), 1, density, very_dense)
        grid = 1
        if mode != "density" and needs_closer_look(
            scene if mode == "auto" else replace(scene, density_count=None), self.rule
        ):
            grid = choose_grid(width, height, self.slicing)
        detections = sliced_detect(self.detector, image, self.slicing, grid=grid, first=first)
        boxes = detections.boxes[boxes_inside(detections.boxes, zone, width, height)]
        full_in_zone = int(boxes_inside(first.boxes, zone, width, height).sum()) if zone is not None else first.count
        return replace(scene, full_count=full_in_zone, detect_count=float(len(boxes)), grid=grid), boxes

    def judge(self, mode: str, scene: Scene) -> Decision:
        if mode == "density":
            if scene.density_count is None:
                raise ModelUnavailable(f"The density mode needs a density model. {HOW_TO_SET}")
            return density_decision(scene.density_count, scene.detect_count, scene.very_dense, self.rule)
        if mode == "detect":
            return detect_decision(scene, self.rule)
        return decide(scene, self.rule)


# --- per camera: zone, calibration, stable counts, the untrusted-reading rule ---------------------------------------


@dataclass(frozen=True)
class CameraProfile:
    mode: str = ""  # "" = the counter's own mode
    zone: Zone | None = None
    calibration: Calibration | None = None

    @classmethod
    def load(cls, camera_id: int | None) -> CameraProfile:
        if camera_id is None:
            return cls()
        from locations.models import Camera  # detection sits on top of locations

        row = Camera.objects.filter(pk=camera_id).values("counting_mode", "zone", "calibration").first()
        if row is None:
            return cls()
        try:
            zone = parse_zone(row["zone"])
        except ValueError:
            logger.warning("Camera %s has an invalid zone; counting the whole frame.", camera_id)
            zone = None
        calibration = Calibration.from_json(row["calibration"])
        if calibration is None and row["calibration"]:
            logger.warning("Camera %s has a calibration the counter cannot apply; counting uncalibrated.", camera_id)
        return cls(row["counting_mode"] or "", zone, calibration)


@dataclass
class CameraState:
    """What the worker remembers per camera between readings."""

    previous: int | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=5))


def apply_calibration(result: CountResult, calibration: Calibration | None) -> CountResult:
    """The camera's fitted map applied to the count and its interval (when fitted for the mode in use)."""
    if calibration is None or calibration.kind in ("identity", "boxes"):
        return result  # a box model is applied while counting (count_frame), not to a finished count
    if calibration.mode and result.requested_mode and calibration.mode != result.requested_mode:
        return result  # fitted for another counting mode: its map does not describe this reading
    value = result.estimates.get("combined", float(result.count))
    corrected = calibration.apply(value)
    return replace(
        result,
        count=round(float(corrected)),
        low=None if result.low is None else calibration.apply(result.low),
        high=None if result.high is None else calibration.apply(result.high),
        estimates={**result.estimates, "uncalibrated": value},
        notes=(*result.notes, f"calibrated ({calibration.kind})"),
    )


def count_frame(counter: Counter, image: np.ndarray, profile: CameraProfile) -> CountResult:
    """One frame counted the camera's way: its counting mode and zone, then its calibration."""
    if isinstance(counter, CountingEngine):
        mode = None if getattr(counter, "forced", False) else (profile.mode or None)
        calibration = profile.calibration
        if calibration is not None and calibration.boxes is not None and (mode or counter.mode) == calibration.mode:
            return counter.count_boxes(image, calibration.boxes, zone=profile.zone)
        result = counter.count(image, mode=mode, zone=profile.zone)
    else:
        result = counter.count(image)
        if profile.zone is not None and result.boxes:
            boxes = np.asarray(result.boxes, dtype=np.float32)
            kept = boxes[boxes_inside(boxes, profile.zone, result.width, result.height)]
            result = replace(result, count=len(kept), boxes=kept.tolist())
    return apply_calibration(result, profile.calibration)


def median_index(results: Sequence[CountResult]) -> int:
    """Which of several frames' results a reading keeps: the one with the median count (of an even number, the
    lower middle one), so that one frame with people hidden or doubled does not move the reading. Pure."""
    order = sorted(range(len(results)), key=lambda i: results[i].count)
    return order[(len(order) - 1) // 2]


def settle(result: CountResult, state: CameraState, smooth: int | None = None) -> CountResult:
    """What a camera reports: optional median smoothing over its last readings, then `hold_untrusted` against its
    previous reading."""
    if smooth is None:
        from django.conf import settings

        smooth = settings.DETECTION_SMOOTHING
    if smooth > 1:
        state.recent.append(result.count)
        window = list(state.recent)[-smooth:]
        result = replace(result, count=round(float(statistics.median(window))))
    held = hold_untrusted(result.count, result.saturated, state.previous)
    if held != result.count:
        result = replace(result, count=held, notes=(*result.notes, "held: untrusted reading below previous"))
    state.previous = result.count
    return result


__all__ = [
    "ENGINE_MODES",
    "AutoRule",
    "CameraProfile",
    "CameraState",
    "CountingEngine",
    "Decision",
    "count_frame",
    "decide",
    "hold_untrusted",
    "median_index",
    "settle",
]
