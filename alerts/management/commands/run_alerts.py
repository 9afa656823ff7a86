import logging
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from django.utils import timezone

from alerts.notifiers import deliver_due
from alerts.services import check_stale_locations
from crowd_monitor.shutdown import stop_on_signals
from locations.retention import prune_history, prune_readings, rows

logger = logging.getLogger(__name__)

# Readings older than READING_RETENTION_DAYS, and history older than HISTORY_RETENTION_DAYS, are deleted at start and
# then once an hour.
PRUNE_EVERY = 3600.0
# Rows of each kind deleted per check at most: a backlog (the first start after an upgrade: months of readings) goes a
# slice at a time between STALE checks, which must never wait minutes for a delete. A slice took 0.3 s on PostgreSQL
# 15 on 2 cores; hourly, 8 cameras at a 5 s interval leave about 6,000 readings to delete, a location 60 history rows.
PRUNE_SLICE = 20_000


class Command(BaseCommand):
    help = (
        "Alert housekeeping, until SIGINT/SIGTERM: raise STALE alerts for locations whose readings stopped, "
        "retry notifications that failed, and delete readings and history older than their retention every hour."
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
        prune_at = time.monotonic()  # when the next prune is due: at once
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
            if time.monotonic() >= prune_at:
                prune_at = self._prune()
            if options["once"]:
                break
            stop.wait(options["interval"])

    def _prune(self) -> float:
        """Delete a slice of the readings and of the history older than their retention; returns when to prune next."""
        more_left = False
        for what, days, prune in (
            ("reading", settings.READING_RETENTION_DAYS, prune_readings),
            ("history row", settings.HISTORY_RETENTION_DAYS, prune_history),
        ):
            if days == 0:  # retention off: kept forever
                continue
            cutoff = timezone.now() - timedelta(days=days)
            try:
                deleted = prune(cutoff, limit=PRUNE_SLICE)
            except Exception:
                # Like a failed check, never the end of the worker: the next hour's prune deletes what this one left.
                logger.exception("Deleting %ss older than %s failed", what, cutoff.isoformat())
                continue
            if deleted:
                older_than = timezone.localtime(cutoff)
                self.stdout.write(f"Deleted {rows(deleted, what)} older than {older_than:%Y-%m-%d %H:%M:%S %Z}.")
            # A full slice: more may be left, go on after the next check.
            more_left = more_left or deleted >= PRUNE_SLICE
        return time.monotonic() if more_left else time.monotonic() + PRUNE_EVERY
