import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from locations.retention import history_before, prune_history, prune_readings, readings_before, rows

# Seconds between progress lines: a backlog of millions of readings shows it is moving without printing thousands.
PROGRESS_EVERY = 1.0


@dataclass(frozen=True)
class Kept:
    """What one retention setting deletes."""

    what: str  # one row, in words
    option: str  # the command-line option that overrides the setting
    setting: str
    least: int  # fewest days an option may keep
    count: Callable[[datetime], int]
    prune: Callable[..., int]

    @property
    def dest(self) -> str:
        return self.option.removeprefix("--").replace("-", "_")


RETENTIONS = (
    Kept("reading", "--days", "READING_RETENTION_DAYS", 1, readings_before, prune_readings),
    Kept(
        "history row",
        "--history-days",
        "HISTORY_RETENTION_DAYS",
        settings.MIN_HISTORY_RETENTION_DAYS,
        history_before,
        prune_history,
    ),
)


def when(at: datetime) -> str:
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S %Z")


class Command(BaseCommand):
    help = (
        "Delete stored readings (CrowdLog rows) older than --days (default READING_RETENTION_DAYS) and the per-minute "
        "history behind the charts older than --history-days (default HISTORY_RETENTION_DAYS). Current state and "
        "alerts are untouched. run_alerts does this every hour."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=int, help="keep readings of the last N days (default: READING_RETENTION_DAYS)"
        )
        parser.add_argument(
            "--history-days",
            type=int,
            help="keep the per-minute history of the last N days (default: HISTORY_RETENTION_DAYS)",
        )
        parser.add_argument("--dry-run", action="store_true", help="only say how many rows would be deleted")
        parser.add_argument("--batch-size", type=int, default=5000, help="rows deleted per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError(f"--batch-size must be 1 or more, not {options['batch_size']}.")
        # Every option is checked before anything is deleted: a typo in one never leaves the other half done.
        cutoffs = [(kept, self._cutoff(kept, options[kept.dest])) for kept in RETENTIONS]
        for kept, cutoff in cutoffs:
            if cutoff is not None:
                self._prune(kept, cutoff, options)

    def _cutoff(self, kept: Kept, days: int | None) -> datetime | None:
        """Where kept rows start, or None to keep them all (the setting's retention is off and no option given)."""
        if days is None:
            days = getattr(settings, kept.setting)
            if days == 0:
                self.stdout.write(
                    f"Retention of {kept.what}s is off ({kept.setting}=0): none deleted. "
                    f"Give {kept.option} N to delete {kept.what}s older than N days."
                )
                return None
        elif not kept.least <= days <= settings.MAX_RETENTION_DAYS:
            raise CommandError(f"{kept.option} must be from {kept.least} to {settings.MAX_RETENTION_DAYS}, not {days}.")
        return timezone.now() - timedelta(days=days)

    def _prune(self, kept: Kept, cutoff: datetime, options: dict[str, Any]) -> None:
        total = kept.count(cutoff)
        if options["dry_run"]:
            self.stdout.write(
                f"Would delete {rows(total, kept.what)} older than {when(cutoff)} (dry run: nothing deleted)."
            )
            return
        started = last_line = time.monotonic()

        def progress(deleted: int) -> None:
            nonlocal last_line
            if time.monotonic() - last_line >= PROGRESS_EVERY:
                last_line = time.monotonic()
                # `total` was counted before: back-filled readings arriving meanwhile may take it a little past.
                self.stdout.write(f"Deleted {deleted} of {rows(total, kept.what)} older than {when(cutoff)} ...")

        deleted = kept.prune(cutoff, batch_size=options["batch_size"], progress=progress)
        self.stdout.write(
            f"Deleted {rows(deleted, kept.what)} older than {when(cutoff)} in {time.monotonic() - started:.1f} s."
        )
