import json
from pathlib import Path
from typing import Any

import cv2
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from detection.detectors import MODES, ModelUnavailable, confidence, load_counter


class Command(BaseCommand):
    help = "Count people in image files. With --json, prints one JSON object per image."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--json", action="store_true", help='one {"image", "count", "boxes"} object per line')
        parser.add_argument(
            "--quality",
            action="store_true",
            help='with --json, add each count\'s "quality" (likely range, mode used) to its object',
        )
        parser.add_argument(
            "--mode",
            choices=MODES,
            default=settings.DETECTION_MODE,
            help="auto (default), detect (sliced YOLO), density (needs DENSITY_MODEL), yolo (single pass) or hog",
        )
        parser.add_argument("--density-model", default=settings.DENSITY_MODEL, help="density weights (.npz)")
        parser.add_argument("--conf", type=confidence, default=settings.DETECTION_CONFIDENCE)
        parser.add_argument("--model", default=settings.DETECTION_MODEL)
        parser.add_argument("--device", default=settings.DETECTION_DEVICE)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            counter = load_counter(
                options["mode"],
                options["model"],
                options["conf"],
                options["device"],
                density_model=options["density_model"],
            )
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        failed = []
        for path in options["paths"]:
            image = cv2.imread(path) if Path(path).is_file() else None
            if image is None:
                self.stderr.write(f"{path}: {unreadable(Path(path))}")
                failed.append(path)
                continue
            result = counter.count(image)
            if options["json"]:
                boxes = [[round(v, 1) for v in box[:4]] + [round(box[4], 3)] for box in result.boxes]
                # Exactly the detection contract's object (DESIGN.md); the quality only when asked for.
                payload = {"image": path, "count": result.count, "boxes": boxes}
                if options["quality"] and "quality" in (details := result.details()):
                    payload["quality"] = details["quality"]
                self.stdout.write(json.dumps(payload))
            else:
                quality = ""
                if result.mode_used:
                    high = "?" if result.high is None else f"{result.high:.0f}"
                    flags = "".join(f", {f}" for f in ("dense", "saturated") if getattr(result, f))
                    quality = f", {result.mode_used}, {result.low:.0f}-{high}{flags}"
                self.stdout.write(f"{path}: {result.count} people ({result.inference_ms:.0f} ms{quality})")
        if failed:
            raise CommandError(f"{len(failed)} of {len(options['paths'])} image(s) could not be read.")


def unreadable(path: Path) -> str:
    """Why `path` gave no image, in words a shell user can act on."""
    if path.is_dir():
        return "a directory, not an image (pass its images, e.g. DIR/*.jpg)"
    if not path.exists():
        return "no such file"
    return "not a readable image (OpenCV cannot decode it)"
