"""Time zones and clock edges: sites in India (UTC+5:30), Saudi Arabia, Brazil and Europe (a DST change day).

TIME_ZONE is the site's zone (admin, command output, notification texts); stored times, durations and the alert rules
work on absolute instants, so a wall clock jumping an hour neither raises nor hides an alert.
"""

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditLog
from alerts.engine import AlertKind
from alerts.models import Alert, NotificationChannel
from alerts.sms import LocmemSmsBackend
from locations.history import history
from locations.models import CrowdLog, DensitySnapshot, Location
from locations.services import SNAPSHOT_BUCKET_SECONDS, record_reading

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
# Europe/Berlin's changes of 2025: 02:00 CET became 03:00 CEST on 30 March (01:00 UTC); 03:00 CEST became 02:00 CET
# again on 26 October (01:00 UTC), so 02:00-03:00 came twice that night.
SPRING_FORWARD = datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
FALL_BACK = datetime(2025, 10, 26, 1, 0, tzinfo=UTC)


@pytest.fixture
def gate() -> Location:
    return Location.objects.create(name="Gate A", capacity_limit=200)


@pytest.fixture
def admin() -> APIClient:
    client = APIClient()
    _token, key = ApiToken.issue(User.objects.create_superuser("admin", "admin@example.com", None))
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def spikes(location: Location) -> list[Alert]:
    return list(Alert.objects.filter(location=location, kind=AlertKind.SPIKE))


# --- the spike window across a DST change ---------------------------------------------------------------------------


@override_settings(TIME_ZONE="Europe/Berlin")
def test_the_repeated_hour_does_not_widen_the_spike_window(admin: APIClient, gate: Location) -> None:
    """02:30 CEST and, an hour later, 02:30 CET: the same wall clock, an hour apart. The 60 s spike window ending at
    the second must not reach back to the first (10 -> 20 people in an hour is no spike)."""
    url = f"/api/locations/{gate.pk}/readings/"
    first = FALL_BACK - timedelta(minutes=30)  # 02:30 CEST
    assert admin.post(url, {"count": 10, "timestamp": first.isoformat()}, format="json").status_code == 201
    second = first + timedelta(hours=1)  # 02:30 CET
    assert admin.post(url, {"count": 20, "timestamp": second.isoformat()}, format="json").status_code == 201
    assert spikes(gate) == []


@override_settings(TIME_ZONE="Europe/Berlin")
def test_a_surge_just_after_the_clocks_go_forward_is_a_spike(admin: APIClient, gate: Location) -> None:
    """01:59:45 CET, then 03:00:30 CEST: 45 s apart. The window ending at the second must not start "at 02:59:30",
    a time that does not exist that night (taken as 01:59:30 UTC, after the reading it ends at: an empty window)."""
    url = f"/api/locations/{gate.pk}/readings/"
    before = SPRING_FORWARD - timedelta(seconds=15)
    assert admin.post(url, {"count": 10, "timestamp": before.isoformat()}, format="json").status_code == 201
    after = SPRING_FORWARD + timedelta(seconds=30)
    assert admin.post(url, {"count": 40, "timestamp": after.isoformat()}, format="json").status_code == 201
    [alert] = spikes(gate)
    assert alert.message == "Count rose from 10 to 40 (+30) within 60 s."


def test_the_write_path_judges_times_in_any_zone_as_instants(gate: Location) -> None:
    """record_reading given times in the site's zone (as DRF parses them): the same outcome as in UTC."""
    first = (FALL_BACK - timedelta(minutes=30)).astimezone(BERLIN)
    second = (FALL_BACK + timedelta(minutes=30)).astimezone(BERLIN)
    assert (first.hour, second.hour, second.fold) == (2, 2, 1)
    record_reading(gate, 10, source=CrowdLog.Source.API, at=first)
    log = record_reading(gate, 20, source=CrowdLog.Source.API, at=second)
    assert spikes(gate) == []
    # (Python never finds a time of the repeated hour equal to one of another zone: compare in UTC.)
    assert log.timestamp == second.astimezone(UTC) == FALL_BACK + timedelta(minutes=30)
    assert Location.objects.get(pk=gate.pk).last_reading_at == FALL_BACK + timedelta(minutes=30)


