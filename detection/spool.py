"""Readings that could not be written yet: a small SQLite queue on local disk, flushed in order, exactly once.

While the database is unreachable the detection worker appends each reading here (with its idempotency key and
its original timestamp) instead of losing it; once the database answers again the spool is written oldest first
through `locations.services.record_readings` — still the only way a reading is stored — and a row leaves the
spool only after its write committed. A write that committed but whose answer was lost is written again with
the same key and stored once (`NewReading.key`), so nothing is lost and nothing is doubled.

One file per directory, shared by every worker process of the host (SQLite serialises their appends); one
process flushes at a time (an exclusive `flock` on a lock file beside it), so readings stay in order. A worker
that dies with readings in the spool leaves them to the next worker started on the host. The spool is bounded:
beyond `max_items` readings the oldest are dropped (and counted), so a database down for days cannot fill the disk.
Without a directory the same queue lives in memory (a worker run without one: tests, embedding): it survives a
database hiccup, not the process. When the spool file cannot be written (its disk full, or failing), readings wait
in memory behind the file's, bounded the same way, until the file takes them again or the database is back.
"""

from __future__ import annotations

import fcntl
import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reading_key TEXT NOT NULL UNIQUE,
    location_id INTEGER NOT NULL,
    camera_id INTEGER,
    count INTEGER NOT NULL,
    taken_at TEXT NOT NULL,
    source TEXT NOT NULL,
    details TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
)
"""


@dataclass
class PendingReading:
    """Everything the write path (`record_readings`) needs, taken when the frame was counted."""

    key: str
    location_id: int
    camera_id: int | None
    count: int
    at: datetime
    source: str
    details: dict[str, Any] = field(default_factory=dict)
    spool_id: int | None = None  # row id while in the spool


class Spool:
    def __init__(self, directory: str | Path | None, max_items: int = 100_000, name: str = "readings") -> None:
        self.max_items = max_items
        self.dropped = 0
        self._lock = threading.Lock()
        # Readings the file could not take, newer than every reading in it: while there are any, new readings join
        # them (the order of writing stays the order of counting). Attempts of failed writes, by key.
        self._overflow: list[PendingReading] = []
        self._overflow_attempts: dict[str, int] = {}
        # Rows of the file already written to the database whose DELETE failed (a full disk may refuse even that):
        # skipped until a DELETE succeeds, so a full disk never holds the flush, and the live readings behind it, up.
        self._written: set[int] = set()
        self._flush_lock: Any = None  # in memory, only this process can flush
        if directory is None:
            self.path = Path("<memory>")
            self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            directory = Path(directory)
            directory.mkdir(parents=True, exist_ok=True)
            self.path = directory / f"{name}.sqlite3"
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a reading acknowledged as spooled survives a power cut
            self._flush_lock = (directory / f"{name}.lock").open("a+")
        self._db.execute(SCHEMA)

    def append(self, reading: PendingReading) -> None:
        with self._lock:
            try:
                excess = self._overflowed(reading) if self._overflow else self._insert(self._row(reading))
            except sqlite3.Error as exc:
                logger.error(
                    "event=spool_write_failed path=%s error=%r: readings wait in memory until it can be written",
                    self.path,
                    str(exc),
                )
                excess = self._overflowed(reading)
        if excess > 0:
            self.dropped += excess
            logger.error("event=spool_full max=%d dropped_oldest=%d", self.max_items, excess)

    @staticmethod
    def _row(reading: PendingReading) -> tuple[Any, ...]:
        return (
            reading.key,
            reading.location_id,
            reading.camera_id,
            reading.count,
            reading.at.isoformat(),
            reading.source,
            json.dumps(reading.details, separators=(",", ":")),
        )

    def _insert(self, row: tuple[Any, ...]) -> int:
        """Append a row to the file; returns how many of the oldest went to stay within max_items."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "INSERT OR IGNORE INTO readings (reading_key, location_id, camera_id, count, taken_at, source, "
                "details) VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            (depth,) = self._db.execute("SELECT COUNT(*) FROM readings").fetchone()
            excess = depth - self.max_items
            if excess > 0:
                self._db.execute(
                    "DELETE FROM readings WHERE id IN (SELECT id FROM readings ORDER BY id LIMIT ?)", (excess,)
                )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite ends it itself on some errors ("database or disk is full")
                self._db.execute("ROLLBACK")
            raise
        return excess

    def _overflowed(self, reading: PendingReading) -> int:
        """Keep a reading in memory, behind the file's; returns how many of the oldest in memory went."""
        if any(kept.key == reading.key for kept in self._overflow):
            return 0
        reading.spool_id = None
        self._overflow.append(reading)
        excess = len(self._overflow) - self.max_items
        for gone in self._overflow[: max(0, excess)]:
            self._overflow_attempts.pop(gone.key, None)
        del self._overflow[: max(0, excess)]
        return max(0, excess)

    def depth(self) -> int:
        with self._lock:
            in_file = self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0] - len(self._written)
            return in_file + len(self._overflow)

    def peek(self, limit: int = 100) -> list[PendingReading]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, reading_key, location_id, camera_id, count, taken_at, source, details FROM readings "
                "ORDER BY id LIMIT ?",
                (limit + len(self._written),),
            ).fetchall()
            readings = [
                PendingReading(
                    key, location, camera, count, datetime.fromisoformat(at), source, json.loads(details), rid
                )
                for rid, key, location, camera, count, at, source, details in rows
                if rid not in self._written
            ][:limit]
            return readings + self._overflow[: limit - len(readings)]

    def remove(self, reading: PendingReading) -> None:
        with self._lock:
            if reading.spool_id is None:
                self._overflow = [kept for kept in self._overflow if kept.key != reading.key]
                self._overflow_attempts.pop(reading.key, None)
                return
            self._written.add(reading.spool_id)
            try:
                while self._written:
                    ids = sorted(self._written)[:500]  # within SQLite's limit on statement parameters
                    self._db.execute(f"DELETE FROM readings WHERE id IN ({','.join('?' * len(ids))})", ids)
                    self._written.difference_update(ids)
            except sqlite3.Error as exc:
                logger.error(
                    "event=spool_delete_failed path=%s written=%d error=%r", self.path, len(self._written), str(exc)
                )

    def failed_attempt(self, reading: PendingReading) -> int:
        with self._lock:
            if reading.spool_id is None:
                self._overflow_attempts[reading.key] = self._overflow_attempts.get(reading.key, 0) + 1
                return self._overflow_attempts[reading.key]
            self._db.execute("UPDATE readings SET attempts = attempts + 1 WHERE id = ?", (reading.spool_id,))
            return self._db.execute("SELECT attempts FROM readings WHERE id = ?", (reading.spool_id,)).fetchone()[0]

    def flush(self, write: Callable[[PendingReading], None], batch: int = 200) -> int:
        """Write spooled readings oldest first until the spool is empty or `write` raises; returns how many.

        `write` raising stops the flush and propagates (the database went away again; the reading stays). Returns
        0 at once when another process is flushing this spool.
        """
        if self._flush_lock is None:
            return self._flush(write, batch)
        try:
            fcntl.flock(self._flush_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        try:
            return self._flush(write, batch)
        finally:
            fcntl.flock(self._flush_lock, fcntl.LOCK_UN)

    def _flush(self, write: Callable[[PendingReading], None], batch: int) -> int:
        written = 0
        while readings := self.peek(batch):
            for reading in readings:
                write(reading)
                self.remove(reading)
                written += 1
        return written

    def close(self) -> None:
        with self._lock:
            # Readings in memory are lost with the process: one last try to put them in the file.
            try:
                while self._overflow:
                    self.dropped += self._insert(self._row(self._overflow[0]))
                    self._overflow.pop(0)
            except sqlite3.Error as exc:
                logger.error("event=spool_lost path=%s readings=%d error=%r", self.path, len(self._overflow), str(exc))
            self._db.close()
        if self._flush_lock is not None:
            self._flush_lock.close()
