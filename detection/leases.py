"""Sharing cameras between detection workers (processes, on one machine or many) through the database.

Each camera row carries a lease: `leased_by` (a worker's name) and `lease_expires_at` (database time, so clocks
of different machines never matter). A worker

- registers itself in `detection.Worker` and renews its heartbeat and all its leases every `lease / 6` seconds;
- claims free or expired cameras up to its fair share, `ceil(cameras / live workers)` (capped by
  `max_cameras`), with `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent claimers never wait
  for or steal from each other, and in any case with a conditional UPDATE that only takes a row whose lease
  is still free (which is what makes it safe on SQLite, where there is no row locking);
- gives back cameras above its share when other workers join (between two passes, `settle()`, so that no
  sample of a camera given back is still being taken), cameras that were disabled, and all of its cameras when
  it stops (SIGTERM).

A worker that dies stops renewing: its leases expire after at most one lease period and the others take its
cameras at their next heartbeat (so within lease * 7/6). At most one worker samples a camera at a time: a
worker samples only cameras it holds, and stops sampling a camera when it could not renew its lease in time
while the database was reachable (`may_sample`). While the database is unreachable nobody can take a lease
over, so a worker keeps sampling (and spooling) the cameras it holds.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from locations.models import Camera

from .faults import Database, DatabaseDown, reset_connection
from .models import Worker

logger = logging.getLogger(__name__)

# Workers whose heartbeat is older than this many lease periods are removed from the registry.
FORGET_AFTER_LEASES = 3


def worker_name() -> str:
    """host:pid:random — unique per process, readable in admin and in `Camera.leased_by`."""
    return f"{socket.gethostname()[:150]}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseKeeper:
    """The cameras this worker holds, kept current by `beat()` (called by a heartbeat thread, see `start`)."""

    def __init__(
        self,
        name: str | None = None,
        lease_seconds: float = 30.0,
        *,
        max_cameras: int | None = None,
        location_id: int | None = None,
        stats: Callable[[], dict[str, Any]] | None = None,
        database: Database | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.name = name or worker_name()
        self.lease = timedelta(seconds=lease_seconds)
        self.lease_seconds = lease_seconds
        self.max_cameras = max_cameras
        self.location_id = location_id
        self.stats = stats or dict
        self.database = database or Database()
        self.started_at = timezone.now()
        self._lock = threading.Lock()
        self._held: frozenset[int] = frozenset()
        self._surplus: frozenset[int] = frozenset()  # to give back at the next settle()
        self._valid_until = 0.0  # monotonic time until which the held leases are known to be ours
        self._thread: threading.Thread | None = None
        self.beats = 0

    @property
    def tick(self) -> float:
        return self.lease_seconds / 6

    @property
    def held(self) -> frozenset[int]:
        """The cameras to sample (held, less those about to be given back)."""
        with self._lock:
            return self._held - self._surplus

    def may_sample(self, camera_id: int) -> bool:
        """Whether this worker may sample the camera now: it holds it, and its lease is not known to have lapsed.

        While the database is unreachable nobody else can take the lease over, so the cameras held stay ours.
        """
        with self._lock:
            if camera_id not in self._held or camera_id in self._surplus:
                return False
            return time.monotonic() < self._valid_until or not self.database.up

    # --- the heartbeat ------------------------------------------------------------------------------------------

    def beat(self) -> frozenset[int]:
        """Register, renew, give back and claim; returns the cameras held. Raises DatabaseDown when unreachable."""
        started = time.monotonic()
        held, surplus = self.database.call(self._beat)
        with self._lock:
            self._held = held
            self._surplus = surplus
            # Renewed in the database at some point after `started`: valid for a lease from then, minus a margin
            # for the time the heartbeat itself took.
            self._valid_until = started + self.lease_seconds - (time.monotonic() - started)
        self.beats += 1
        return held

    def _beat(self) -> tuple[frozenset[int], frozenset[int]]:
        mine = Camera.objects.filter(leased_by=self.name)
        eligible = self._eligible()
        # Cameras disabled (or whose location was deactivated) since they were claimed.
        mine.exclude(pk__in=eligible.values("pk")).update(leased_by="", lease_expires_at=None)
        mine.update(lease_expires_at=Now() + self.lease)
        held = set(mine.values_list("pk", flat=True))
        share = self.fair_share(eligible.count())
        surplus: frozenset[int] = frozenset()
        if len(held) > share:
            surplus = frozenset(sorted(held)[share:])  # given back by settle(), between two passes
        elif len(held) < share:
            claimed = self._claim(eligible, share - len(held))
            if claimed:
                logger.info("event=lease_claim worker=%s cameras=%s share=%d", self.name, sorted(claimed), share)
        Worker.objects.filter(heartbeat_at__lt=Now() - FORGET_AFTER_LEASES * self.lease).delete()
        held = frozenset(mine.values_list("pk", flat=True))
        self._register(len(held))
        return held, surplus

    def settle(self) -> None:
        """Give back the cameras above this worker's share (call between passes: none of them is being sampled)."""
        with self._lock:
            surplus = self._surplus
        if not surplus:
            return

        def release() -> None:
            Camera.objects.filter(pk__in=surplus, leased_by=self.name).update(leased_by="", lease_expires_at=None)

        self.database.call(release)
        with self._lock:
            self._held -= surplus
            self._surplus -= surplus
        logger.info("event=lease_rebalance worker=%s released=%s", self.name, sorted(surplus))

    def _eligible(self) -> QuerySet[Camera]:
        cameras = Camera.objects.filter(enabled=True, location__is_active=True)
        if self.location_id is not None:
            cameras = cameras.filter(location_id=self.location_id)
        return cameras

    def _register(self, cameras: int) -> None:
        fields = {"heartbeat_at": Now(), "cameras": cameras, "stats": self.stats()}
        if not Worker.objects.filter(name=self.name).update(**fields):
            Worker.objects.create(
                name=self.name,
                hostname=socket.gethostname()[:200],
                pid=os.getpid(),
                started_at=self.started_at,
                **fields,
            )

    def fair_share(self, cameras: int) -> int:
        live = Worker.objects.filter(heartbeat_at__gte=Now() - self.lease).exclude(name=self.name).count() + 1
        share = math.ceil(cameras / live)
        if self.max_cameras is not None:
            share = min(share, self.max_cameras)
        return share

    def _claim(self, eligible: QuerySet[Camera], wanted: int) -> set[int]:
        free = eligible.filter(Q(leased_by="") | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=Now()))
        free = free.exclude(leased_by=self.name)
        with transaction.atomic():
            # PostgreSQL: lock the candidate rows, skipping rows another worker is claiming right now. SQLite has
            # no row locks (Django leaves FOR UPDATE out there); its write transactions are serialised instead.
            candidates = list(
                free.select_for_update(skip_locked=True, of=("self",))
                .order_by("pk")
                .values_list("pk", flat=True)[:wanted]
            )
            if not candidates:
                return set()
            # The conditional UPDATE takes only rows still free: never a lease another worker renewed or took.
            Camera.objects.filter(pk__in=candidates).filter(
                Q(leased_by="") | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=Now())
            ).update(leased_by=self.name, lease_expires_at=Now() + self.lease)
            return set(Camera.objects.filter(pk__in=candidates, leased_by=self.name).values_list("pk", flat=True))

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def start(self, stop: threading.Event) -> None:
        """Beat every `tick` seconds in a daemon thread until `stop` is set (call `beat()` once first)."""

        def run() -> None:
            while not stop.wait(self.tick):
                try:
                    self.beat()
                except DatabaseDown:
                    pass  # logged once by Database; the cameras held stay ours while nobody can take them
                except Exception:
                    logger.exception("event=heartbeat_failed worker=%s", self.name)
            reset_connection()

        self._thread = threading.Thread(target=run, name=f"lease-heartbeat {self.name}", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def release_all(self) -> int:
        """Give every camera back and leave the registry (on a clean stop). Returns how many were released."""

        def release() -> int:
            released = Camera.objects.filter(leased_by=self.name).update(leased_by="", lease_expires_at=None)
            Worker.objects.filter(name=self.name).delete()
            return released

        released = self.database.call(release)
        with self._lock:
            self._held = frozenset()
        logger.info("event=lease_release worker=%s released=%d", self.name, released)
        return released
