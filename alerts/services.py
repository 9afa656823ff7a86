"""Alert side effects: storing alerts, state changes, pushing them live and queueing notifications.

The rules themselves are pure (alerts.engine); this module feeds them from the database and
applies their plan. Everything here runs inside the caller's transaction; pushes and deliveries are
deferred with `transaction.on_commit`, so nothing is announced that could still roll back.
"""

import logging
from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from accounts import audit
from crowd_monitor.realtime import publish
from locations.density import FeedStatus
from locations.models import Camera, CrowdLog, Location
from locations.state import broadcast_location, status_of

from . import notifiers
from .engine import (
    AlertKind,
    AlertSettings,
    Condition,
    CustomRule,
    Resolution,
    Sample,
    Severity,
    conditions_for_reading,
    plan,
)
from .models import Alert, AlertRule, Notification, NotificationChannel

logger = logging.getLogger(__name__)


class InvalidTransition(Exception):
    """The alert is not in a state that allows the requested change."""


def alert_settings(location: Location) -> AlertSettings:
    return AlertSettings(
        alert_threshold=location.alert_threshold,
        spike_percent=location.spike_percent,
        spike_window=timedelta(seconds=location.spike_window_seconds),
        spike_min_delta=location.spike_min_delta,
        cooldown=timedelta(seconds=location.alert_cooldown_seconds),
    )


def alert_update(alert: Alert) -> dict[str, Any]:
    from .serializers import AlertSerializer  # serializers import this module's model only

    return {"type": "alert_update", **AlertSerializer(alert).data}


