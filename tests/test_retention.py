"""Stored readings are deleted after READING_RETENTION_DAYS (locations/retention.py, `prune_readings`, `run_alerts`),
while the history charts, the current state, the cameras' counts and the alerts stay as they were."""

import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone

from alerts.management.commands import run_alerts
from alerts.models import Alert
from locations.management.commands import prune_readings as prune_command
from locations.models import Camera, CameraCount, CrowdLog, DensitySnapshot, Location
from locations.retention import prune_history, prune_readings
from locations.services import record_reading

REPO = Path(__file__).resolve().parent.parent
RETENTION = timedelta(days=3)

pytestmark = pytest.mark.django_db


@pytest.fixture
def now() -> datetime:
    return timezone.now()


@pytest.fixture
def readings(now: datetime) -> dict[str, list[int]]:
    """Two locations with readings of the last six days, stored oldest first (as they came): 8 older than RETENTION,
    4 within it. The gate's newest reading is over its alert threshold; the hall's come from a camera."""
    gate = Location.objects.create(name="Gate A", capacity_limit=200)
    hall = Location.objects.create(name="Hall", capacity_limit=100)
    camera = Camera.objects.create(location=hall, name="Hall cam", source="/dev/null")
    gate_counts = [(timedelta(days=6), 20), (timedelta(days=5), 40), (timedelta(days=4, hours=1), 60)]
    gate_counts += [(timedelta(days=4), 80), (timedelta(days=3, minutes=1), 100)]
    gate_counts += [(RETENTION - timedelta(minutes=1), 120)]
    gate_counts += [(timedelta(hours=1), 170)]  # 85 %: OVERCROWDING
    hall_counts = [(timedelta(days=5), 10), (timedelta(days=4), 20), (timedelta(days=3, seconds=1), 30)]
    hall_counts += [(timedelta(days=2), 40), (timedelta(minutes=30), 50)]
    stored: dict[str, list[int]] = {"old": [], "kept": []}
    for location, counts, camera_id in ((gate, gate_counts, None), (hall, hall_counts, camera.pk)):
        for age, count in counts:
            log = record_reading(location, count, source=CrowdLog.Source.CAMERA, camera_id=camera_id, at=now - age)
            stored["old" if age > RETENTION else "kept"].append(log.pk)
    assert len(stored["old"]) == 8 and len(stored["kept"]) == 4
    return stored


def what_users_see(client: Client) -> dict[str, object]:
    """Everything a reading leaves behind besides itself: charts, current state, cameras' counts, alerts."""
    locations = client.get("/api/locations/").json()["results"]
    return {
        "locations": locations,
        "history": [client.get(f"/api/locations/{loc['id']}/history/?range=week").json() for loc in locations],
        "snapshots": list(DensitySnapshot.objects.order_by("pk").values()),
        "camera counts": list(CameraCount.objects.values()),
        "alerts": list(Alert.objects.order_by("pk").values()),
    }


def kept_readings() -> set[int]:
    return set(CrowdLog.objects.values_list("pk", flat=True))


def test_pruning_deletes_only_the_readings_older_than_the_cutoff_in_batches(
    readings: dict[str, list[int]], now: datetime, admin_client: Client
) -> None:
    gate = Location.objects.get(name="Gate A")
    at_cutoff = record_reading(gate, 110, source=CrowdLog.Source.API, at=now - RETENTION)  # late, back-filled
    before = what_users_see(admin_client)
    assert before["alerts"]
    assert sum(point["readings"] for chart in before["history"] for point in chart["points"]) == 13
    done: list[int] = []

    assert prune_readings(now - RETENTION, batch_size=3, progress=done.append) == 8

    assert kept_readings() == {*readings["kept"], at_cutoff.pk}  # exactly at the cutoff is not older: kept
    assert len(done) >= 3 and done == sorted(done) and done[-1] == 8  # several batches, each reported
    listed = admin_client.get(f"/api/locations/{gate.pk}/readings/").json()["results"]
    assert [reading["count"] for reading in listed] == [170, 120, 110]
    # The week chart still shows all six days, the state, the cameras' counts and the alerts are as they were.
    assert what_users_see(admin_client) == before

    assert prune_readings(now - RETENTION, batch_size=3) == 0  # nothing left to do


def test_a_prune_limited_to_a_slice_deletes_the_oldest_first(readings: dict[str, list[int]], now: datetime) -> None:
    assert prune_readings(now - RETENTION, batch_size=2, limit=3) == 3
    gate = Location.objects.get(name="Gate A")
    assert sorted(CrowdLog.objects.filter(location=gate).values_list("count", flat=True)) == [80, 100, 120, 170]
    assert prune_readings(now - RETENTION, limit=100) == 5
    assert kept_readings() == set(readings["kept"])


