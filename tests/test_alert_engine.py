"""The alert rules as pure functions: conditions for a reading and the plan given open alerts (no database)."""

from datetime import UTC, datetime, timedelta

import pytest

from alerts.engine import (
    AlertKind,
    AlertSettings,
    Comparison,
    Condition,
    CustomRule,
    Metric,
    Resolution,
    Sample,
    Severity,
    conditions_for_reading,
    custom,
    overcrowding,
    plan,
    spike,
)

NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
DEFAULTS = AlertSettings()


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


# --- overcrowding --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("occupancy", [0.0, 50.0, 79.9])
def test_below_the_alert_threshold_is_not_overcrowding(occupancy: float) -> None:
    assert overcrowding(occupancy, DEFAULTS) is None


@pytest.mark.parametrize(
    ("occupancy", "severity"),
    [(80.0, Severity.WARNING), (99.9, Severity.WARNING), (100.0, Severity.CRITICAL), (180.0, Severity.CRITICAL)],
)
def test_overcrowding_severity(occupancy: float, severity: Severity) -> None:
    condition = overcrowding(occupancy, DEFAULTS)
    assert condition is not None
    assert condition.kind == AlertKind.OVERCROWDING
    assert condition.key == "OVERCROWDING"
    assert condition.severity == severity
    assert f"{occupancy:.1f}%" in condition.message


def test_overcrowding_uses_the_locations_threshold() -> None:
    strict = AlertSettings(alert_threshold=60.0)
    assert overcrowding(59.9, strict) is None
    condition = overcrowding(60.0, strict)
    assert condition is not None and condition.severity == Severity.WARNING
    lenient = AlertSettings(alert_threshold=95.0)
    assert overcrowding(90.0, lenient) is None


# --- spike ---------------------------------------------------------------------------------------------------------


def spike_from(before: int, after: int, *, seconds_apart: float = 10, settings: AlertSettings = DEFAULTS):
    """A reading of `after` now, with one earlier reading of `before` and the current one in the history."""
    current = Sample(after, NOW)
    return spike(current, [Sample(before, ago(seconds_apart)), current], settings)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (2, 3),  # +50 % but only one more person
        (10, 14),  # +40 % but only 4 more people
        (100, 125),  # 25 new people but only +25 %
        (100, 130),  # exactly +30 % is not "more than 30 %"
        (50, 50),
        (50, 20),  # a fall is never a spike
        (0, 4),  # from nobody, fewer than the minimum delta
    ],
)
def test_not_a_spike(before: int, after: int) -> None:
    assert spike_from(before, after) is None


@pytest.mark.parametrize(("before", "after"), [(10, 15), (100, 131), (0, 5), (3, 40)])
def test_spike(before: int, after: int) -> None:
    condition = spike_from(before, after)
    assert condition is not None
    assert condition.kind == AlertKind.SPIKE
    assert condition.key == "SPIKE"
    assert condition.severity == Severity.WARNING
    assert f"from {before} to {after}" in condition.message


def test_spike_compares_with_the_lowest_count_in_the_window() -> None:
    current = Sample(26, NOW)
    history = [Sample(20, ago(50)), Sample(24, ago(20)), Sample(25, ago(5)), current]
    # +6 over the lowest (20) is 30 %: not more than 30 %; one more person makes it a spike.
    assert spike(current, history, DEFAULTS) is None
    current = Sample(27, NOW)
    condition = spike(current, [*history[:-1], current], DEFAULTS)
    assert condition is not None and "from 20 to 27" in condition.message


def test_readings_older_than_the_window_are_ignored() -> None:
    current = Sample(40, NOW)
    history = [Sample(0, ago(61)), Sample(0, ago(120)), Sample(35, ago(30)), current]
    assert spike(current, history, DEFAULTS) is None
    # The same low reading inside the window (exactly at its start) does count.
    history = [Sample(0, ago(60)), Sample(35, ago(30)), current]
    assert spike(current, history, DEFAULTS) is not None


def test_readings_after_the_current_one_are_ignored() -> None:
    """A back-filled reading is evaluated against what came before it, not after."""
    current = Sample(40, ago(30))
    history = [Sample(0, NOW), current]
    assert spike(current, history, DEFAULTS) is None


