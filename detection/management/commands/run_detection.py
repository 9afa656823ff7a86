import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from crowd_monitor.redaction import redact_uri
from crowd_monitor.shutdown import stop_on_signals
from detection.detectors import MODES, ModelUnavailable, confidence, load_counter
from detection.leases import LeaseKeeper
from detection.metrics import WorkerMetrics
from detection.spool import Spool
from detection.worker import DetectionWorker, Feed, camera_feeds
from locations.models import Camera, Location

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Count people on every enabled camera (or one --location / --source) each --interval seconds and record "
        "the readings. Runs until SIGINT/SIGTERM, or one pass with --once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--mode",
            choices=MODES,
            help="counting mode for every camera: auto, detect (sliced YOLO), density (needs DENSITY_MODEL), yolo "
            "(plain single-pass YOLO) or hog (weak fallback). Default: each camera's own counting mode "
            "(DETECTION_MODE for --source)",
        )
        parser.add_argument("--density-model", default=settings.DENSITY_MODEL, help="density weights (.npz)")
        parser.add_argument("--interval", type=float, default=settings.DETECTION_INTERVAL, help="seconds per pass")
        parser.add_argument("--location", type=int, help="only this location's cameras")
        parser.add_argument("--source", help="sample this source instead of configured cameras (needs --location)")
        parser.add_argument("--conf", type=confidence, default=settings.DETECTION_CONFIDENCE, help="min confidence")
        parser.add_argument("--model", default=settings.DETECTION_MODEL, help="YOLO weights file, folder or name")
        parser.add_argument("--device", default=settings.DETECTION_DEVICE, help="cpu, cuda:0, ...")
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--cycles", type=int, help="stop after this many passes")
        scaling = parser.add_argument_group("scaling (docs/PERFORMANCE.md)")
        scaling.add_argument(
            "--workers",
            type=int,
            default=1,
            help="run this many worker processes (restarted if they crash); they share the cameras through leases, "
            "as do workers started separately, on this machine or others",
        )
        scaling.add_argument(
            "--lease-seconds",
            type=float,
            default=settings.DETECTION_LEASE_SECONDS,
            help="how long a worker's claim on a camera lasts unrenewed: a dead worker's cameras move to the others "
            "within about this long",
        )
        scaling.add_argument("--max-cameras", type=int, help="claim at most this many cameras (default: a fair share)")
        scaling.add_argument(
            "--metrics-port",
            type=int,
            default=settings.DETECTION_METRICS_PORT,
            help="serve Prometheus metrics on this port (0: off); with --workers N, worker i uses port + i",
        )
        scaling.add_argument(
            "--fetch-threads",
            type=int,
            default=4,
            help="sampling threads: each reads, decodes and counts one camera's frame at a time",
        )
        scaling.add_argument(
            "--spool-dir",
            default=settings.DETECTION_SPOOL_DIR,
            help="where readings wait while the database is unreachable",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["interval"] <= 0:
            raise CommandError("--interval must be positive.")
        cycles = 1 if options["once"] else options["cycles"]
        if cycles is not None and cycles < 1:
            raise CommandError("--cycles must be at least 1.")
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1.")
        if options["lease_seconds"] <= 0:
            raise CommandError("--lease-seconds must be positive.")
        if options["max_cameras"] is not None and options["max_cameras"] < 1:
            raise CommandError("--max-cameras must be at least 1.")
        if options["workers"] > 1:
            if options["source"] is not None:
                raise CommandError("--workers shares configured cameras; it cannot be used with --source.")
            self._feeds(options["location"], None)  # validates --location
            self._supervise(options)
            return
        feeds = self._feeds(options["location"], options["source"])
        if cycles is not None and not feeds():
            raise CommandError("Nothing to sample: no enabled camera matches. Add a camera in admin or use --source.")

        # Installed before the model loads (which takes a while), so a stop asked for meanwhile is clean too.
        stop = threading.Event()
        with stop_on_signals(stop, lambda name: self.stdout.write(f"{name} received: finishing the current pass...")):
            self._run(options, feeds, cycles, stop)

    def _run(
        self, options: dict[str, Any], feeds: Callable[[], list[Feed]], cycles: int | None, stop: threading.Event
    ) -> None:
        """Load the counter, then sample `feeds` until `stop` is set (or for `cycles` passes)."""
        mode = options["mode"] or settings.DETECTION_MODE
        if mode == "hog":
            self.stderr.write(self.style.WARNING("HOG is a weak fallback: it misses most people in crowds."))
        self.stdout.write(f"Loading the {mode} counter ({options['model']})...")
        try:
            counter = load_counter(
                mode, options["model"], options["conf"], options["device"], density_model=options["density_model"]
            )
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        # An explicit --mode applies to every camera; otherwise each camera's counting_mode decides.
        counter.forced = options["mode"] is not None
        if getattr(counter, "density", True) is None:
            density_cameras = Camera.objects.filter(enabled=True, counting_mode=Camera.CountingMode.DENSITY)
            if not counter.forced and density_cameras.exists():
                raise CommandError(
                    f"{density_cameras.count()} camera(s) use the density counting mode, but no density model is "
                    "configured. Set DENSITY_MODEL (or --density-model) to a density weights file."
                )
            self.stderr.write(
                self.style.WARNING(
                    "No density model (DENSITY_MODEL): dense crowds are counted by detection alone and flagged "
                    "saturated (a lower bound)."
                )
            )

        leases = None
        metrics = WorkerMetrics()
        if options["source"] is None:
            # Configured cameras are shared with any other worker through leases; an ad-hoc --source is this
            # worker's alone.
            leases = LeaseKeeper(
                lease_seconds=options["lease_seconds"],
                max_cameras=options["max_cameras"],
                location_id=options["location"],
                stats=metrics.stats,
            )
            metrics.worker = leases.name
            location_id = options["location"]
            feeds = lambda: camera_feeds(location_id, camera_ids=leases.held)  # noqa: E731
        if options["metrics_port"]:
            metrics.serve(options["metrics_port"])
            self.stdout.write(f"Prometheus metrics on port {options['metrics_port']}.")
        spool = Spool(options["spool_dir"], settings.DETECTION_SPOOL_MAX)

        self.stdout.write(f"Sampling every {options['interval']:g} s. Stop with Ctrl+C.")
        worker = DetectionWorker(
            counter,
            feeds,
            options["interval"],
            stop,
            report=self.stdout.write,
            leases=leases,
            spool=spool,
            metrics=metrics,
            fetch_threads=options["fetch_threads"],
        )
        try:
            recorded = worker.run(cycles=cycles)
        finally:
            left = spool.depth()
            spool.close()
        if left:
            self.stderr.write(
                self.style.WARNING(
                    f"{left} reading(s) wait in {spool.path} for the database; the next worker started here writes "
                    "them."
                )
            )
        self.stdout.write(self.style.SUCCESS(f"Stopped after recording {recorded} reading(s)."))

    def _supervise(self, options: dict[str, Any]) -> None:
        """Run --workers processes of this command and keep them running until SIGINT/SIGTERM."""
        count = options["workers"]
        stop = threading.Event()
        with stop_on_signals(stop, lambda name: self.stdout.write(f"{name} received: stopping the {count} workers...")):
            self._keep_running(options, stop)
        self.stdout.write(self.style.SUCCESS(f"All {count} workers stopped."))

    def _keep_running(self, options: dict[str, Any], stop: threading.Event) -> None:
        """Start the workers, restart one that fails, and stop them all once `stop` is set."""
        count = options["workers"]
        children: list[subprocess.Popen[bytes] | None] = [None] * count
        restarts = [0] * count
        failed = 0
        try:
            while True:
                for i, child in enumerate(children):
                    if child is not None and child.poll() is None:
                        continue
                    if child is not None:
                        done_ok = child.returncode == 0
                        if stop.is_set() or (done_ok and (options["once"] or options["cycles"])):
                            continue  # finished as asked
                        restarts[i] += 1
                        logger.error("event=worker_exited slot=%d code=%s restart=%d", i, child.returncode, restarts[i])
                        time.sleep(min(30.0, 2.0 ** min(restarts[i], 5)))
                    if stop.is_set():
                        continue
                    children[i] = subprocess.Popen(self._child_command(options, i))
                    self.stdout.write(f"Worker {i + 1}/{count} started (pid {children[i].pid}).")
                if stop.is_set():
                    break
                if all(c is not None and c.poll() is not None and c.returncode == 0 for c in children):
                    break  # --once / --cycles: everyone is done
                stop.wait(0.5)
        finally:
            for child in children:
                if child is not None and child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                if child is not None:
                    try:
                        child.wait(timeout=120)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
                    # A worker still starting up when asked to stop dies of the SIGTERM itself: also a clean stop.
                    failed += child.returncode not in (0, -signal.SIGTERM)
        if failed:
            raise CommandError(f"{failed} worker(s) did not stop cleanly.")

    @staticmethod
    def _child_command(options: dict[str, Any], slot: int) -> list[str]:
        command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "run_detection"]
        for name in ("mode", "density_model", "interval", "location", "conf", "model", "device", "cycles"):
            if options.get(name) not in (None, ""):
                command += [f"--{name.replace('_', '-')}", str(options[name])]
        command += ["--lease-seconds", str(options["lease_seconds"]), "--fetch-threads", str(options["fetch_threads"])]
        command += ["--spool-dir", str(options["spool_dir"])]
        if options["once"]:
            command.append("--once")
        if options["max_cameras"]:
            command += ["--max-cameras", str(options["max_cameras"])]
        if options["metrics_port"]:
            command += ["--metrics-port", str(options["metrics_port"] + slot)]
        command += ["--verbosity", str(options.get("verbosity", 1))]
        if os.environ.get("DJANGO_SETTINGS_MODULE"):
            command += ["--settings", os.environ["DJANGO_SETTINGS_MODULE"]]
        return command

    def _feeds(self, location_id: int | None, source: str | None):
        if location_id is not None and not Location.objects.filter(pk=location_id).exists():
            raise CommandError(f"Location {location_id} does not exist.")
        if source is not None:
            if location_id is None:
                raise CommandError("--source needs --location: the location its readings belong to.")
            self.stdout.write(f"Sampling {redact_uri(source)} for location {location_id}.")
            return lambda: [Feed(location_id=location_id, uri=source)]
        return lambda: camera_feeds(location_id)
