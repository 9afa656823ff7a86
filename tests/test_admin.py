"""Django admin: every model's pages work for an admin, readings stay read-only, bulk alert actions work, a camera's
counting zone is saved only when valid."""

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from alerts.engine import AlertKind, Condition, Severity
from alerts.models import Alert
from alerts.services import raise_alert
from crowd_monitor.redaction import redact_uri
from locations.models import MAX_SETTING_SECONDS, Camera, CameraFrame, CrowdLog, Location
from locations.services import record_reading

ADMIN_MODELS = [
    "locations/location",
    "locations/camera",
    "locations/crowdlog",
    "locations/densitysnapshot",
    "alerts/alert",
    "alerts/alertrule",
    "alerts/notificationchannel",
    "alerts/notification",
]


@pytest.fixture
def location() -> Location:
    location = Location.objects.create(name="North Gate", capacity_limit=100)
    Camera.objects.create(location=location, name="cam", source="rtsp://admin:hunter2@10.0.0.5/stream")
    record_reading(location, 85, source=CrowdLog.Source.API)
    return location


@pytest.mark.django_db
@pytest.mark.parametrize("model", ADMIN_MODELS)
def test_every_admin_page_renders(admin_client: Client, location: Location, model: str) -> None:
    changelist = admin_client.get(f"/admin/{model}/")
    assert changelist.status_code == 200
    app_label, model_name = model.split("/")
    obj = {
        "location": location,
        "camera": location.cameras.first(),
        "crowdlog": CrowdLog.objects.first(),
        "densitysnapshot": location.snapshots.first(),
        "alert": Alert.objects.first(),
    }.get(model_name)
    if obj is not None:
        change = admin_client.get(reverse(f"admin:{app_label}_{model_name}_change", args=[obj.pk]))
        assert change.status_code == 200


@pytest.mark.django_db
def test_readings_cannot_be_edited_or_deleted_in_admin(admin_client: Client, location: Location) -> None:
    log = CrowdLog.objects.get()
    page = admin_client.get(reverse("admin:locations_crowdlog_change", args=[log.pk]))
    assert b'name="count"' not in page.content  # shown read-only, no input
    assert (
        admin_client.post(reverse("admin:locations_crowdlog_delete", args=[log.pk]), {"post": "yes"}).status_code == 403
    )
    assert CrowdLog.objects.filter(pk=log.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["crowdlog", "densitysnapshot"])
def test_the_lists_of_readings_and_history_never_read_the_whole_table(
    admin_client: Client, location: Location, model: str
) -> None:
    """These tables hold millions of rows: a date hierarchy (its dates come from every row) or a list of bucket sizes
    took the readings page to 7.9 s with 3 million readings (bench/admin_pages.py). One count is all a page reads
    of the whole table; the rows are the newest stored, found on the primary key."""
    now = timezone.now()
    for age in (timedelta(days=30), timedelta(days=2), timedelta(minutes=1)):
        record_reading(location, 40, source=CrowdLog.Source.API, at=now - age)
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(f"/admin/locations/{model}/")
    assert page.status_code == 200
    table = f"locations_{model}"
    reads = [q["sql"] for q in queries.captured_queries if f'FROM "{table}"' in q["sql"]]
    assert not [sql for sql in reads if "DISTINCT" in sql]
    assert len([sql for sql in reads if sql.startswith("SELECT COUNT(*)")]) == 1
    (rows,) = [sql for sql in reads if not sql.startswith("SELECT COUNT(*)")]
    assert rows.endswith(f'ORDER BY "{table}"."id" DESC') or f'ORDER BY "{table}"."id" DESC LIMIT' in rows
    shown = list(page.context["cl"].result_list)
    assert [row.pk for row in shown] == sorted((row.pk for row in shown), reverse=True)  # newest stored first

    field = "timestamp" if model == "crowdlog" else "bucket_start"
    past_week = admin_client.get(
        f"/admin/locations/{model}/",
        {f"{field}__gte": (now - timedelta(days=7)).isoformat(), f"{field}__lt": (now + timedelta(days=1)).isoformat()},
    )
    ages = [now - getattr(row, field) for row in past_week.context["cl"].result_list]
    assert len(ages) == 3 and all(age < timedelta(days=7) for age in ages)  # the API reading, 2 days, a minute