def test_spike_settings_are_per_location() -> None:
    sensitive = AlertSettings(spike_percent=10.0, spike_min_delta=2, spike_window=timedelta(seconds=300))
    assert spike_from(10, 12, seconds_apart=200, settings=sensitive) is not None  # +20 %, +2, within 5 min
    assert spike_from(10, 12, seconds_apart=200) is None  # outside the default 60 s window, and too small
    assert spike_from(10, 11, settings=sensitive) is None  # +1 person only
    assert spike_from(100, 110, settings=sensitive) is None  # exactly +10 %


@pytest.mark.parametrize(("percent", "before", "after"), [(7, 100, 107), (14, 50, 57), (28, 25, 32), (0.5, 1000, 1005)])
def test_a_rise_of_exactly_the_spike_percentage_is_not_more_than_it(percent: float, before: int, after: int) -> None:
    # In floating point 7 / 100 * 100 is 7.000000000000001: these used to be spikes.
    settings = AlertSettings(spike_percent=percent, spike_min_delta=1)
    assert spike_from(before, after, settings=settings) is None
    assert spike_from(before, after + 1, settings=settings) is not None


def test_spike_without_history_is_none() -> None:
    assert spike(Sample(500, NOW), [], DEFAULTS) is None


# --- custom rules --------------------------------------------------------------------------------------------------


def rule(metric: Metric, comparison: Comparison, threshold: float, severity: Severity = Severity.INFO) -> CustomRule:
    return CustomRule(
        id=7, name="My rule", metric=metric, comparison=comparison, threshold=threshold, severity=severity
    )


@pytest.mark.parametrize(
    ("comparison", "fires_at"),
    [
        (Comparison.GT, {51}),
        (Comparison.GTE, {50, 51}),
        (Comparison.LT, {49}),
        (Comparison.LTE, {49, 50}),
    ],
)
def test_custom_rule_on_count(comparison: Comparison, fires_at: set[int]) -> None:
    rules = [rule(Metric.COUNT, comparison, 50, Severity.CRITICAL)]
    for count in (49, 50, 51):
        # occupancy is deliberately far from the threshold: the rule must look at the count
        found = custom(count, 5.0, rules)
        assert bool(found) == (count in fires_at), (comparison, count)
        if found:
            (condition,) = found
            assert condition.kind == AlertKind.CUSTOM
            assert condition.key == "CUSTOM:7"
            assert condition.rule_id == 7
            assert condition.severity == Severity.CRITICAL
            assert "My rule" in condition.message


@pytest.mark.parametrize(
    ("comparison", "fires_at"),
    [
        (Comparison.GT, {60.1}),
        (Comparison.GTE, {60.0, 60.1}),
        (Comparison.LT, {59.9}),
        (Comparison.LTE, {59.9, 60.0}),
    ],
)
def test_custom_rule_on_occupancy(comparison: Comparison, fires_at: set[float]) -> None:
    rules = [rule(Metric.OCCUPANCY, comparison, 60.0)]
    for occupancy in (59.9, 60.0, 60.1):
        found = custom(1000, occupancy, rules)  # count far above 60: the rule must look at occupancy
        assert bool(found) == (occupancy in fires_at), (comparison, occupancy)
        if found:
            assert found[0].severity == Severity.INFO
            assert "occupancy" in found[0].message


def test_each_custom_rule_has_its_own_key() -> None:
    rules = [
        CustomRule(1, "Many", Metric.COUNT, Comparison.GTE, 10, Severity.WARNING),
        CustomRule(2, "Very many", Metric.COUNT, Comparison.GTE, 100, Severity.CRITICAL),
        CustomRule(3, "Almost empty", Metric.OCCUPANCY, Comparison.LT, 5, Severity.INFO),
    ]
    assert [c.key for c in custom(150, 75.0, rules)] == ["CUSTOM:1", "CUSTOM:2"]
    assert [c.key for c in custom(50, 25.0, rules)] == ["CUSTOM:1"]
    assert [c.key for c in custom(1, 0.5, rules)] == ["CUSTOM:3"]


