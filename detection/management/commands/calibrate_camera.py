"""Fit a camera's count correction from frames with human counts, check it on held-back frames, store it."""

import csv
import glob
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from detection.counting import calibration as calib
from detection.counting.engine import ENGINE_MODES, CountingEngine
from detection.counting.zones import parse_zone
from detection.detectors import ModelUnavailable, confidence, load_counter
from locations.models import Camera

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class Command(BaseCommand):
    help = (
        "Calibrate a camera's people count: count labelled frames (CSV image,count) with each counting mode, fit a "
        "map from raw estimate to true count (identity, scale, linear or isotonic, chosen by cross-validation) and, "
        "when the heads were clicked (--heads), a model of which detector boxes are people; report the error "
        "before/after on held-back frames and store the best on the camera."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("camera_id", type=int)
        parser.add_argument(
            "--counts", required=True, help="CSV with columns image,count (paths relative to the CSV or --frames)"
        )
        parser.add_argument("--frames", help="folder or glob of the frames to use (default: every row of --counts)")
        parser.add_argument(
            "--heads",
            help="JSON {image: [[x, y], ...]}: the heads clicked on each frame, in frame pixels (keys as in --counts); "
            "with it, a box model of the detect mode is fitted too",
        )
        parser.add_argument(
            "--heads-relative",
            action="store_true",
            help="the --heads points are 0-1 fractions of each frame's width and height (as the admin's calibration "
            "page stores them), not pixels",
        )
        parser.add_argument(
            "--modes",
            default="",
            help="comma-separated modes to try (default: auto, detect, and density when a density model is set)",
        )
        parser.add_argument(
            "--fit",
            type=int,
            default=0,
            help="fit on this many frames (evenly spaced) and measure on the rest; default: cross-validate on all",
        )
        parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
        parser.add_argument("--dry-run", action="store_true", help="report only; don't store on the camera")
        parser.add_argument("--conf", type=confidence, default=settings.DETECTION_CONFIDENCE)
        parser.add_argument("--model", default=settings.DETECTION_MODEL)
        parser.add_argument("--density-model", default=settings.DENSITY_MODEL)
        parser.add_argument("--device", default=settings.DETECTION_DEVICE)

    def handle(self, *args: Any, **options: Any) -> None:
        camera = Camera.objects.filter(pk=options["camera_id"]).first()
        if camera is None:
            raise CommandError(f"Camera {options['camera_id']} does not exist.")
        frames = labelled_frames(options["counts"], options["frames"])
        if len(frames) < 3:
            raise CommandError(f"Need at least 3 labelled frames, found {len(frames)}.")
        if options["folds"] < 2:
            raise CommandError("--folds must be at least 2: each fold is held back once while the others fit.")
        if options["fit"] and not 2 <= options["fit"] < len(frames):
            raise CommandError(f"--fit must be between 2 and {len(frames) - 1} (frames: {len(frames)}).")
        try:
            engine = load_counter(
                "auto", options["model"], options["conf"], options["device"], density_model=options["density_model"]
            )
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        assert isinstance(engine, CountingEngine)
        modes = [m for m in options["modes"].split(",") if m] or [
            m for m in ENGINE_MODES if m != "density" or engine.density is not None
        ]
        for mode in modes:
            if mode not in ENGINE_MODES:
                raise CommandError(f"Unknown mode {mode!r}; choose from {', '.join(ENGINE_MODES)}.")
            if mode == "density" and engine.density is None:
                raise CommandError("The density mode needs a density model: set DENSITY_MODEL or --density-model.")
        try:
            zone = parse_zone(camera.zone)
        except ValueError as exc:  # stored before the rule was (a zone with no area); the admin form refuses it now
            raise CommandError(f"The camera's zone is not valid: {exc} Correct it on the camera's page.") from exc
        clicked, skipped = clicked_heads(options["heads"], options["counts"], frames, "detect" in modes)
        if skipped:
            self.stdout.write(f"No box model: {skipped}")

        self.stdout.write(f"Counting {len(frames)} frame(s) for camera {camera} with modes {', '.join(modes)}...")
        raw: dict[str, list[float]] = {m: [] for m in modes}
        truth = []
        labelled: list[calib.LabelledFrame] = []
        started = time.monotonic()
        for index, (path, count) in enumerate(frames):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise CommandError(f"{path}: not a readable image")
            estimates = engine.estimates_by_mode(image, modes, zone=zone)
            for mode in modes:
                raw[mode].append(estimates[mode])
            truth.append(count)
            if clicked:
                # The heads are those the count covers (on a zoned camera, the people inside the zone: the admin page
                # asks for those), so they are not filtered again: a head may lie outside the zone its feet are in.
                height, width = image.shape[:2]
                views, _ = engine.candidate_views(image, zone, calib.BOX_FLOOR, calib.MIRRORED)
                heads = clicked[index] * (width, height) if options["heads_relative"] else clicked[index]
                labelled.append(calib.LabelledFrame(views, heads, width, height))
            self.progress(index + 1, len(frames), started)

        fit_idx, test_idx = split(len(frames), options["fit"])
        y = np.array(truth, dtype=float)
        candidates = [
            fit_map(mode, np.array(raw[mode]), y, fit_idx, test_idx, options["fit"], options["folds"]) for mode in modes
        ]
        if labelled:
            candidates.append(
                fit_boxes(labelled, y, raw["detect"], fit_idx, test_idx, options["fit"], options["folds"])
            )
        for candidate in candidates:
            self.stdout.write(
                f"  {candidate.mode:8s} raw MAE {candidate.before:6.2f} -> calibrated ({candidate.calibration.kind}) "
                f"{candidate.after:6.2f} on held-back frames"
            )
        # A box model slices every frame: it has to beat the best map clearly (5 %) to be worth it.
        maps = [c for c in candidates if c.calibration.kind != "boxes"]
        best = min(maps, key=lambda c: c.after)
        for candidate in candidates[len(maps) :]:
            if candidate.after < best.after * 0.95:
                best = candidate
        mode, fitted, after, before = best.mode, best.calibration, best.after, best.before
        stored = fitted.to_json()
        stored.update(
            mode=mode,
            heldout_mae_before=round(before, 3),
            heldout_mae_after=round(after, 3),
            n_frames=len(frames),
            n_fit=len(fit_idx),
            n_heldout=len(test_idx) if options["fit"] else len(frames),
            validation="fit/held-out split" if options["fit"] else f"{min(options['folds'], len(frames))}-fold CV",
        )
        self.stdout.write(
            f"Best: mode {mode}, {fitted.kind} map; held-back MAE {before:.2f} -> {after:.2f} "
            f"({stored['validation']}, {len(frames)} frames)."
        )
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing stored.")
            return
        camera.counting_mode = mode
        camera.calibration = stored
        camera.save(update_fields=["counting_mode", "calibration"])
        self.stdout.write(
            self.style.SUCCESS(f"Stored on camera {camera.pk}; the worker applies it from its next pass.")
        )

    def progress(self, done: int, total: int, started: float) -> None:
        """A counter that rewrites itself on a terminal (a minute or more for a hundred frames); the admin page, which
        reads the output of a subprocess, gets the summary only."""
        if self.stderr.isatty():
            elapsed = time.monotonic() - started
            self.stderr.write(
                f"\r  {done}/{total} frames counted ({elapsed:.0f} s)", ending="\n" if done == total else ""
            )
            self.stderr.flush()


class Candidate(NamedTuple):
    mode: str
    calibration: calib.Calibration
    before: float  # MAE on held-back frames (--fit) or cross-validated, raw
    after: float  # ... calibrated (what the choice is made on)


def fit_map(
    mode: str, x: np.ndarray, truth: np.ndarray, fit_idx: np.ndarray, test_idx: np.ndarray, fit: int, folds: int
) -> Candidate:
    """A mode's best map from raw estimate to count: fitted on the fit frames and measured on the rest, or
    cross-validated on all frames."""
    if not fit:
        model = calib.choose(x, truth, mode=mode, folds=folds)
        before, after = model.report["cv_mae_before"], model.report["cv_mae_after"]
        return Candidate(mode, model, before, after)
    model = calib.choose(x[fit_idx], truth[fit_idx], mode=mode, folds=folds)
    before = float(np.mean(np.abs(x[test_idx] - truth[test_idx])))
    after = float(np.mean(np.abs(np.array([model.apply(v) for v in x[test_idx]]) - truth[test_idx])))
    return Candidate(mode, model, before, after)


def fit_boxes(
    labelled: list[calib.LabelledFrame],
    truth: np.ndarray,
    raw_detect: list[float],
    fit_idx: np.ndarray,
    test_idx: np.ndarray,
    fit: int,
    folds: int,
) -> Candidate:
    """The detect mode's box model: fitted on the fit frames and measured on the rest, or cross-validated."""
    x = np.array(raw_detect)
    if not fit:
        after = calib.cross_validate_boxes(labelled, truth, folds)
        before = float(np.mean(np.abs(x - truth)))
        report = {"cv_mae_before": round(before, 3), "cv_mae_after": round(after, 3), "n_frames": len(labelled)}
        model = calib.Calibration("boxes", "detect", boxes=calib.fit_box_model(labelled), report=report)
        return Candidate("detect", model, before, after)
    fitting = [labelled[i] for i in fit_idx]
    boxes = calib.fit_box_model(fitting)
    estimates = np.array([boxes.count(labelled[i].views, labelled[i].width, labelled[i].height) for i in test_idx])
    after = float(np.mean(np.abs(estimates - truth[test_idx])))
    before = float(np.mean(np.abs(x[test_idx] - truth[test_idx])))
    return Candidate("detect", calib.Calibration("boxes", "detect", boxes=boxes), before, after)


def clicked_heads(
    heads_json: str | None, counts_csv: str, frames: list[tuple[Path, int]], detect: bool
) -> tuple[list[np.ndarray], str]:
    """Each frame's clicked heads (frame pixels) when --heads covers every frame with all its people; else no
    heads and why."""
    if not heads_json:
        return [], ""
    if not detect:
        raise CommandError("--heads fits a model of the detect mode's boxes: include detect in --modes.")
    try:
        data = json.loads(Path(heads_json).read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"{heads_json}: not a readable JSON file ({exc}).") from None
    if not isinstance(data, dict):
        raise CommandError(f"{heads_json}: expected an object {{image: [[x, y], ...]}}.")
    base = Path(counts_csv).parent
    heads = []
    for path, count in frames:
        keys = (str(path.relative_to(base)) if path.is_relative_to(base) else None, str(path), path.name)
        points = next((data[k] for k in keys if k is not None and k in data), None)
        try:
            array = np.asarray(points if points is not None else [], dtype=float).reshape(-1, 2)
        except ValueError:
            raise CommandError(f"{heads_json}: the heads of {path.name} are not [x, y] pairs.") from None
        if points is None or len(array) != count:
            # A typed count (or a partly clicked frame) says how many people, not which boxes are people.
            return [], f"{path.name} has {len(array)} clicked head(s) for a count of {count}; click every head."
        heads.append(array)
    return heads, ""


def split(n: int, fit: int) -> tuple[np.ndarray, np.ndarray]:
    """`fit` evenly spaced frames to fit, the rest to measure (all frames both ways when fit is 0)."""
    if not fit:
        everything = np.arange(n)
        return everything, everything
    fit_idx = np.unique(np.round(np.linspace(0, n - 1, fit)).astype(int))
    return fit_idx, np.setdiff1d(np.arange(n), fit_idx)


def labelled_frames(counts_csv: str, frames: str | None) -> list[tuple[Path, int]]:
    """(image path, human count) pairs from a CSV image,count, restricted to --frames when given."""
    csv_path = Path(counts_csv)
    if not csv_path.is_file():
        raise CommandError(f"{counts_csv}: no such CSV file (columns image,count).")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"image", "count"} <= set(reader.fieldnames):
            raise CommandError(f"{counts_csv}: needs a header with columns image,count.")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                count = int(float(row["count"]))
            except (TypeError, ValueError):
                raise CommandError(f"{counts_csv}:{line}: count {row['count']!r} is not a number.") from None
            if count < 0:
                raise CommandError(f"{counts_csv}:{line}: negative count.")
            rows.append((row["image"], count))
    by_name: dict[str, int] = {}
    for image, count in rows:
        by_name[image] = count
        by_name.setdefault(Path(image).name, count)

    if frames is None:
        paths = [(csv_path.parent / image, count) for image, count in rows]
        missing = [str(p) for p, _ in paths if not p.is_file()]
        if missing:
            raise CommandError(f"{len(missing)} image(s) in {counts_csv} not found, e.g. {missing[0]}")
        return paths

    base = Path(frames)
    if base.is_dir():
        found = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        found = sorted(Path(p) for p in glob.glob(frames, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
    labelled = []
    for path in found:
        relative = str(path.relative_to(base)) if base.is_dir() else None
        for key in (relative, str(path), path.name):
            if key is not None and key in by_name:
                labelled.append((path, by_name[key]))
                break
    return labelled
