"""The one write path (`record_reading`, `refresh_location`) and the alert services, against the real database."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditLog
from alerts import services
from alerts.engine import AlertKind, Condition, Sample, Severity
from alerts.models import Alert, AlertRule, Notification
from alerts.services import LocationAlerts
from locations.models import CrowdLog, DensitySnapshot, Location
from locations.serializers import LocationSerializer
from locations.services import InvalidReading, NewReading, record_reading, record_readings, refresh_location

pytestmark = pytest.mark.django_db


@pytest.fixture
def gate() -> Location:
    return Location.objects.create(name="Gate A", capacity_limit=200)


def fresh(location: Location) -> Location:
    return Location.objects.get(pk=location.pk)


def open_alerts(location: Location, kind: str | None = None) -> list[Alert]:
    alerts = Alert.objects.filter(location=location, status__in=Alert.OPEN_STATUSES)
    if kind:
        alerts = alerts.filter(kind=kind)
    return list(alerts)


# --- storing a reading ---------------------------------------------------------------------------------------------


def test_reading_is_stored_with_capacity_occupancy_and_level(gate: Location) -> None:
    at = timezone.now() - timedelta(seconds=2)
    log = record_reading(gate, 145, source=CrowdLog.Source.API, at=at, details={"frame": 3})

    stored = CrowdLog.objects.get()
    assert stored.pk == log.pk
    assert (stored.location_id, stored.count, stored.capacity_limit) == (gate.pk, 145, 200)
    assert stored.occupancy_percentage == 72.5
    assert stored.density_level == "HIGH"
    assert stored.timestamp == at
    assert stored.source == "api"
    assert stored.details == {"frame": 3}


def test_reading_updates_the_current_state(gate: Location) -> None:
    record_reading(gate, 50, source=CrowdLog.Source.CAMERA)
    state = fresh(gate)
    assert (state.current_count, state.occupancy_percentage, state.density_level) == (50, 25.0, "LOW")
    assert timezone.now() - state.last_reading_at < timedelta(seconds=5)

    record_reading(gate, 100, source=CrowdLog.Source.CAMERA)
    state = fresh(gate)
    assert (state.current_count, state.occupancy_percentage, state.density_level) == (100, 50.0, "MEDIUM")
    assert CrowdLog.objects.filter(location=gate).count() == 2


def test_levels_follow_the_locations_own_thresholds() -> None:
    strict = Location.objects.create(name="Stairs", capacity_limit=100, medium_threshold=10, high_threshold=40)
    record_reading(strict, 45, source=CrowdLog.Source.API)
    assert fresh(strict).density_level == "HIGH"
    assert CrowdLog.objects.get().density_level == "HIGH"


def test_high_density_below_the_alert_threshold_raises_no_alert(gate: Location) -> None:
    for count in (140, 150, 159):  # 70 % .. 79.5 %: HIGH, but below the 80 % alert threshold and no spike
        record_reading(gate, count, source=CrowdLog.Source.API)
    assert fresh(gate).density_level == "HIGH"
    assert not Alert.objects.exists()


# --- dynamic capacity ----------------------------------------------------------------------------------------------


def test_capacity_change_applies_to_new_readings_only(gate: Location) -> None:
    first = record_reading(gate, 100, source=CrowdLog.Source.API)
    Location.objects.filter(pk=gate.pk).update(capacity_limit=400)
    second = record_reading(gate, 100, source=CrowdLog.Source.API)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.capacity_limit, first.occupancy_percentage, first.density_level) == (200, 50.0, "MEDIUM")
    assert (second.capacity_limit, second.occupancy_percentage, second.density_level) == (400, 25.0, "LOW")
    assert fresh(gate).occupancy_percentage == 25.0


def test_capacity_change_uses_the_database_value_not_a_stale_object(gate: Location) -> None:
    stale_object = fresh(gate)
    Location.objects.filter(pk=gate.pk).update(capacity_limit=100)
    log = record_reading(stale_object, 90, source=CrowdLog.Source.API)
    assert (log.capacity_limit, log.occupancy_percentage) == (100, 90.0)
    assert open_alerts(gate, "OVERCROWDING")


def test_patching_capacity_rederives_the_current_state_and_alerts_at_once(gate: Location) -> None:
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = APIClient()
    client.force_authenticate(admin)
    record_reading(gate, 150, source=CrowdLog.Source.API)  # 75 %: HIGH, no overcrowding yet
    assert not open_alerts(gate)

    response = client.patch(f"/api/locations/{gate.pk}/", {"capacity_limit": 180}, format="json")

    assert response.status_code == 200, response.content
    state = fresh(gate)
    assert (state.capacity_limit, state.current_count, state.occupancy_percentage) == (180, 150, 83.3)
    assert response.json()["occupancy_percentage"] == 83.3
    assert response.json()["alert"] is True
    (alert,) = open_alerts(gate)
    assert (alert.kind, alert.severity, alert.count, alert.occupancy_percentage) == (
        "OVERCROWDING",
        "WARNING",
        150,
        83.3,
    )
    assert CrowdLog.objects.count() == 1  # a settings change is not a reading

    # Raising capacity again lowers the figures but leaves the open alert to the operators.
    response = client.patch(f"/api/locations/{gate.pk}/", {"capacity_limit": 1000}, format="json")
    assert response.status_code == 200, response.content
    state = fresh(gate)
    assert (state.occupancy_percentage, state.density_level) == (15.0, "LOW")


def test_refresh_location_without_readings_changes_nothing() -> None:
    empty = Location.objects.create(name="Empty", capacity_limit=10)
    refresh_location(empty)
    state = fresh(empty)
    assert state.current_count is None and state.occupancy_percentage is None and state.density_level == ""
    assert not Alert.objects.exists()


def test_refresh_location_escalates_an_open_overcrowding_alert(gate: Location) -> None:
    record_reading(gate, 170, source=CrowdLog.Source.API)  # 85 %
    (alert,) = open_alerts(gate)
    Location.objects.filter(pk=gate.pk).update(capacity_limit=150)
    refresh_location(gate)
    alert.refresh_from_db()
    assert alert.severity == "CRITICAL"
    assert fresh(gate).occupancy_percentage == 113.3
    assert Alert.objects.count() == 1


# --- late, future and invalid readings -----------------------------------------------------------------------------


def test_late_reading_is_stored_but_changes_neither_state_nor_alerts(gate: Location) -> None:
    now = timezone.now()
    record_reading(gate, 40, source=CrowdLog.Source.CAMERA, at=now - timedelta(seconds=1))
    before = fresh(gate)

    late = record_reading(gate, 199, source=CrowdLog.Source.CAMERA, at=now - timedelta(seconds=30))

    late.refresh_from_db()
    assert (late.count, late.occupancy_percentage, late.density_level) == (199, 99.5, "HIGH")
    after = fresh(gate)
    assert (
        (after.current_count, after.occupancy_percentage, after.density_level, after.last_reading_at)
        == (
            before.current_count,
            before.occupancy_percentage,
            before.density_level,
            before.last_reading_at,
        )
        == (40, 20.0, "LOW", now - timedelta(seconds=1))
    )
    assert not Alert.objects.exists()
    assert CrowdLog.objects.count() == 2


def test_reading_with_the_same_timestamp_as_the_newest_becomes_current(gate: Location) -> None:
    at = timezone.now() - timedelta(seconds=5)
    record_reading(gate, 10, source=CrowdLog.Source.CAMERA, at=at)
    record_reading(gate, 12, source=CrowdLog.Source.CAMERA, at=at)
    assert fresh(gate).current_count == 12


def test_slightly_fast_clocks_are_accepted(gate: Location) -> None:
    record_reading(gate, 10, source=CrowdLog.Source.CAMERA, at=timezone.now() + timedelta(seconds=30))
    assert CrowdLog.objects.count() == 1


def test_a_fast_clocks_reading_does_not_freeze_the_live_state(gate: Location) -> None:
    # A sensor 50 s ahead, then cameras on the server's clock: their readings must become current at once (they
    # used to count as late for 50 s, leaving the location at LOW with no alert while it filled up).
    record_reading(gate, 10, source=CrowdLog.Source.API, at=timezone.now() + timedelta(seconds=50))
    assert CrowdLog.objects.get().timestamp <= timezone.now()  # taken as made now, never stored ahead of time
    record_reading(gate, 190, source=CrowdLog.Source.CAMERA)
    state = fresh(gate)
    assert (state.current_count, state.density_level) == (190, "HIGH")
    assert {a.kind for a in open_alerts(gate)} == {"OVERCROWDING", "SPIKE"}


@pytest.mark.parametrize(
    ("count", "at", "message"),
    [
        (10, timedelta(seconds=75), "future"),
        (10, timedelta(days=365), "future"),
        (10, datetime(1999, 12, 31, 23, 59, tzinfo=UTC), "before 2000-01-01"),
        (10, datetime(1, 1, 1, 0, 0, 30, tzinfo=UTC), "before 2000-01-01"),  # used to be a 500 (OverflowError)
        (-1, None, "negative"),
        (12.5, None, "whole number"),
        (12.0, None, "whole number"),
        ("12", None, "whole number"),
        (True, None, "whole number"),
        (False, None, "whole number"),
        (None, None, "whole number"),
        (1_000_001, None, "exceed"),
    ],
)
def test_invalid_readings_store_nothing(
    gate: Location, count: object, at: timedelta | datetime | None, message: str
) -> None:
    record_reading(gate, 20, source=CrowdLog.Source.API)
    before = fresh(gate)
    when = timezone.now() + at if isinstance(at, timedelta) else at
    with pytest.raises(InvalidReading, match=message):
        record_reading(gate, count, source=CrowdLog.Source.API, at=when)
    after = fresh(gate)
    assert CrowdLog.objects.count() == 1
    assert DensitySnapshot.objects.get().readings == 1
    assert after.current_count == before.current_count == 20
    assert after.last_reading_at == before.last_reading_at
    assert not Alert.objects.exists()


def test_naive_timestamp_is_rejected(gate: Location) -> None:
    with pytest.raises(InvalidReading, match="time zone"):
        record_reading(gate, 5, source=CrowdLog.Source.API, at=datetime(2026, 1, 1, 12, 0))
    assert not CrowdLog.objects.exists()


# --- one open alert per kind, escalation, cooldown -----------------------------------------------------------------


def test_several_overcrowded_readings_give_one_active_alert(gate: Location) -> None:
    for count in (165, 170, 175, 180, 170):  # 82.5 % .. 90 %, none a spike
        record_reading(gate, count, source=CrowdLog.Source.CAMERA)
    (alert,) = Alert.objects.all()
    assert (alert.kind, alert.status, alert.severity) == ("OVERCROWDING", "ACTIVE", "WARNING")
    assert alert.count == 165


def test_escalation_to_critical_updates_the_same_alert(gate: Location) -> None:
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)  # 85 %
    (warning,) = Alert.objects.all()
    assert warning.severity == "WARNING"

    record_reading(gate, 200, source=CrowdLog.Source.CAMERA)  # 100 %
    (critical,) = Alert.objects.all()
    assert critical.pk == warning.pk
    assert (critical.severity, critical.status, critical.count, critical.occupancy_percentage) == (
        "CRITICAL",
        "ACTIVE",
        200,
        100.0,
    )
    assert "100.0%" in critical.message

    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)  # back to WARNING level: no downgrade
    (same,) = Alert.objects.all()
    assert same.severity == "CRITICAL"


def test_an_acknowledged_alert_that_escalates_is_active_again(gate: Location) -> None:
    """An operator acknowledged 85 %; the place then went over capacity. That used to stay "acknowledged": no
    banner, no sound, nothing left to acknowledge on the dashboard."""
    operator = User.objects.create_user("op")
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)  # 85 %: WARNING
    warning = Alert.objects.get()
    services.acknowledge(warning, operator, "Stewards sent.")

    record_reading(gate, 205, source=CrowdLog.Source.CAMERA)  # over capacity: CRITICAL
    escalated = Alert.objects.get()
    assert (escalated.pk, escalated.severity, escalated.status) == (warning.pk, "CRITICAL", "ACTIVE")
    assert escalated.acknowledged_at is None and escalated.acknowledged_by is None
    assert escalated.note == "Stewards sent."
    entry = AuditLog.objects.filter(action="escalate").get()
    assert entry.actor is None and entry.object_id == str(warning.pk)
    assert entry.changes == {
        "severity": {"old": "WARNING", "new": "CRITICAL"},
        "status": {"old": "ACKNOWLEDGED", "new": "ACTIVE"},
    }
    # The escalated alert can be acknowledged again: the operator has now seen this danger.
    services.acknowledge(escalated, operator, "Gates closed.")
    assert Alert.objects.get().status == "ACKNOWLEDGED"


def test_an_alert_resolved_while_its_location_is_judged_stays_resolved(gate: Location) -> None:
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)
    warning = Alert.objects.get()
    judged = LocationAlerts(fresh(gate))  # loads the open WARNING, as the write path does
    services.resolve(Alert.objects.get(pk=warning.pk), User.objects.create_user("op"), "Cleared.")
    now = timezone.now()
    judged.evaluate([(Sample(205, now), 102.5)], now)
    stored = Alert.objects.get(pk=warning.pk)
    assert (stored.status, stored.severity) == ("RESOLVED", "WARNING")  # not a resolved alert that is CRITICAL
    assert not Notification.objects.filter(alert=warning, event="escalated").exists()


def test_an_acknowledged_alert_still_counts_as_open(gate: Location) -> None:
    operator = User.objects.create_user("op")
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)
    services.acknowledge(Alert.objects.get(), operator)
    record_reading(gate, 175, source=CrowdLog.Source.CAMERA)  # still overcrowded, no worse: nothing new to see
    (alert,) = Alert.objects.all()
    assert (alert.status, alert.severity) == ("ACKNOWLEDGED", "WARNING")


def test_cooldown_after_resolution(gate: Location) -> None:
    operator = User.objects.create_user("op")
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)
    first = Alert.objects.get()
    services.resolve(first, operator)

    record_reading(gate, 175, source=CrowdLog.Source.CAMERA)
    assert Alert.objects.count() == 1
    assert not open_alerts(gate)

    # Just inside the 300 s cooldown: still nothing.
    Alert.objects.filter(pk=first.pk).update(resolved_at=timezone.now() - timedelta(seconds=290))
    record_reading(gate, 176, source=CrowdLog.Source.CAMERA)
    assert not open_alerts(gate)

    # Once the cooldown is over, the same condition raises a new alert.
    Alert.objects.filter(pk=first.pk).update(resolved_at=timezone.now() - timedelta(seconds=301))
    record_reading(gate, 177, source=CrowdLog.Source.CAMERA)
    (second,) = open_alerts(gate)
    assert second.pk != first.pk
    assert (second.kind, second.status, second.count) == ("OVERCROWDING", "ACTIVE", 177)
    assert Alert.objects.count() == 2


def test_cooldown_is_the_locations_setting(gate: Location) -> None:
    Location.objects.filter(pk=gate.pk).update(alert_cooldown_seconds=0)
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)
    services.resolve(Alert.objects.get(), None)
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)
    assert len(open_alerts(gate, "OVERCROWDING")) == 1
    assert Alert.objects.count() == 2


def test_spike_and_overcrowding_are_separate_alerts(gate: Location) -> None:
    record_reading(gate, 20, source=CrowdLog.Source.CAMERA)
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)
    assert sorted(a.kind for a in open_alerts(gate)) == ["OVERCROWDING", "SPIKE"]


def test_custom_rule_raises_its_own_alert(gate: Location) -> None:
    rule = AlertRule.objects.create(
        location=gate, name="Queue forming", metric="count", comparison="gte", threshold=50, severity="INFO"
    )
    AlertRule.objects.create(
        location=gate, name="Disabled", metric="count", comparison="gte", threshold=1, enabled=False
    )
    record_reading(gate, 49, source=CrowdLog.Source.CAMERA)
    assert not Alert.objects.exists()
    record_reading(gate, 50, source=CrowdLog.Source.CAMERA)
    record_reading(gate, 52, source=CrowdLog.Source.CAMERA)
    (alert,) = Alert.objects.all()
    assert (alert.kind, alert.rule_id, alert.severity, alert.key) == ("CUSTOM", rule.pk, "INFO", f"CUSTOM:{rule.pk}")


def test_alerts_are_per_location(gate: Location) -> None:
    other = Location.objects.create(name="Gate B", capacity_limit=10)
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)
    record_reading(other, 9, source=CrowdLog.Source.CAMERA)
    assert len(open_alerts(gate, "OVERCROWDING")) == 1
    assert len(open_alerts(other, "OVERCROWDING")) == 1


# --- state changes -------------------------------------------------------------------------------------------------


def test_acknowledge_then_resolve_records_who_and_when(gate: Location) -> None:
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)
    alert = Alert.objects.get()

    before = timezone.now()
    services.acknowledge(alert, alice, "On my way.")
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by, alert.note) == ("ACKNOWLEDGED", alice, "On my way.")
    assert before <= alert.acknowledged_at <= timezone.now()
    assert alert.resolved_at is None and alert.resolved_by is None

    services.resolve(alert, bob, "Gate opened.")
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_by, alert.note) == ("RESOLVED", bob, "Gate opened.")
    assert alert.acknowledged_by == alice
    assert alert.acknowledged_at <= alert.resolved_at <= timezone.now()
    assert not fresh(gate).alerts.filter(status__in=Alert.OPEN_STATUSES).exists()


def test_invalid_transitions(gate: Location) -> None:
    user = User.objects.create_user("carol")
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)
    alert = Alert.objects.get()
    services.resolve(alert, user)
    resolved_at = Alert.objects.get().resolved_at

    with pytest.raises(services.InvalidTransition, match="RESOLVED"):
        services.resolve(alert, user)
    with pytest.raises(services.InvalidTransition):
        services.acknowledge(alert, user)
    stored = Alert.objects.get()
    assert (stored.status, stored.resolved_at, stored.acknowledged_at) == ("RESOLVED", resolved_at, None)


def test_acknowledging_twice_is_an_invalid_transition(gate: Location) -> None:
    first, second = User.objects.create_user("first"), User.objects.create_user("second")
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)
    alert = Alert.objects.get()
    services.acknowledge(alert, first)
    with pytest.raises(services.InvalidTransition):
        services.acknowledge(Alert.objects.get(), second)
    assert Alert.objects.get().acknowledged_by == first


# --- snapshots -----------------------------------------------------------------------------------------------------


def test_density_snapshot_min_avg_max_per_minute(gate: Location) -> None:
    minute = (timezone.now() - timedelta(minutes=10)).replace(second=0, microsecond=0)
    for seconds, count in ((5, 20), (20, 40), (59, 90)):  # 10 %, 20 %, 45 %
        record_reading(gate, count, source=CrowdLog.Source.CAMERA, at=minute + timedelta(seconds=seconds))
    record_reading(gate, 100, source=CrowdLog.Source.CAMERA, at=minute + timedelta(seconds=60))  # the next minute
    record_reading(gate, 60, source=CrowdLog.Source.CAMERA, at=minute + timedelta(seconds=30))  # late, same minute

    first, second = DensitySnapshot.objects.filter(location=gate).order_by("bucket_start")
    assert first.bucket_start == minute.astimezone(UTC)
    assert first.bucket_seconds == 60
    assert (first.readings, first.min_count, first.max_count) == (4, 20, 90)
    assert first.avg_count == pytest.approx(52.5)
    assert (first.min_occupancy, first.max_occupancy) == (10.0, 45.0)
    assert first.avg_occupancy == pytest.approx(26.25)
    assert second.bucket_start == minute + timedelta(minutes=1)
    assert (second.readings, second.min_count, second.avg_count, second.max_count) == (1, 100, 100, 100)
    assert second.avg_occupancy == 50.0


def test_snapshots_are_per_location(gate: Location) -> None:
    other = Location.objects.create(name="Gate B", capacity_limit=10)
    at = timezone.now().replace(second=30, microsecond=0) - timedelta(minutes=1)
    record_reading(gate, 100, source=CrowdLog.Source.CAMERA, at=at)
    record_reading(other, 5, source=CrowdLog.Source.CAMERA, at=at)
    assert DensitySnapshot.objects.get(location=gate).max_count == 100
    assert DensitySnapshot.objects.get(location=other).max_count == 5


# --- stale alerts --------------------------------------------------------------------------------------------------


def stale_condition() -> Condition:
    return Condition(key=AlertKind.STALE, kind=AlertKind.STALE, severity=Severity.WARNING, message="No reading.")


def test_a_fresh_reading_resolves_a_stale_alert(gate: Location) -> None:
    record_reading(gate, 10, source=CrowdLog.Source.CAMERA, at=timezone.now() - timedelta(minutes=5))
    stale = services.raise_alert(gate, stale_condition())
    assert stale is not None and stale.status == "ACTIVE"
    assert services.raise_alert(gate, stale_condition()) is None  # one open STALE alert at a time

    record_reading(gate, 12, source=CrowdLog.Source.CAMERA)

    stale.refresh_from_db()
    assert stale.status == "RESOLVED"
    assert stale.resolved_by is None
    assert stale.resolved_at is not None
    assert stale.note
    assert not open_alerts(gate)


def test_a_late_reading_does_not_resolve_a_stale_alert(gate: Location) -> None:
    record_reading(gate, 10, source=CrowdLog.Source.CAMERA, at=timezone.now() - timedelta(minutes=5))
    stale = services.raise_alert(gate, stale_condition())
    record_reading(gate, 11, source=CrowdLog.Source.CAMERA, at=timezone.now() - timedelta(minutes=6))
    stale.refresh_from_db()
    assert stale.status == "ACTIVE"


def test_a_reading_is_stored_when_an_operator_resolved_the_stale_alert_meanwhile(gate: Location) -> None:
    record_reading(gate, 10, source=CrowdLog.Source.CAMERA, at=timezone.now() - timedelta(minutes=5))
    stale = services.raise_alert(gate, stale_condition())
    operator = User.objects.create_user("op")
    # The write path loads the open alerts under the location's lock; an operator's resolve takes no such lock and
    # can commit before the write closes the alert. That write used to fail whole: reading lost, or a 500.
    alerts = services.LocationAlerts(fresh(gate))
    services.resolve(stale, operator, "Camera power restored.")
    alerts.evaluate([(services.Sample(12, timezone.now()), 6.0)], timezone.now())
    log = record_reading(gate, 12, source=CrowdLog.Source.CAMERA)
    assert CrowdLog.objects.filter(pk=log.pk).exists()
    stale.refresh_from_db()
    assert (stale.status, stale.resolved_by, stale.note) == ("RESOLVED", operator, "Camera power restored.")


def test_a_location_goes_stale_again_while_another_alert_is_open(gate: Location) -> None:
    now = timezone.now()
    record_reading(gate, 10, source=CrowdLog.Source.CAMERA, at=now - timedelta(minutes=10))
    (first,) = services.check_stale_locations(now=now - timedelta(minutes=5))
    record_reading(gate, 190, source=CrowdLog.Source.CAMERA, at=now - timedelta(minutes=4))  # back, and crowded
    first.refresh_from_db()
    assert first.status == "RESOLVED" and [a.kind for a in open_alerts(gate)] == ["OVERCROWDING"]
    # The camera dies with the OVERCROWDING alert still open: the silence must be reported all the same (an old
    # STALE alert plus any open alert used to hide the location from the check).
    (second,) = services.check_stale_locations(now=now)
    assert (second.kind, second.status) == ("STALE", "ACTIVE")


def test_a_settings_change_neither_ends_a_stale_alert_nor_repeats_an_old_spike(gate: Location) -> None:
    now = timezone.now()
    record_reading(gate, 10, source=CrowdLog.Source.CAMERA, at=now - timedelta(minutes=10, seconds=30))
    record_reading(gate, 40, source=CrowdLog.Source.CAMERA, at=now - timedelta(minutes=10))
    (spike,) = open_alerts(gate, "SPIKE")
    services.resolve(spike, User.objects.create_user("op"))
    Alert.objects.filter(pk=spike.pk).update(resolved_at=now - timedelta(minutes=9))  # its cooldown is long over
    (stale,) = services.check_stale_locations(now=now)

    gate.description = "North entrance"
    gate.save(update_fields=["description"])
    refresh_location(gate)

    stale.refresh_from_db()
    assert stale.status == "ACTIVE"  # only fresh data ends it
    assert [a.kind for a in open_alerts(gate)] == ["STALE"]  # the ten-minute-old rise is not a new SPIKE


def test_a_surge_right_after_a_resolved_warning_is_raised_at_once(gate: Location) -> None:
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)  # 85 %
    (warning,) = open_alerts(gate)
    services.resolve(warning, User.objects.create_user("op"), "Stewards sent.")
    record_reading(gate, 175, source=CrowdLog.Source.CAMERA)  # still 85-ish %: the cooldown keeps this quiet
    assert not open_alerts(gate)
    record_reading(gate, 300, source=CrowdLog.Source.CAMERA)  # 150 %, within the cooldown
    assert [(a.kind, a.severity) for a in open_alerts(gate, "OVERCROWDING")] == [("OVERCROWDING", "CRITICAL")]


def test_no_stale_alert_for_a_reading_that_lands_while_the_check_runs(
    gate: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_reading(gate, 10, source=CrowdLog.Source.CAMERA, at=timezone.now() - timedelta(minutes=5))
    judged = services.status_of

    def reading_lands_after_the_first_look(location: Location, now: datetime) -> object:
        status = judged(location, now)
        if not CrowdLog.objects.filter(count=11).exists():  # the camera's next reading commits just then
            record_reading(gate, 11, source=CrowdLog.Source.CAMERA)
        return status

    monkeypatch.setattr(services, "status_of", reading_lands_after_the_first_look)
    assert services.check_stale_locations() == []  # it used to raise one, and notify, for a silence already over
    assert not open_alerts(gate)


def test_check_stale_locations_raises_one_stale_alert(gate: Location) -> None:
    quiet = Location.objects.create(name="Never seen", capacity_limit=10)
    at = timezone.now() - timedelta(seconds=1)
    record_reading(gate, 10, source=CrowdLog.Source.CAMERA, at=at)
    assert services.check_stale_locations(now=at + timedelta(seconds=15)) == []  # three intervals: still live

    later = at + timedelta(seconds=16)
    (alert,) = services.check_stale_locations(now=later)
    assert (alert.location_id, alert.kind, alert.status) == (gate.pk, "STALE", "ACTIVE")
    assert services.check_stale_locations(now=later + timedelta(seconds=30)) == []
    assert not quiet.alerts.exists()  # never had data: "no data", but nothing stopped


# --- the database itself enforces one open alert per key ----------------------------------------------------------


def alert_row(location: Location, status: str = "ACTIVE", key: str = "OVERCROWDING") -> Alert:
    return Alert.objects.create(location=location, kind="OVERCROWDING", key=key, severity="WARNING", status=status)


def test_unique_constraint_prevents_two_open_alerts_with_the_same_key(gate: Location) -> None:
    alert_row(gate)
    with pytest.raises(IntegrityError), transaction.atomic():
        alert_row(gate)
    with pytest.raises(IntegrityError), transaction.atomic():
        alert_row(gate, status="ACKNOWLEDGED")
    assert Alert.objects.count() == 1


def test_unique_constraint_allows_resolved_duplicates_and_other_keys_or_locations(gate: Location) -> None:
    other = Location.objects.create(name="Gate B", capacity_limit=10)
    alert_row(gate)
    alert_row(gate, status="RESOLVED")
    alert_row(gate, status="RESOLVED")
    alert_row(gate, key="SPIKE")
    alert_row(other)
    assert Alert.objects.count() == 5


def test_losing_the_race_for_a_key_does_not_break_the_callers_transaction(gate: Location) -> None:
    condition = Condition(key="OVERCROWDING", kind=AlertKind.OVERCROWDING, severity=Severity.WARNING, message="m")
    with transaction.atomic():
        assert services.raise_alert(gate, condition) is not None
        assert services.raise_alert(gate, condition) is None
        record_reading(gate, 10, source=CrowdLog.Source.CAMERA)  # the transaction is still usable
    assert Alert.objects.count() == 1
    assert CrowdLog.objects.count() == 1


def test_a_settings_change_does_not_overwrite_a_newer_reading(gate: Location) -> None:
    """The API loads the location, validates, then saves: a reading stored in between must survive the save."""
    record_reading(gate, 20, source=CrowdLog.Source.CAMERA, at=timezone.now() - timedelta(seconds=10))
    loaded_by_the_api = fresh(gate)
    record_reading(gate, 150, source=CrowdLog.Source.CAMERA)  # arrives while the PATCH is being handled
    newest = fresh(gate)

    serializer = LocationSerializer(instance=loaded_by_the_api, data={"capacity_limit": 300}, partial=True)
    assert serializer.is_valid(), serializer.errors
    serializer.save()

    state = fresh(gate)
    assert state.capacity_limit == 300
    assert (state.current_count, state.last_reading_at) == (150, newest.last_reading_at)


# --- several readings in one write (the detection worker's batches) ---------------------------------------------


def test_readings_written_together_are_judged_one_by_one(gate: Location) -> None:
    hall = Location.objects.create(name="Hall", capacity_limit=100)
    base = timezone.now().replace(second=10, microsecond=0) - timedelta(minutes=1)  # all in one snapshot minute
    readings = [
        NewReading(gate.pk, 20, CrowdLog.Source.CAMERA, at=base),
        NewReading(hall.pk, 10, CrowdLog.Source.CAMERA, at=base),
        # A surge at the gate that is over again by the batch's last reading still raises its alert.
        NewReading(gate.pk, 190, CrowdLog.Source.CAMERA, at=base + timedelta(seconds=1)),
        NewReading(gate.pk, 30, CrowdLog.Source.CAMERA, at=base + timedelta(seconds=2)),
        # A late reading of the hall is history only.
        NewReading(hall.pk, 90, CrowdLog.Source.CAMERA, at=base - timedelta(seconds=5)),
    ]
    logs = record_readings(readings)

    assert [log.count for log in logs] == [20, 10, 190, 30, 90]
    assert [log.pk for log in logs] == sorted(log.pk for log in logs)
    assert CrowdLog.objects.count() == 5
    assert (fresh(gate).current_count, fresh(hall).current_count) == (30, 10)
    assert {a.kind for a in open_alerts(gate)} == {AlertKind.OVERCROWDING, AlertKind.SPIKE}
    overcrowding = open_alerts(gate, AlertKind.OVERCROWDING)[0]
    assert overcrowding.count == 190
    assert open_alerts(hall) == []
    gate_snapshot = DensitySnapshot.objects.get(location=gate)
    assert (gate_snapshot.readings, gate_snapshot.min_count, gate_snapshot.max_count) == (3, 20, 190)
    assert gate_snapshot.avg_count == pytest.approx(80)
    record_reading(gate, 120, source=CrowdLog.Source.CAMERA, at=base + timedelta(seconds=3))
    gate_snapshot.refresh_from_db()
    assert (gate_snapshot.readings, gate_snapshot.avg_count) == (4, pytest.approx(90))
    hall_snapshot = DensitySnapshot.objects.get(location=hall)
    assert (hall_snapshot.readings, hall_snapshot.min_count, hall_snapshot.max_count) == (2, 10, 90)


def test_readings_written_together_are_stored_once_per_key(gate: Location) -> None:
    first = record_reading(gate, 40, source=CrowdLog.Source.CAMERA, key="k1")
    logs = record_readings(
        [
            NewReading(gate.pk, 41, CrowdLog.Source.CAMERA, key="k1"),  # a retry of the stored one
            NewReading(gate.pk, 50, CrowdLog.Source.CAMERA, key="k2"),
            NewReading(gate.pk, 50, CrowdLog.Source.CAMERA, key="k2"),  # the same reading twice in one write
            NewReading(gate.pk, 60, CrowdLog.Source.CAMERA),
        ]
    )
    assert logs[0].pk == first.pk and logs[0].count == 40
    assert logs[1].pk == logs[2].pk
    assert sorted(CrowdLog.objects.values_list("count", flat=True)) == [40, 50, 60]
    assert fresh(gate).current_count == 60


def test_one_bad_reading_stores_nothing_of_its_write(gate: Location) -> None:
    good = NewReading(gate.pk, 10, CrowdLog.Source.CAMERA)
    with pytest.raises(InvalidReading, match="negative"):
        record_readings([good, NewReading(gate.pk, -1, CrowdLog.Source.CAMERA)])
    with pytest.raises(Location.DoesNotExist):
        record_readings([good, NewReading(gate.pk + 1000, 5, CrowdLog.Source.CAMERA)])
    assert CrowdLog.objects.count() == 0
    assert fresh(gate).current_count is None


def test_each_reading_of_a_write_is_compared_with_the_lowest_in_its_own_spike_window() -> None:
    hall = Location.objects.create(
        name="Hall", capacity_limit=1000, spike_window_seconds=60, spike_percent=50, spike_min_delta=10
    )
    t0 = timezone.now() - timedelta(minutes=5)
    record_reading(hall, 10, source=CrowdLog.Source.CAMERA, at=t0)
    # 15 is no spike over 10; 70 s after the 10, the window of the 22 holds the 15 but no longer the 10: no spike.
    record_readings(
        [
            NewReading(hall.pk, 15, CrowdLog.Source.CAMERA, at=t0 + timedelta(seconds=50)),
            NewReading(hall.pk, 22, CrowdLog.Source.CAMERA, at=t0 + timedelta(seconds=70)),
        ]
    )
    assert open_alerts(hall, AlertKind.SPIKE) == []
    # Within a minute of the 15, a rise to 40 is one.
    record_readings([NewReading(hall.pk, 40, CrowdLog.Source.CAMERA, at=t0 + timedelta(seconds=100))])
    assert "from 15 to 40" in open_alerts(hall, AlertKind.SPIKE)[0].message