def test_conditions_for_reading_combines_every_rule() -> None:
    current = Sample(170, NOW)
    history = [Sample(100, ago(30)), current]  # +70 %, +70 people
    rules = [CustomRule(4, "Over 150", Metric.COUNT, Comparison.GT, 150, Severity.CRITICAL)]
    found = conditions_for_reading(current, 85.0, history, DEFAULTS, rules)
    assert {c.key: c.severity for c in found} == {
        "OVERCROWDING": Severity.WARNING,
        "SPIKE": Severity.WARNING,
        "CUSTOM:4": Severity.CRITICAL,
    }
    calm = Sample(40, NOW)
    assert conditions_for_reading(calm, 20.0, [Sample(39, ago(5)), calm], DEFAULTS, rules) == []


# --- plan: de-duplication, escalation, cooldown --------------------------------------------------------------------

WARN = Condition(key="OVERCROWDING", kind=AlertKind.OVERCROWDING, severity=Severity.WARNING, message="w")
CRIT = Condition(key="OVERCROWDING", kind=AlertKind.OVERCROWDING, severity=Severity.CRITICAL, message="c")
SPIKE = Condition(key="SPIKE", kind=AlertKind.SPIKE, severity=Severity.WARNING, message="s")
COOLDOWN = timedelta(seconds=300)


def test_new_conditions_are_raised() -> None:
    result = plan([WARN, SPIKE], {}, {}, NOW, COOLDOWN)
    assert result.to_raise == [WARN, SPIKE]
    assert result.to_escalate == []


def test_an_open_key_is_not_raised_again() -> None:
    result = plan([WARN, SPIKE], {"OVERCROWDING": Severity.WARNING}, {}, NOW, COOLDOWN)
    assert result.to_raise == [SPIKE]
    assert result.to_escalate == []


def test_open_alert_escalates_to_a_higher_severity() -> None:
    result = plan([CRIT], {"OVERCROWDING": Severity.WARNING}, {}, NOW, COOLDOWN)
    assert result.to_raise == []
    assert result.to_escalate == [CRIT]
    info_open = plan([WARN], {"OVERCROWDING": Severity.INFO}, {}, NOW, COOLDOWN)
    assert info_open.to_escalate == [WARN]


@pytest.mark.parametrize(
    ("open_severity", "condition"),
    [(Severity.WARNING, WARN), (Severity.CRITICAL, CRIT), (Severity.CRITICAL, WARN)],
)
def test_no_escalation_to_equal_or_lower_severity(open_severity: Severity, condition: Condition) -> None:
    result = plan([condition], {"OVERCROWDING": open_severity}, {}, NOW, COOLDOWN)
    assert result.to_raise == []
    assert result.to_escalate == []


def test_open_severity_may_come_as_plain_strings_from_the_database() -> None:
    result = plan([CRIT], {"OVERCROWDING": "WARNING"}, {}, NOW, COOLDOWN)
    assert result.to_escalate == [CRIT]


@pytest.mark.parametrize(("resolved_ago", "raised"), [(1, False), (299, False), (300, True), (3600, True)])
def test_cooldown_after_resolution(resolved_ago: int, raised: bool) -> None:
    result = plan([WARN], {}, {"OVERCROWDING": Resolution(ago(resolved_ago), Severity.WARNING)}, NOW, COOLDOWN)
    assert result.to_raise == ([WARN] if raised else [])
    assert result.to_escalate == []


def test_cooldown_is_per_key() -> None:
    result = plan([WARN, SPIKE], {}, {"SPIKE": Resolution(ago(10), Severity.WARNING)}, NOW, COOLDOWN)
    assert result.to_raise == [WARN]


def test_zero_cooldown_raises_again_at_once() -> None:
    result = plan([WARN], {}, {"OVERCROWDING": Resolution(NOW, Severity.WARNING)}, NOW, timedelta(0))
    assert result.to_raise == [WARN]


def test_the_cooldown_never_holds_back_something_worse_than_what_was_resolved() -> None:
    # An operator resolves the 85 % WARNING; a minute later the place is at 150 %: CRITICAL is raised at once
    # (it used to wait out the five-minute cooldown).
    warning_resolved = {"OVERCROWDING": Resolution(ago(60), Severity.WARNING)}
    assert plan([CRIT], {}, warning_resolved, NOW, COOLDOWN).to_raise == [CRIT]
    assert plan([WARN], {}, warning_resolved, NOW, COOLDOWN).to_raise == []
    critical_resolved = {"OVERCROWDING": Resolution(ago(60), Severity.CRITICAL)}
    assert plan([CRIT], {}, critical_resolved, NOW, COOLDOWN).to_raise == []
