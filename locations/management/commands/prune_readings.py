import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from locations.retention import prune_readings, readings_before

# Seconds between progress lines: a backlog of millions of readings shows it is moving without printing thousands.
PROGRESS_EVERY = 1.0


def when(at: datetime) -> str:
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S %Z")


class Command(BaseCommand):
    help = (
        "Delete stored readings (CrowdLog rows) older than --days (default READING_RETENTION_DAYS). History charts "
        "keep their per-minute snapshots; current state and alerts are untouched. run_alerts does this every hour."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=int, help="keep readings of the last N days (default: READING_RETENTION_DAYS)"
        )
        parser.add_argument("--dry-run", action="store_true", help="only say how many readings would be deleted")
        parser.add_argument("--batch-size", type=int, default=5000, help="readings deleted per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days is None:
            days = settings.READING_RETENTION_DAYS
            if days == 0:
                self.stdout.write(
                    "Reading retention is off (READING_RETENTION_DAYS=0): nothing deleted. "
                    "Give --days N to delete readings older than N days."
                )
                return
        elif not 1 <= days <= settings.MAX_RETENTION_DAYS:
            raise CommandError(f"--days must be from 1 to {settings.MAX_RETENTION_DAYS}, not {days}.")
        if options["batch_size"] < 1:
            raise CommandError(f"--batch-size must be 1 or more, not {options['batch_size']}.")

        cutoff = timezone.now() - timedelta(days=days)
        total = readings_before(cutoff)
        if options["dry_run"]:
            self.stdout.write(f"Would delete {total} readings older than {when(cutoff)} (dry run: nothing deleted).")
            return

        started = last_line = time.monotonic()

        def progress(deleted: int) -> None:
            nonlocal last_line
            if time.monotonic() - last_line >= PROGRESS_EVERY:
                last_line = time.monotonic()
                # `total` was counted before: back-filled readings arriving meanwhile may take it a little past.
                self.stdout.write(f"Deleted {deleted} of {total} readings older than {when(cutoff)} ...")

        deleted = prune_readings(cutoff, batch_size=options["batch_size"], progress=progress)
        self.stdout.write(
            f"Deleted {deleted} readings older than {when(cutoff)} in {time.monotonic() - started:.1f} s; "
            "the per-minute history is kept."
        )