# --- times given to the API -------------------------------------------------------------------------------------------

SITE_ZONES = ["UTC", "Asia/Kolkata", "Asia/Riyadh", "America/Sao_Paulo", "Europe/Berlin"]


def filtered_urls(location: Location) -> list[str]:
    camera = location.cameras.create(name="North", source="file:///dev/null")
    return [f"/api/locations/{location.pk}/readings/", "/api/alerts/", f"/api/cameras/{camera.pk}/heatmap/"]


@pytest.mark.parametrize("zone", SITE_ZONES)
def test_a_filter_time_without_a_zone_is_utc_in_every_zone(admin: APIClient, gate: Location, zone: str) -> None:
    """What a filter without a zone meant used to depend on the server's TIME_ZONE, which the client does not know, and
    on a DST change day a wall-clock time can be two or none. It is UTC wherever the server is (what it always was on
    a site in UTC); a reading's timestamp without a zone is refused (below)."""
    record_reading(gate, 12, source=CrowdLog.Source.API, at=datetime(2025, 10, 26, 0, 30, tzinfo=UTC))
    url = f"/api/locations/{gate.pk}/readings/"
    with override_settings(TIME_ZONE=zone):
        for query, found in [
            ("since=2025-10-26T00:30:00&until=2025-10-26T00:30:00", 1),  # 02:30 in Berlin, which came twice that night
            ("since=2025-10-26", 1),  # midnight UTC
            ("since=2025-10-26T00:30:01", 0),
            ("since=2025-10-26T00:00:00&until=2025-10-26T00:29:59", 0),
            # Once a 500 wherever TIME_ZONE is not UTC: the time in the site's zone is outside the calendar in UTC.
            ("since=0001-01-01T00:00:00&until=9999-12-31T23:59:59", 1),
        ]:
            response = admin.get(f"{url}?{query}")
            assert response.status_code == 200, (query, response.content)
            assert response.json()["count"] == found, (query, zone)
        assert admin.get("/api/alerts/?since=0001-01-01T00:00:00&until=9999-12-31T23:59:59").status_code == 200
        response = admin.post(url, {"count": 5, "timestamp": "2025-10-26T02:30:00"}, format="json")
        assert response.status_code == 400
        assert "Give the time zone" in response.json()["timestamp"][0]


@pytest.mark.parametrize("zone", SITE_ZONES)
@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("since=0001-01-01T00:00:00Z", 200),  # in UTC the first instant there is; a 400 west of UTC
        ("until=9999-12-31T23:59:59Z", 200),  # the last; a 400 east of UTC
        ("until=9999-12-31T23:59:59-03:00", 400),  # after the end of the calendar in UTC
        ("since=0001-01-01T00:00:00%2B05:30", 400),  # before its start
    ],
)
def test_the_ends_of_the_calendar_are_judged_in_utc(admin: APIClient, gate: Location, zone: str, query: str, status):
    with override_settings(TIME_ZONE=zone):
        for url in filtered_urls(gate)[:2]:
            response = admin.get(f"{url}?{query}")
            assert response.status_code == status, (url, response.content)


@pytest.mark.parametrize("zone", SITE_ZONES)
def test_an_hour_before_the_calendar_starts_is_refused_in_every_zone(admin: APIClient, gate: Location, zone: str):
    """The heatmap's default period is the hour before `until`: none before 0001-01-01T01:00:00Z (a 500 east of UTC,
    where `until` was converted to the site's zone first)."""
    [*_, heatmap] = filtered_urls(gate)
    with override_settings(TIME_ZONE=zone):
        response = admin.get(f"{heatmap}?until=0001-01-01T00:59:59Z")
    assert response.status_code == 400
    assert "until" in response.json()


