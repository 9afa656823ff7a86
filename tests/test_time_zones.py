"""Time zones and clock edges: sites in India (UTC+5:30), Saudi Arabia, Brazil and Europe (a DST change day).

TIME_ZONE is the site's zone (admin, command output, notification texts); stored times, durations and the alert rules
work on absolute instants, so a wall clock jumping an hour neither raises nor hides an alert.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import ApiToken
from alerts.engine import AlertKind
from alerts.models import Alert
from locations.models import CrowdLog, Location
from locations.services import record_reading

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
