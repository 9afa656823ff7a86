import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from crowd_monitor.redaction import redact_uri
from detection.detectors import MODES, ModelUnavailable, load_counter
from detection.worker import DetectionWorker, Feed, camera_feeds
from locations.models import Location


class Command(BaseCommand):
    help = (
        "Count people on every enabled camera (or one --location / --source) each --interval seconds and record "
        "the readings. Runs until SIGINT/SIGTERM, or one pass with --once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--mode", choices=MODES, default="yolo", help="yolo (default) or hog (weak fallback)")
        parser.add_argument("--interval", type=float, default=settings.DETECTION_INTERVAL, help="seconds per pass")
        parser.add_argument("--location", type=int, help="only this location's cameras")
        parser.add_argument("--source", help="sample this source instead of configured cameras (needs --location)")
        parser.add_argument("--conf", type=float, default=settings.DETECTION_CONFIDENCE, help="min confidence")
        parser.add_argument("--model", default=settings.DETECTION_MODEL, help="YOLO weights file, folder or name")
        parser.add_argument("--device", default=settings.DETECTION_DEVICE, help="cpu, cuda:0, ...")
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--cycles", type=int, help="stop after this many passes")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["interval"] <= 0:
            raise CommandError("--interval must be positive.")
        if not 0 < options["conf"] <= 1:
            raise CommandError("--conf must be between 0 and 1.")
        cycles = 1 if options["once"] else options["cycles"]
        if cycles is not None and cycles < 1:
            raise CommandError("--cycles must be at least 1.")
        feeds = self._feeds(options["location"], options["source"])
        if cycles is not None and not feeds():
            raise CommandError("Nothing to sample: no enabled camera matches. Add a camera in admin or use --source.")

        if options["mode"] == "hog":
            self.stderr.write(self.style.WARNING("HOG is a weak fallback: it misses most people in crowds."))
        self.stdout.write(f"Loading the {options['mode']} counter ({options['model']})...")
        try:
            counter = load_counter(options["mode"], options["model"], options["conf"], options["device"])
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc

        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self.stdout.write(f"{signal.Signals(signum).name} received: finishing the current pass...")
            stop.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        self.stdout.write(f"Sampling every {options['interval']:g} s. Stop with Ctrl+C.")
        worker = DetectionWorker(counter, feeds, options["interval"], stop, report=self.stdout.write)
        recorded = worker.run(cycles=cycles)
        self.stdout.write(self.style.SUCCESS(f"Stopped after recording {recorded} reading(s)."))

    def _feeds(self, location_id: int | None, source: str | None):
        if location_id is not None and not Location.objects.filter(pk=location_id).exists():
            raise CommandError(f"Location {location_id} does not exist.")
        if source is not None:
            if location_id is None:
                raise CommandError("--source needs --location: the location its readings belong to.")
            self.stdout.write(f"Sampling {redact_uri(source)} for location {location_id}.")
            return lambda: [Feed(location_id=location_id, uri=source)]
        return lambda: camera_feeds(location_id)
