"""Telling a database that is unreachable from a bug, and noticing when it is back.

The detection worker talks to the database from three threads (sampling, writing, heartbeat). Each uses
`Database` to run a call: a connection-level failure (PostgreSQL restarting, the network gone, SQLite locked
for too long) closes that thread's connection, so the next call reconnects, and marks the database down until
a call succeeds again. Transitions are logged once, not for every failed call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

# What a lost or refused connection raises through Django; anything else is a bug or bad data, not an outage.
DB_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

T = TypeVar("T")


class DatabaseDown(Exception):
    """The call could not reach the database (the original error is the cause)."""


class Database:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._up = True
        self.outages = 0

    @property
    def up(self) -> bool:
        return self._up

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` (database work of this thread); raise DatabaseDown when the database cannot be reached."""
        try:
            result = fn()
        except DB_ERRORS as exc:
            reset_connection()
            self.failed(exc)
            raise DatabaseDown(str(exc)) from exc
        self.ok()
        return result

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            was_up, self._up = self._up, False
            if was_up:
                self.outages += 1
        if was_up:
            logger.warning("event=db_down error=%r: readings are kept in the spool until it is back", str(exc)[:300])

    def ok(self) -> None:
        with self._lock:
            was_down, self._up = not self._up, True
        if was_down:
            logger.warning("event=db_up: the database is reachable again")


def reset_connection() -> None:
    """Drop this thread's database connection (it may be dead); the next query opens a fresh one."""
    try:
        connection.close()
    except Exception:  # closing a broken connection may itself fail; it is gone either way
        logger.debug("closing a broken database connection failed", exc_info=True)