def test_the_command_deletes_old_readings_and_says_how_far_it_got(
    readings: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prune_command, "PROGRESS_EVERY", 0)  # a line per batch
    out = StringIO()
    call_command("prune_readings", "--days", "3", "--batch-size", "3", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Deleted 3 of 8 readings older than ")
    assert any(line.startswith("Deleted 8 readings older than ") for line in lines)
    assert lines[-1].startswith("Deleted 0 history rows older than ")  # 400 days by default: all six days kept
    assert kept_readings() == set(readings["kept"])


def test_a_dry_run_counts_and_deletes_nothing(readings: dict[str, list[int]]) -> None:
    out = StringIO()
    call_command("prune_readings", "--days", "3", "--dry-run", stdout=out)
    assert out.getvalue().startswith("Would delete 8 readings older than ")
    assert kept_readings() == set(readings["old"] + readings["kept"])


@override_settings(READING_RETENTION_DAYS=3)
def test_the_command_keeps_readings_for_the_configured_retention(readings: dict[str, list[int]]) -> None:
    call_command("prune_readings", stdout=StringIO())
    assert kept_readings() == set(readings["kept"])


@override_settings(READING_RETENTION_DAYS=0)
def test_with_retention_off_the_command_deletes_nothing(readings: dict[str, list[int]]) -> None:
    out = StringIO()
    call_command("prune_readings", stdout=out)
    assert "Retention of readings is off (READING_RETENTION_DAYS=0): none deleted." in out.getvalue()
    assert kept_readings() == set(readings["old"] + readings["kept"])


@pytest.mark.parametrize("days", ["0", "-1"])
def test_the_command_refuses_to_delete_everything(readings: dict[str, list[int]], days: str) -> None:
    with pytest.raises(CommandError, match=rf"--days must be from 1 to 36500, not {days}\."):
        call_command("prune_readings", "--days", days, stdout=StringIO())
    assert kept_readings() == set(readings["old"] + readings["kept"])


def test_the_command_refusing_days_0_exits_non_zero(tmp_path: Path) -> None:
    # An empty database of its own: even a broken check could delete nothing anyone keeps.
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    command = [sys.executable, "manage.py", "prune_readings", "--days", "0"]
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert "--days must be from 1 to 36500, not 0." in result.stderr


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        *[
            ("READING_RETENTION_DAYS", value, "a whole number of days from 0 to 36500")
            for value in ("-1", "1.5", "ninety")
        ],
        *[
            ("HISTORY_RETENTION_DAYS", value, "0 (keep the history forever) or a whole number of days from 7")
            for value in ("3", "-1", "a year")
        ],
    ],
)
def test_a_bad_retention_in_the_environment_stops_the_start(setting: str, value: str, message: str) -> None:
    env = {**os.environ, setting: value, "DJANGO_SETTINGS_MODULE": "crowd_monitor.settings"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert f"{setting} must be {message}" in result.stderr
    assert f"not {value!r}." in result.stderr


# --- the alert worker prunes by itself ----------------------------------------------------------------------------
# Committed for real: each pass of the worker starts with close_old_connections(), which closes a connection left
# inside a transaction (the test's own, with plain django_db).


@pytest.mark.django_db(transaction=True)
@override_settings(READING_RETENTION_DAYS=3)
def test_run_alerts_deletes_readings_older_than_the_retention(readings: dict[str, list[int]]) -> None:
    out = StringIO()
    call_command("run_alerts", "--once", stdout=out)
    assert kept_readings() == set(readings["kept"])
    assert "Deleted 8 readings older than " in out.getvalue()


@pytest.mark.django_db(transaction=True)
@override_settings(READING_RETENTION_DAYS=0)
def test_run_alerts_keeps_every_reading_with_retention_off(readings: dict[str, list[int]]) -> None:
    call_command("run_alerts", "--once", stdout=StringIO())
    assert kept_readings() == set(readings["old"] + readings["kept"])


@override_settings(READING_RETENTION_DAYS=3)
def test_run_alerts_deletes_a_backlog_a_slice_per_check_then_hourly(
    readings: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_alerts, "PRUNE_SLICE", 5)
    worker = run_alerts.Command(stdout=StringIO())
    assert worker._prune() <= run_alerts.time.monotonic()  # a full slice: more may be left, due again at once
    assert len(kept_readings()) == 12 - 5
    next_prune = worker._prune()
    assert kept_readings() == set(readings["kept"])
    assert next_prune - run_alerts.time.monotonic() > run_alerts.PRUNE_EVERY - 60  # done: the next in an hour


@pytest.mark.django_db(transaction=True)
@override_settings(READING_RETENTION_DAYS=3)
def test_a_failing_prune_is_logged_and_the_worker_goes_on(
    readings: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("database restarting")

    monkeypatch.setattr(run_alerts, "prune_readings", broken)
    out = StringIO()
    with caplog.at_level(logging.ERROR, logger=run_alerts.__name__):
        call_command("run_alerts", "--once", stdout=out)
    assert "Deleting readings older than" in caplog.text and "database restarting" in caplog.text
    assert out.getvalue().endswith("Stopped.\n")
    assert kept_readings() == set(readings["old"] + readings["kept"])


# --- the per-minute history behind the charts (HISTORY_RETENTION_DAYS) -------------------------------------------


@pytest.fixture
def history(now: datetime) -> Location:
    """A location with readings 10, 8 and 6 days and an hour ago, each leaving its per-minute history row."""
    plaza = Location.objects.create(name="Plaza", capacity_limit=100)
    for age in (timedelta(days=10), timedelta(days=8), timedelta(days=6), timedelta(hours=1)):
        record_reading(plaza, 30, source=CrowdLog.Source.API, at=now - age)
    assert DensitySnapshot.objects.filter(location=plaza).count() == 4
    return plaza


def history_ages(location: Location, now: datetime) -> list[int]:
    starts = DensitySnapshot.objects.filter(location=location).order_by("bucket_start").values_list("bucket_start")
    return [(now - start).days for (start,) in starts]


def test_history_older_than_its_retention_goes_and_the_week_chart_stays_as_it_was(
    history: Location, now: datetime, client: Client, django_user_model: Any
) -> None:
    client.force_login(django_user_model.objects.create_user("viewer", password="x"))
    week_chart = client.get(f"/api/locations/{history.pk}/history/?range=week").json()
    assert len(week_chart["points"]) == 2

    out = StringIO()
    call_command("prune_readings", "--history-days", "7", stdout=out)

    assert history_ages(history, now) == [6, 0]
    assert client.get(f"/api/locations/{history.pk}/history/?range=week").json() == week_chart
    assert "Deleted 2 history rows older than " in out.getvalue()
    assert CrowdLog.objects.filter(location=history).count() == 4  # readings within READING_RETENTION_DAYS stay


def test_history_is_pruned_a_slice_at_a_time_oldest_first(history: Location, now: datetime) -> None:
    assert prune_history(now - timedelta(days=7), limit=1) == 1
    assert history_ages(history, now) == [8, 6, 0]


def test_a_dry_run_counts_the_history_too(history: Location, now: datetime) -> None:
    out = StringIO()
    call_command("prune_readings", "--history-days", "7", "--dry-run", stdout=out)
    assert "Would delete 2 history rows older than " in out.getvalue()
    assert history_ages(history, now) == [10, 8, 6, 0]


@pytest.mark.parametrize("days", ["6", "0"])
def test_the_command_refuses_history_shorter_than_the_week_chart_and_deletes_nothing(
    history: Location, now: datetime, days: str
) -> None:
    # --days 1 alone would delete three readings: a bad --history-days stops the whole command first.
    with pytest.raises(CommandError, match=rf"--history-days must be from 7 to 36500, not {days}\."):
        call_command("prune_readings", "--days", "1", "--history-days", days, stdout=StringIO())
    assert history_ages(history, now) == [10, 8, 6, 0]
    assert CrowdLog.objects.filter(location=history).count() == 4


@pytest.mark.django_db(transaction=True)
@override_settings(READING_RETENTION_DAYS=7, HISTORY_RETENTION_DAYS=9)
def test_run_alerts_deletes_history_older_than_its_retention(history: Location, now: datetime) -> None:
    out = StringIO()
    call_command("run_alerts", "--once", stdout=out)
    assert history_ages(history, now) == [8, 6, 0]
    assert CrowdLog.objects.filter(location=history).count() == 2
    assert "Deleted 2 readings older than " in out.getvalue()
    assert "Deleted 1 history row older than " in out.getvalue()


@pytest.mark.django_db(transaction=True)
@override_settings(READING_RETENTION_DAYS=7, HISTORY_RETENTION_DAYS=0)
def test_run_alerts_keeps_the_history_with_its_retention_off(history: Location, now: datetime) -> None:
    call_command("run_alerts", "--once", stdout=StringIO())
    assert history_ages(history, now) == [10, 8, 6, 0]
    assert CrowdLog.objects.filter(location=history).count() == 2