@pytest.mark.django_db
def test_bulk_acknowledge_and_resolve(admin_client: Client, location: Location, admin_user: User) -> None:
    spike = raise_alert(location, Condition(AlertKind.SPIKE, AlertKind.SPIKE, Severity.WARNING, "rise"))
    alerts = list(Alert.objects.all())
    assert len(alerts) == 2 and spike in alerts
    changelist = reverse("admin:alerts_alert_changelist")
    ids = [str(a.pk) for a in alerts]
    admin_client.post(changelist, {"action": "acknowledge_selected", "_selected_action": ids})
    assert {a.status for a in Alert.objects.all()} == {Alert.Status.ACKNOWLEDGED}
    assert {a.acknowledged_by for a in Alert.objects.all()} == {admin_user}
    admin_client.post(changelist, {"action": "resolve_selected", "_selected_action": ids})
    assert {a.status for a in Alert.objects.all()} == {Alert.Status.RESOLVED}


def location_form_data(location: Location, **changes: str) -> dict[str, str]:
    """The location change form as the admin page posts it (default settings), with `changes`."""
    return {
        "name": location.name,
        "description": "",
        "is_active": "on",
        "latitude": "",
        "longitude": "",
        "capacity_limit": str(location.capacity_limit),
        "medium_threshold": "30",
        "high_threshold": "70",
        "alert_threshold": "80",
        "spike_percent": "30",
        "spike_window_seconds": "60",
        "spike_min_delta": "5",
        "alert_cooldown_seconds": "300",
        "expected_interval_seconds": "5",
        "cameras-TOTAL_FORMS": "0",
        "cameras-INITIAL_FORMS": "0",
        **changes,
    }


@pytest.mark.django_db
def test_changing_capacity_in_admin_rederives_occupancy(admin_client: Client, location: Location) -> None:
    data = location_form_data(location, capacity_limit="200")
    response = admin_client.post(reverse("admin:locations_location_change", args=[location.pk]), data)
    assert response.status_code == 302, response.content
    location.refresh_from_db()
    assert (location.capacity_limit, location.occupancy_percentage, location.density_level) == (200, 42.5, "MEDIUM")


DURATIONS = ["expected_interval_seconds", "spike_window_seconds", "alert_cooldown_seconds"]


@pytest.mark.django_db
@pytest.mark.parametrize("field", DURATIONS)
@pytest.mark.parametrize("seconds", [MAX_SETTING_SECONDS + 1, 2**63 - 1])
def test_durations_longer_than_a_week_are_refused_in_admin(
    admin_client: Client, location: Location, field: str, seconds: int
) -> None:
    """SQLite stored up to 2**63 - 1 seconds, and then readings, the API and the dashboard answered 500."""
    url = reverse("admin:locations_location_change", args=[location.pk])
    response = admin_client.post(url, location_form_data(location, **{field: str(seconds)}))
    assert response.status_code == 200  # the form again, not a redirect nor a server error
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    assert f"less than or equal to {MAX_SETTING_SECONDS}" in errors[field][0]
    stored = Location.objects.values(*DURATIONS).get(pk=location.pk)
    assert stored == {"expected_interval_seconds": 5, "spike_window_seconds": 60, "alert_cooldown_seconds": 300}
    assert admin_client.get("/").status_code == 200

    response = admin_client.post(url, location_form_data(location, **{field: str(MAX_SETTING_SECONDS)}))
    assert response.status_code == 302, response.content  # a week is allowed
    reading = admin_client.post(
        f"/api/locations/{location.pk}/readings/", {"count": 5}, content_type="application/json"
    )
    assert reading.status_code == 201


def test_production_settings_pass_check_deploy() -> None:
    env = {
        **os.environ,
        "DEBUG": "False",
        "SECRET_KEY": "a-production-length-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "crowd.example.org",
    }
    for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        env.pop(name, None)  # the production defaults, not the test overrides
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


# --- Camera counting zone --------------------------------------------------------------------------------------------


def camera_form_data(camera: Camera, zone: str, calibration: str = "{}") -> dict[str, str]:
    """The camera change form as the admin page posts it: the masked source (kept as stored), a zone and a
    calibration."""
    return {
        "location": str(camera.location_id),
        "name": camera.name,
        "source": redact_uri(camera.source),
        "enabled": "on",
        "counting_mode": camera.counting_mode,
        "zone": zone,
        "calibration": calibration,
    }