@pytest.mark.parametrize("zone", SITE_ZONES)
def test_filters_with_offsets_select_the_same_instants_in_every_zone(admin: APIClient, gate: Location, zone: str):
    at = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    record_reading(gate, 12, source=CrowdLog.Source.API, at=at)
    url = f"/api/locations/{gate.pk}/readings/"
    with override_settings(TIME_ZONE=zone):
        for since, until, found in [
            ("2026-01-15T15:30:00%2B05:30", "2026-01-15T13:00:00%2B03:00", 1),  # Kolkata, Riyadh: both exactly `at`
            ("2026-01-15T07:00:00-03:00", "2026-01-15T11:00:00%2B01:00", 1),  # Sao Paulo, Berlin
            ("2026-01-15T15:30:01%2B05:30", "2026-01-16T00:00:00Z", 0),  # a second after
            ("2026-01-15T00:00:00Z", "2026-01-15T06:59:59-03:00", 0),  # a second before
        ]:
            response = admin.get(f"{url}?since={since}&until={until}")
            assert response.status_code == 200, response.content
            assert response.json()["count"] == found, (since, until)


@pytest.mark.parametrize("value", ["2026-01-15T15:30:00+05:30", "2026-01-15T13:00+03:00", "2026-01-15T11:00:00.5+0100"])
def test_an_offset_whose_plus_became_a_space_is_explained(admin: APIClient, gate: Location, value: str) -> None:
    """East of UTC (India, Saudi Arabia, Europe) an unencoded offset arrives as " 05:30": "+" is a space in a query
    string. The answer says so, rather than that the format is YYYY-MM-DDThh:mm[:ss][+HH:MM|...], the one sent."""
    for url in filtered_urls(gate):
        response = admin.get(f"{url}?since={value}")  # as typed: not encoded
        assert response.status_code == 400
        assert "%2B" in response.json()["since"][0]
        encoded = value.replace("+", "%2B")
        assert admin.get(f"{url}?since={encoded}").status_code == 200


# --- history buckets --------------------------------------------------------------------------------------------------


def minute(location: Location, at: datetime, count: int = 10) -> None:
    """A per-minute history row, as the write path keeps them."""
    DensitySnapshot.objects.create(
        location=location,
        bucket_start=at,
        bucket_seconds=SNAPSHOT_BUCKET_SECONDS,
        readings=1,
        min_count=count,
        avg_count=count,
        max_count=count,
        min_occupancy=count / 2,
        avg_occupancy=count / 2,
        max_occupancy=count / 2,
    )


@override_settings(TIME_ZONE="Asia/Kolkata")
def test_hourly_buckets_start_on_the_hour_in_india(gate: Location) -> None:
    """India is UTC+5:30: the week chart's hours are 15:00-16:00 and 16:00-17:00 there, not UTC's 15:30-16:30."""
    now = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    minute(gate, datetime(2026, 1, 15, 9, 35, tzinfo=UTC), 10)  # 15:05 IST
    minute(gate, datetime(2026, 1, 15, 10, 5, tzinfo=UTC), 20)  # 15:35 IST
    minute(gate, datetime(2026, 1, 15, 10, 35, tzinfo=UTC), 30)  # 16:05 IST
    points = history(gate, "week", now)["points"]
    assert [(p["t"], p["min_count"], p["max_count"]) for p in points] == [
        ("2026-01-15T09:30:00Z", 10, 20),  # 15:00 IST
        ("2026-01-15T10:30:00Z", 30, 30),  # 16:00 IST
    ]
    # The day's 10-minute buckets were on the wall clock already (+5:30 is a whole number of them).
    assert [p["t"] for p in history(gate, "day", now)["points"]] == [
        "2026-01-15T09:30:00Z",
        "2026-01-15T10:00:00Z",
        "2026-01-15T10:30:00Z",
    ]


@pytest.mark.parametrize(("day", "hours"), [(SPRING_FORWARD, 23), (FALL_BACK, 25)])
@override_settings(TIME_ZONE="Europe/Berlin")
def test_a_dst_change_day_has_23_or_25_hourly_buckets(gate: Location, day: datetime, hours: int) -> None:
    local_midnight = datetime(day.year, day.month, day.day, tzinfo=BERLIN).astimezone(UTC)
    next_midnight = datetime(day.year, day.month, day.day + 1, tzinfo=BERLIN).astimezone(UTC)
    at = local_midnight
    while at < next_midnight:
        minute(gate, at)
        at += timedelta(minutes=20)
    points = history(gate, "week", next_midnight)["points"]
    starts = [datetime.fromisoformat(p["t"]) for p in points]
    assert len(points) == hours
    assert [p["readings"] for p in points] == [3] * hours  # each an hour long
    assert all(later - earlier == timedelta(hours=1) for earlier, later in itertools.pairwise(starts))
    local_hours = [start.astimezone(BERLIN).hour for start in starts]
    twice_or_never = [2, 2] if hours == 25 else []
    assert local_hours == [0, 1, *twice_or_never, *range(3, 24)]


