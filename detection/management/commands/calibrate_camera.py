"""Fit a camera's count correction from frames with human counts, check it on held-back frames, store it."""

import csv
import glob
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from detection.counting import calibration as calib
from detection.counting.engine import ENGINE_MODES, CountingEngine
from detection.counting.zones import parse_zone
from detection.detectors import ModelUnavailable, load_counter
from locations.models import Camera

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class Command(BaseCommand):
    help = (
        "Calibrate a camera's people count: count labelled frames (CSV image,count) with each counting mode, fit a "
        "map from raw estimate to true count (identity, scale, linear or isotonic, chosen by cross-validation), "
        "report the error before/after on held-back frames and store mode + map on the camera."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("camera_id", type=int)
        parser.add_argument(
            "--counts", required=True, help="CSV with columns image,count (paths relative to the CSV or --frames)"
        )
        parser.add_argument("--frames", help="folder or glob of the frames to use (default: every row of --counts)")
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
        parser.add_argument("--conf", type=float, default=settings.DETECTION_CONFIDENCE)
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
        zone = parse_zone(camera.zone)

        self.stdout.write(f"Counting {len(frames)} frame(s) for camera {camera} with modes {', '.join(modes)}...")
        raw: dict[str, list[float]] = {m: [] for m in modes}
        truth = []
        for path, count in frames:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise CommandError(f"{path}: not a readable image")
            estimates = engine.estimates_by_mode(image, modes, zone=zone)
            for mode in modes:
                raw[mode].append(estimates[mode])
            truth.append(count)

        fit_idx, test_idx = split(len(frames), options["fit"])
        best = None
        for mode in modes:
            x = np.array(raw[mode])
            y = np.array(truth, dtype=float)
            if options["fit"]:
                model = calib.choose(x[fit_idx], y[fit_idx], mode=mode, folds=options["folds"])
                before = float(np.mean(np.abs(x[test_idx] - y[test_idx])))
                after = float(np.mean([abs(model.apply(v) - t) for v, t in zip(x[test_idx], y[test_idx], strict=True)]))
                fitted = model
            else:
                model = calib.choose(x, y, mode=mode, folds=options["folds"])
                before, after = model.report["cv_mae_before"], model.report["cv_mae_after"]
                fitted = model
            self.stdout.write(
                f"  {mode:8s} raw MAE {before:6.2f} -> calibrated ({fitted.kind}) {after:6.2f} on held-back frames"
            )
            if best is None or after < best[2]:
                best = (mode, fitted, after, before)

        assert best is not None
        mode, fitted, after, before = best
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