@pytest.mark.django_db
def test_camera_zone_is_saved_from_the_admin_form(admin_client: Client, location: Location) -> None:
    camera = location.cameras.get()
    url = reverse("admin:locations_camera_change", args=[camera.pk])
    zone = [[0.1, 0.2], [0.9, 0.2], [0.9, 0.95], [0.1, 0.95]]
    response = admin_client.post(url, camera_form_data(camera, json.dumps(zone)))
    assert response.status_code == 302, response.content
    camera.refresh_from_db()
    assert camera.zone == zone
    assert camera.source == "rtsp://admin:hunter2@10.0.0.5/stream"  # the masked source kept the password

    response = admin_client.post(url, camera_form_data(camera, ""))  # cleared: the whole frame
    assert response.status_code == 302, response.content
    camera.refresh_from_db()
    assert camera.zone == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ("[[0.1, 0.2], [0.9, 0.2]", "The zone is not valid JSON"),
        ("[[0.1, 0.2], [0.9, 0.2]]", "at least three [x, y] points"),
        ("[[0.1, 0.2], [0.9, 0.2], [1.5, 0.9]]", "is outside 0-1"),
        ("[[0.1, 0.2], [0.9, 0.2], [0.5]]", "is not an [x, y] pair"),
        ('[[0.1, 0.2], [0.9, 0.2], ["left", 0.9]]', "must be numbers between 0 and 1"),
        ('{"corners": 4}', "at least three [x, y] points"),
        ("[[0, 0], [0.5, 0.5], [1, 1]]", "The zone encloses next to no area"),  # used to count nobody, ever
        ("[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]", "The zone encloses next to no area"),
        ("[[0, 0], [1, 1], [1, 0], [0, 1]]", "The zone's edges cross each other"),
    ],
)
def test_an_invalid_camera_zone_is_refused_in_words(
    admin_client: Client, location: Location, zone: str, message: str
) -> None:
    camera = location.cameras.get()
    camera.zone = [[0, 0], [1, 0], [1, 1]]
    camera.save()
    response = admin_client.post(
        reverse("admin:locations_camera_change", args=[camera.pk]), camera_form_data(camera, zone)
    )
    assert response.status_code == 200  # the form again, not a redirect nor a server error
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["zone"]
    assert message in errors["zone"][0]
    assert escape(message) in response.content.decode()
    camera.refresh_from_db()
    assert camera.zone == [[0, 0], [1, 0], [1, 1]]


@pytest.mark.django_db
def test_camera_zone_editor_shows_the_latest_frame_or_says_why_not(admin_client: Client, location: Location) -> None:
    camera = location.cameras.get()
    page = admin_client.get(reverse("admin:locations_camera_change", args=[camera.pk])).content.decode()
    assert "has not delivered a frame yet" in page and "data-zone-editor " not in page
    assert 'name="zone"' in page  # the JSON can still be typed

    captured_at = timezone.now()
    CameraFrame.objects.create(
        camera=camera, jpeg=b"jpeg", width=8, height=8, count=0, boxes=[], captured_at=captured_at
    )  # fmt: skip
    page = admin_client.get(reverse("admin:locations_camera_change", args=[camera.pk])).content.decode()
    stamp = int(captured_at.timestamp() * 1000)
    assert f'data-frame-url="/api/cameras/{camera.pk}/frame/?t={stamp}"' in page
    assert "js/zone_editor" in page and "css/zone_editor" in page

    page = admin_client.get(reverse("admin:locations_camera_add")).content.decode()
    assert "once it has delivered a frame, the zone can be drawn" in page and "data-zone-editor " not in page
    assert 'name="zone"' in page


# --- Camera calibration ----------------------------------------------------------------------------------------------

