import logging
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from alerts.notifiers import deliver_due
from alerts.services import check_stale_locations
from crowd_monitor.shutdown import stop_on_signals

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Alert housekeeping, until SIGINT/SIGTERM: raise STALE alerts for locations whose readings stopped, "
        "and retry notifications that failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between checks")
        parser.add_argument("--once", action="store_true", help="one check, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["interval"] <= 0:
            raise CommandError("--interval must be positive.")
        stop = threading.Event()
        with stop_on_signals(stop):
            self._run(options, stop)
        self.stdout.write("Stopped.")

    def _run(self, options: dict[str, Any], stop: threading.Event) -> None:
        self.stdout.write(f"Checking every {options['interval']:g} s.")
        while not stop.is_set():
            close_old_connections()
            try:
                for alert in check_stale_locations():
                    self.stdout.write(f"STALE: {alert.location.name}: {alert.message}")
                sent = deliver_due()
                if sent:
                    self.stdout.write(f"Delivered {sent} queued notification(s).")
            except Exception:
                # The database restarting must not end the worker; the next check tries again.
                logger.exception("Alert check failed")
            if options["once"]:
                break
            stop.wait(options["interval"])