class LocationAlerts:
    """A location's alert rules and open alerts, loaded once for the readings of one write and kept current as
    those readings raise, escalate and resolve alerts.

    Used by the write path inside its transaction, with the location row locked (so no other write of this
    location runs meanwhile); `evaluate` runs the rules for the readings that became the location's newest.
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self.settings = alert_settings(location)
        self.rules = [
            CustomRule(r.id, r.name, r.metric, r.comparison, r.threshold, Severity(r.severity))
            for r in AlertRule.objects.filter(location=location, enabled=True)
        ]
        self.open = {a.key: a for a in Alert.objects.filter(location=location, status__in=Alert.OPEN_STATUSES)}
        self._resolved: dict[str, Resolution | None] = {}  # key -> the last resolution of an alert of that key

    @property
    def any_open(self) -> bool:
        return bool(self.open)

    def evaluate(
        self, readings: Sequence[tuple[Sample, float]], now: datetime, since: Sequence[datetime | None] | None = None
    ) -> None:
        """Run the rules for each new newest reading of the location in turn: (sample, occupancy), oldest first.

        `since`, per reading: when a camera last joined the location's count as that reading was stored (default: the
        location's `cameras_changed_at`). A camera joining later in the same write must not hide a surge before it.
        """
        times = [sample.at for sample, _ in readings]
        if since is None:
            since = [self.location.cameras_changed_at] * len(times)
        lowest = self._lowest_in_windows(times, list(since))
        for (current, occupancy), low in zip(readings, lowest, strict=True):
            self._evaluate(current, occupancy, [low] if low is not None else [], now, fresh_data=True)

    def reassess(self, current: Sample, occupancy: float, now: datetime) -> None:
        """Judge the newest reading again after a settings change (capacity, thresholds): a capacity cut with the
        crowd unchanged may raise OVERCROWDING at once. It is not new data, so it neither raises a SPIKE (that rise
        was judged when it came, and may be long over) nor ends a STALE alert."""
        self._evaluate(current, occupancy, [], now, fresh_data=False)

    def _lowest_in_windows(self, times: list[datetime], since: list[datetime | None]) -> list[Sample | None]:
        """The lowest reading in the spike window ending at each time, and after its `since` if any (the spike rule
        compares with it).

        The database hands the readings of all the windows over in count order, a few at a time: the first one
        inside a window is that window's lowest, and usually the very first row answers every window. Sending every
        reading of the window here instead cost hundreds of rows per reading when cameras report every second.
        """
        window = self.settings.spike_window
        rows = CrowdLog.objects.filter(
            location=self.location, timestamp__gte=min(times) - window, timestamp__lte=max(times)
        )
        # Nothing up to a camera joining the count: it would make the larger count now seen look like a surge.
        if None not in since:
            rows = rows.filter(timestamp__gt=min(since))
        rows = rows.order_by("count", "timestamp").values_list("count", "timestamp")
        found: list[Sample | None] = [None] * len(times)
        start, size = 0, 8
        while None in found:
            chunk = list(rows[start : start + size])
            for count, at in chunk:
                for i, end in enumerate(times):
                    after = since[i]
                    if found[i] is None and end - window <= at <= end and (after is None or at > after):
                        found[i] = Sample(count, at)
            if len(chunk) < size:
                break
            start, size = start + size, size * 4
        return found

    def _evaluate(
        self, current: Sample, occupancy: float, history: list[Sample], now: datetime, fresh_data: bool
    ) -> None:
        settings = self.settings
        conditions = conditions_for_reading(current, occupancy, history, settings, self.rules)
        for key in {c.key for c in conditions} - self._resolved.keys():  # only keys whose condition holds: few
            last = (
                Alert.objects.filter(location=self.location, key=key, status=Alert.Status.RESOLVED)
                .order_by("-resolved_at")
                .values_list("resolved_at", "severity")
                .first()
            )
            self._resolved[key] = Resolution(last[0], Severity(last[1])) if last and last[0] else None
        last_resolved = {k: r for k, r in self._resolved.items() if r is not None}
        todo = plan(
            conditions, {k: Severity(a.severity) for k, a in self.open.items()}, last_resolved, now, settings.cooldown
        )
        # The write path broadcasts the location itself once everything here is applied.
        for condition in todo.to_raise:
            alert = raise_alert(
                self.location, condition, count=current.count, occupancy=occupancy, at=now, push_location=False
            )
            if alert is None:  # a concurrent writer raised it first
                alert = Alert.objects.filter(
                    location=self.location, key=condition.key, status__in=Alert.OPEN_STATUSES
                ).first()
            if alert is not None:
                self.open[condition.key] = alert
        for condition in todo.to_escalate:
            _escalate(self.open[condition.key], condition, count=current.count, occupancy=occupancy)
        # Fresh data ends a STALE alert by itself: the condition it reported is over.
        stale = self.open.pop(AlertKind.STALE, None) if fresh_data else None
        if stale is not None:
            # An operator may have resolved it since it was loaded: closed either way, and the reading must be stored.
            with suppress(InvalidTransition):
                _transition(
                    stale, Alert.Status.RESOLVED, list(Alert.OPEN_STATUSES), None, "Readings arrived again.", False
                )
            self._resolved[AlertKind.STALE] = Resolution(now, Severity(stale.severity))


def raise_alert(
    location: Location,
    condition: Condition,
    *,
    count: int | None = None,
    occupancy: float | None = None,
    camera: Camera | None = None,
    at: datetime | None = None,
    push_location: bool = True,
) -> Alert | None:
    """Store a new alert, unless one with the same key is already open (then None)."""
    try:
        with transaction.atomic():  # a savepoint: losing the race for the key must not abort the caller
            alert = Alert.objects.create(
                location=location,
                camera=camera,
                rule_id=condition.rule_id,
                kind=condition.kind,
                key=condition.key,
                severity=condition.severity,
                message=condition.message,
                count=count,
                occupancy_percentage=occupancy,
                triggered_at=at or timezone.now(),
            )
    except IntegrityError:
        return None
    logger.warning("Alert %s raised at %s: %s", alert.kind, location, alert.message)
    _queue_notifications(alert, "triggered")
    _announce(alert, push_location)
    return alert


def _escalate(alert: Alert, condition: Condition, *, count: int, occupancy: float) -> None:
    """A more severe condition for an open alert: its severity rises and it is ACTIVE again.

    An acknowledgement was given for the lesser danger: a place that went from 85 % to over capacity must be seen and
    acknowledged anew, not stay quietly "acknowledged" (who acknowledged it stays in the audit log).
    """
    # Locked and re-read: an operator may have acknowledged or resolved it since the location's alerts were loaded.
    before = Alert.objects.select_for_update().filter(pk=alert.pk).values("status", "severity").first()
    if before is None or before["status"] not in Alert.OPEN_STATUSES:
        return  # resolved meanwhile: the next reading raises a new alert if the condition still holds
    Alert.objects.filter(pk=alert.pk).update(
        severity=condition.severity,
        message=condition.message,
        count=count,
        occupancy_percentage=occupancy,
        status=Alert.Status.ACTIVE,
        acknowledged_at=None,
        acknowledged_by=None,
        updated_at=timezone.now(),
    )
    alert.refresh_from_db()
    changes = {"severity": {"old": before["severity"], "new": alert.severity}}
    if before["status"] != alert.status:
        changes["status"] = {"old": before["status"], "new": alert.status}
    audit.record("escalate", alert, changes, system=True)
    logger.warning("Alert %s at %s escalated to %s", alert.kind, alert.location_id, alert.severity)
    _queue_notifications(alert, "escalated")
    _announce(alert, push_location=False)  # the write path broadcasts the location itself


def acknowledge(alert: Alert, user: AbstractBaseUser, note: str = "") -> Alert:
    return _transition(alert, Alert.Status.ACKNOWLEDGED, [Alert.Status.ACTIVE], user, note)


def resolve(alert: Alert, user: AbstractBaseUser | None, note: str = "") -> Alert:
    return _transition(alert, Alert.Status.RESOLVED, list(Alert.OPEN_STATUSES), user, note)


def resolve_by_system(alert: Alert, note: str) -> Alert:
    return resolve(alert, None, note)


def _transition(
    alert: Alert,
    to: str,
    allowed_from: list[str],
    user: AbstractBaseUser | None,
    note: str,
    push_location: bool = True,
) -> Alert:
    """Change state with a conditional UPDATE, so two operators clicking at once cannot both win."""
    now = timezone.now()
    changes: dict[str, Any] = {"status": to, "updated_at": now}
    if to == Alert.Status.ACKNOWLEDGED:
        changes.update(acknowledged_at=now, acknowledged_by=user)
    else:
        changes.update(resolved_at=now, resolved_by=user)
    if note:
        changes["note"] = note
    with transaction.atomic():
        before = Alert.objects.filter(pk=alert.pk).values("status", "note").first()
        updated = Alert.objects.filter(pk=alert.pk, status__in=allowed_from).update(**changes)
        if not updated:
            current = Alert.objects.filter(pk=alert.pk).values_list("status", flat=True).first()
            raise InvalidTransition(f"Alert {alert.pk} is {current or 'gone'}; cannot change it to {to}.")
        alert.refresh_from_db()
        audit_changes = {"status": {"old": before and before["status"], "new": to}}
        if note:
            audit_changes["note"] = {"old": before and before["note"], "new": note}
        action = "acknowledge" if to == Alert.Status.ACKNOWLEDGED else "resolve"
        audit.record(action, alert, audit_changes, actor=user, system=user is None)
        logger.info("Alert %s %s by %s", alert.pk, to.lower(), getattr(user, "username", "the system"))
        _announce(alert, push_location)
    return alert


def _queue_notifications(alert: Alert, event: str) -> None:
    """Write one outbox row per matching channel, in the alert's own transaction: never lost."""
    ranks = [s for s in Severity if s.rank <= Severity(alert.severity).rank]
    channels = (
        NotificationChannel.objects.filter(enabled=True, min_severity__in=ranks)
        .filter(Q(locations=None) | Q(locations=alert.location_id))
        .distinct()
    )
    ids = [Notification.objects.create(alert=alert, channel=c, event=event).pk for c in channels]
    if ids:
        transaction.on_commit(lambda: notifiers.dispatch(ids))