SCALE = {"kind": "scale", "mode": "detect", "a": 1.5, "b": 0.0, "heldout_mae_before": 4.0, "heldout_mae_after": 1.0}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ('{"kind": "scale", "a": "abc"}', "'a' must be a number, not 'abc'"),
        ('{"kind": "linear", "a": null, "b": null}', "'a' must be a number, not None"),
        ('{"kind": "scale", "a": 0}', "'a' must be above 0"),
        ('{"kind": "scale", "a": -1}', "'a' must be above 0"),
        ('{"kind": "scale", "a": NaN}', "'a' must be a number"),
        ('{"kind": "linear", "a": 1.2, "b": true}', "'b' must be a number"),
        ('{"kind": "isotonic", "x": 5, "y": [1]}', "An isotonic calibration needs 'x' and 'y'"),
        ('{"kind": "isotonic", "x": [1, 2, 3], "y": [1]}', "An isotonic calibration needs 'x' and 'y'"),
        ('{"kind": "isotonic", "x": [], "y": []}', "An isotonic calibration needs 'x' and 'y'"),
        ('{"kind": "isotonic", "x": [5, 2], "y": [1, 3]}', "An isotonic calibration needs 'x' and 'y'"),
        ('{"kind": "isotonic", "x": ["a"], "y": ["b"]}', "'x' must be a number, not 'a'"),
        ('{"kind": "boxes", "boxes": 5}', "The box model (boxes) is damaged"),
        ('{"kind": "zzz"}', "Unknown calibration kind 'zzz'"),
        # A typo in the mode: the map would never match the mode in use, and silently never apply.
        ('{"kind": "scale", "mode": "detcet", "a": 1.5}', "Unknown counting mode 'detcet'"),
        ("[1, 2]", "A calibration is a JSON object"),
    ],
)
def test_a_calibration_the_counter_cannot_apply_is_refused_in_words(
    admin_client: Client, location: Location, calibration: str, message: str
) -> None:
    """Saved, such a value used to stop `run_detection` for every camera; now the form says what is wrong."""
    camera = location.cameras.get()
    Camera.objects.filter(pk=camera.pk).update(calibration=SCALE)
    camera.refresh_from_db()
    response = admin_client.post(
        reverse("admin:locations_camera_change", args=[camera.pk]), camera_form_data(camera, "", calibration)
    )
    assert response.status_code == 200  # the form again, not a redirect nor a server error
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["calibration"]
    assert message in errors["calibration"][0]
    assert escape(message) in response.content.decode()
    camera.refresh_from_db()
    assert camera.calibration == SCALE


@pytest.mark.django_db
@pytest.mark.parametrize(
    "calibration",
    [
        SCALE,
        {"kind": "linear", "mode": "", "a": 1.2, "b": -3},
        {"kind": "isotonic", "mode": "auto", "x": [0, 10, 10, 40], "y": [0, 12, 14, 50]},
        {"kind": "identity", "mode": "auto", "n_frames": 5},
        {},
    ],
)
def test_a_calibration_the_counter_can_apply_is_saved(
    admin_client: Client, location: Location, calibration: dict[str, object]
) -> None:
    camera = location.cameras.get()
    response = admin_client.post(
        reverse("admin:locations_camera_change", args=[camera.pk]),
        camera_form_data(camera, "", json.dumps(calibration)),
    )
    assert response.status_code == 302, response.content
    camera.refresh_from_db()
    assert camera.calibration == calibration


def camera_rows(location: Location, names: dict[int, str]) -> dict[str, str]:
    """The location page's camera rows as posted, each camera (by id) under the name given in `names`."""
    cameras = list(location.cameras.order_by("pk"))
    data = {"cameras-TOTAL_FORMS": str(len(cameras)), "cameras-INITIAL_FORMS": str(len(cameras))}
    for i, camera in enumerate(cameras):
        data |= {
            f"cameras-{i}-id": str(camera.pk),
            f"cameras-{i}-location": str(location.pk),
            f"cameras-{i}-name": names.get(camera.pk, camera.name),
            f"cameras-{i}-source": camera.source,
            f"cameras-{i}-enabled": "on",
        }
    return data


@pytest.mark.django_db
def test_swapping_two_camera_names_on_the_location_page_is_a_form_error_not_a_500(admin_client: Client) -> None:
    """The rows are saved one after the other, so the first renamed camera took a name the second still held: the
    database's unique (location, name) constraint failed and the page answered 500."""
    location = Location.objects.create(name="Concourse", capacity_limit=100)
    kerb = Camera.objects.create(location=location, name="kerb", source="/data/kerb")
    shelter = Camera.objects.create(location=location, name="shelter", source="/data/shelter")
    url = reverse("admin:locations_location_change", args=[location.pk])

    data = location_form_data(location) | camera_rows(location, {kerb.pk: "shelter", shelter.pk: "kerb"})
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "still the name of camera" in response.content.decode()
    assert sorted(location.cameras.values_list("pk", "name")) == [(kerb.pk, "kerb"), (shelter.pk, "shelter")]

    # A name given up by a row saved before it is free: that order of renames works as before.
    data = location_form_data(location) | camera_rows(location, {kerb.pk: "platform", shelter.pk: "kerb"})
    assert admin_client.post(url, data).status_code == 302
    assert sorted(location.cameras.values_list("pk", "name")) == [(kerb.pk, "platform"), (shelter.pk, "kerb")]
