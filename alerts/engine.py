"""Alert rules: pure functions of (location settings, recent readings, open alerts), no database.

`conditions_for_reading` says which alert conditions hold for a reading; `plan` turns those into
what to do given the alerts already open and the recent resolutions (one open alert per key,
cooldown after resolution, escalation when an open alert's condition gets more severe).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class AlertKind(StrEnum):
    OVERCROWDING = "OVERCROWDING"
    SPIKE = "SPIKE"
    CUSTOM = "CUSTOM"
    CAMERA_OFFLINE = "CAMERA_OFFLINE"
    STALE = "STALE"


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Metric(StrEnum):
    COUNT = "count"
    OCCUPANCY = "occupancy_percentage"


class Comparison(StrEnum):
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


_COMPARE = {
    Comparison.GT: (lambda value, threshold: value > threshold, ">"),
    Comparison.GTE: (lambda value, threshold: value >= threshold, "≥"),
    Comparison.LT: (lambda value, threshold: value < threshold, "<"),
    Comparison.LTE: (lambda value, threshold: value <= threshold, "≤"),
}


@dataclass(frozen=True)
class AlertSettings:
    alert_threshold: float = 80.0
    spike_percent: float = 30.0
    spike_window: timedelta = timedelta(seconds=60)
    spike_min_delta: int = 5
    cooldown: timedelta = timedelta(seconds=300)


@dataclass(frozen=True)
class Sample:
    count: int
    at: datetime


@dataclass(frozen=True)
class CustomRule:
    id: int
    name: str
    metric: Metric
    comparison: Comparison
    threshold: float
    severity: Severity


@dataclass(frozen=True)
class Condition:
    """An alert condition that holds now. `key` identifies "the same alert" for de-duplication."""

    key: str
    kind: AlertKind
    severity: Severity
    message: str
    rule_id: int | None = None


@dataclass(frozen=True)
class Resolution:
    """When the last alert of a key was resolved, and how severe it was then."""

    at: datetime
    severity: Severity


@dataclass(frozen=True)
class Plan:
    to_raise: list[Condition] = field(default_factory=list)
    to_escalate: list[Condition] = field(default_factory=list)


def overcrowding(occupancy: float, settings: AlertSettings) -> Condition | None:
    if occupancy < settings.alert_threshold:
        return None
    severity = Severity.CRITICAL if occupancy >= 100 else Severity.WARNING
    return Condition(
        key=AlertKind.OVERCROWDING,
        kind=AlertKind.OVERCROWDING,
        severity=severity,
        message=f"Occupancy {occupancy:.1f}% is at or above the alert threshold of {settings.alert_threshold:g}%.",
    )


def spike(current: Sample, history: Iterable[Sample], settings: AlertSettings) -> Condition | None:
    """A rise of more than `spike_percent` over the lowest count in the window, by at least `spike_min_delta`.

    From zero people any rise of at least the minimum delta counts as a spike.
    """
    window_start = current.at - settings.spike_window
    counts = [s.count for s in history if window_start <= s.at <= current.at]
    if not counts:
        return None
    lowest = min(counts)
    rise = current.count - lowest
    if rise < settings.spike_min_delta:
        return None
    # Multiplied out, not divided: 100 -> 107 with a 7 % limit is exactly 7 %, not the 7.000000000000001 % of 7/100*100.
    if lowest > 0 and rise * 100 <= settings.spike_percent * lowest:
        return None
    seconds = int(settings.spike_window.total_seconds())
    return Condition(
        key=AlertKind.SPIKE,
        kind=AlertKind.SPIKE,
        severity=Severity.WARNING,
        message=f"Count rose from {lowest} to {current.count} (+{rise}) within {seconds} s.",
    )


def custom(count: int, occupancy: float, rules: Iterable[CustomRule]) -> list[Condition]:
    conditions = []
    for rule in rules:
        value = count if rule.metric == Metric.COUNT else occupancy
        compare, symbol = _COMPARE[rule.comparison]
        if compare(value, rule.threshold):
            label = "count" if rule.metric == Metric.COUNT else "occupancy %"
            conditions.append(
                Condition(
                    key=f"{AlertKind.CUSTOM}:{rule.id}",
                    kind=AlertKind.CUSTOM,
                    severity=rule.severity,
                    message=f"{rule.name}: {label} {value:g} {symbol} {rule.threshold:g}.",
                    rule_id=rule.id,
                )
            )
    return conditions


def conditions_for_reading(
    current: Sample,
    occupancy: float,
    history: Sequence[Sample],
    settings: AlertSettings,
    rules: Iterable[CustomRule] = (),
) -> list[Condition]:
    """Every alert condition that holds for this reading. `history` are earlier readings of the location."""
    found = [overcrowding(occupancy, settings), spike(current, history, settings)]
    return [c for c in found if c is not None] + custom(current.count, occupancy, rules)


def plan(
    conditions: Iterable[Condition],
    open_alerts: Mapping[str, Severity],
    last_resolved: Mapping[str, Resolution],
    now: datetime,
    cooldown: timedelta,
) -> Plan:
    """Which conditions become new alerts and which escalate an open one.

    One open alert per key: a condition whose key is open only escalates it, and only when more
    severe. A key resolved less than `cooldown` ago is not raised again at the same or a lower severity;
    the cooldown quiets a repeat of what an operator just dealt with, never something worse (a crowd going
    from 85 % to 150 % a minute after the 85 % alert was resolved is raised at once).
    """
    result = Plan()
    for condition in conditions:
        open_severity = open_alerts.get(condition.key)
        if open_severity is not None:
            if condition.severity.rank > Severity(open_severity).rank:
                result.to_escalate.append(condition)
            continue
        resolved = last_resolved.get(condition.key)
        if (
            resolved is not None
            and now - resolved.at < cooldown
            and condition.severity.rank <= Severity(resolved.severity).rank
        ):
            continue
        result.to_raise.append(condition)
    return result