def _announce(alert: Alert, push_location: bool) -> None:
    """After commit: push the alert, and the location's state whose `alert` flag may have changed."""

    def push() -> None:
        fresh = Alert.objects.select_related("location", "acknowledged_by", "resolved_by").get(pk=alert.pk)
        publish(fresh.location_id, alert_update(fresh))
        if push_location:
            broadcast_location(fresh.location)

    transaction.on_commit(push)


def check_stale_locations(now: datetime | None = None) -> list[Alert]:
    """Raise a STALE alert for each active location whose readings stopped; returns the new alerts.

    Pushing the alert also pushes the location's state, which now says "no data" instead of the
    last level: silence must never look like a calm LOW.
    """
    now = now or timezone.now()
    raised = []
    # Exists(), not exclude(alerts__key=..., alerts__status__in=...): across a multi-valued relation those two
    # conditions may match two different alerts, so any earlier STALE plus any other open alert hid the location.
    open_stale = Alert.objects.filter(location=OuterRef("pk"), key=AlertKind.STALE, status__in=Alert.OPEN_STATUSES)
    candidates = Location.objects.filter(is_active=True, last_reading_at__isnull=False).exclude(Exists(open_stale))
    for candidate in candidates:
        if status_of(candidate, now) != FeedStatus.STALE:
            continue
        with transaction.atomic():
            # Judged again under the location's lock, which the write path holds while it stores a reading: a
            # reading committed since the candidates were read must not be followed by a STALE alert it cannot close.
            location = Location.objects.select_for_update().get(pk=candidate.pk)
            if status_of(location, now) != FeedStatus.STALE:
                continue
            seconds = int((now - location.last_reading_at).total_seconds())
            condition = Condition(
                key=AlertKind.STALE,
                kind=AlertKind.STALE,
                severity=Severity.WARNING,
                message=f"No reading for {seconds} s (expected every {location.expected_interval_seconds} s).",
            )
            alert = raise_alert(location, condition, at=now)
        if alert is not None:
            raised.append(alert)
    return raised