# --- notification texts -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "triggered", "in_email", "in_sms"),
    [
        ("UTC", "2026-01-15T10:00:00Z", "2026-01-15 10:00:00 UTC.", ", 15 Jan 10:00 UTC: "),
        (
            "Asia/Kolkata",
            "2026-01-15T10:00:00Z",
            "2026-01-15 15:30:00 IST (UTC+05:30).",
            ", 15 Jan 15:30 IST (UTC+05:30): ",
        ),
        ("Asia/Riyadh", "2026-01-15T10:00:00Z", "2026-01-15 13:00:00 UTC+03:00.", ", 15 Jan 13:00 UTC+03:00: "),
        ("America/Sao_Paulo", "2026-01-15T10:00:00Z", "2026-01-15 07:00:00 UTC-03:00.", ", 15 Jan 07:00 UTC-03:00: "),
        # The night the clocks go back: 02:30 twice, told apart by the offset.
        (
            "Europe/Berlin",
            "2025-10-26T00:30:00Z",
            "2025-10-26 02:30:00 CEST (UTC+02:00).",
            "26 Oct 02:30 CEST (UTC+02:00)",
        ),
        (
            "Europe/Berlin",
            "2025-10-26T01:30:00Z",
            "2025-10-26 02:30:00 CET (UTC+01:00).",
            "26 Oct 02:30 CET (UTC+01:00)",
        ),
    ],
)
def test_notifications_give_the_alert_time_on_the_site_clock_with_its_zone(
    gate: Location, django_capture_on_commit_callbacks, zone: str, triggered: str, in_email: str, in_sms: str
) -> None:
    """The email said UTC whatever TIME_ZONE was (admin and the commands say the site's time); the SMS said no time
    at all, though a retried one arrives up to an hour late."""
    for kind, target in (("EMAIL", "ops@example.com"), ("SMS", "+15550100")):
        NotificationChannel.objects.create(name=kind, kind=kind, target=target)
    LocmemSmsBackend.outbox.clear()
    with override_settings(TIME_ZONE=zone), django_capture_on_commit_callbacks(execute=True):
        record_reading(gate, 170, source=CrowdLog.Source.CAMERA)
        Alert.objects.update(triggered_at=datetime.fromisoformat(triggered))
    [email] = mail.outbox
    assert f"Triggered at {in_email}" in email.body
    [(_to, text)] = LocmemSmsBackend.outbox
    LocmemSmsBackend.outbox.clear()
    assert in_sms in text
    assert text.startswith("[Crowd Monitor] WARNING Overcrowding alert at Gate A, ")
    assert text.endswith(": Occupancy 85.0% is at or above the alert threshold of 80%.")


# --- admin ----------------------------------------------------------------------------------------------------------


@override_settings(TIME_ZONE="Asia/Kolkata")
def test_admin_pages_name_an_entry_by_the_time_its_fields_show(admin_client, gate: Location) -> None:
    """Admin shows times in TIME_ZONE; an audit entry's or a reading's title (breadcrumbs, heading) showed UTC beside
    them, unlabelled: "2026-01-15 10:00:00 ..." over "At: Jan. 15, 2026, 3:30 p.m."."""
    at = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)  # 15:30 IST
    entry = AuditLog.objects.create(at=at, actor_username="asha", action="update", object_type="x", object_id="1")
    log = record_reading(gate, 12, source=CrowdLog.Source.API, at=at)
    snapshot = DensitySnapshot.objects.get()
    for obj, url in [
        (entry, reverse("admin:accounts_auditlog_change", args=[entry.pk])),
        (log, reverse("admin:locations_crowdlog_change", args=[log.pk])),
        (snapshot, reverse("admin:locations_densitysnapshot_change", args=[snapshot.pk])),
    ]:
        assert "2026-01-15 15:30" in str(obj)
        page = admin_client.get(url).content.decode()
        assert "2026-01-15 15:30" in page and "2026-01-15 10:00" not in page
