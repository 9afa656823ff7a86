"""The HTTP contract of DESIGN.md, spoken by a client with real token authentication."""

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, hash_key
from alerts.models import Alert, Notification
from locations.models import Camera, CrowdLog, DensitySnapshot, Location
from locations.services import record_reading
from locations.state import isoformat

pytestmark = pytest.mark.django_db

CROWD_UPDATE_KEYS = {
    "type",
    "location_id",
    "current_count",
    "capacity_limit",
    "occupancy_percentage",
    "density_level",
    "alert",
    "timestamp",
}


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        _token, key = ApiToken.issue(user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def user_in(username: str, role: str) -> User:
    """A user with one of the roles (groups created by accounts' migration, see accounts/roles.py)."""
    user = User.objects.create_user(username)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def gate() -> Location:
    return Location.objects.create(name="Gate A", capacity_limit=200, latitude=21.42, longitude=39.83)


@pytest.fixture
def admin() -> APIClient:
    return client_for(User.objects.create_superuser("admin", "admin@example.com", None))


@pytest.fixture
def viewer() -> APIClient:
    """The viewer role: reads everything, changes nothing."""
    return client_for(user_in("viewer", "viewer"))


@pytest.fixture
def integrator() -> APIClient:
    return client_for(user_in("integrator", "integrator"))


@pytest.fixture
def operator() -> APIClient:
    """An operator gets the right through a group, as roles are set up in admin."""
    return client_for(user_in("operator", "operator"))


def readings_url(location: Location | int) -> str:
    return f"/api/locations/{getattr(location, 'pk', location)}/readings/"


def overcrowded(location: Location) -> Alert:
    record_reading(location, int(location.capacity_limit * 0.85), source=CrowdLog.Source.CAMERA)
    return Alert.objects.get(location=location, kind="OVERCROWDING", status="ACTIVE")


# --- authentication ------------------------------------------------------------------------------------------------


def test_token_auth(settings: Any, gate: Location) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, only for this test
    User.objects.create_user("ingrid", password="s3cret-pass").groups.add(Group.objects.get(name="integrator"))
    anonymous = APIClient()

    assert (
        anonymous.post("/api/auth/token/", {"username": "ingrid", "password": "wrong"}, format="json").status_code
        == 400
    )
    response = anonymous.post("/api/auth/token/", {"username": "ingrid", "password": "s3cret-pass"}, format="json")
    assert response.status_code == 200, response.content
    token = response.json()["token"]
    assert ApiToken.objects.get(user__username="ingrid").key_hash == hash_key(token)  # stored hashed only

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.get("/api/locations/")
    assert response.status_code == 200
    assert [loc["name"] for loc in response.json()["results"]] == ["Gate A"]

    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/api/locations/").status_code == 401


# --- locations and their live state --------------------------------------------------------------------------------


def test_location_before_any_reading_says_no_data(viewer: APIClient, gate: Location) -> None:
    response = viewer.get(f"/api/locations/{gate.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert CROWD_UPDATE_KEYS - {"type"} <= body.keys()
    assert body["location_id"] == body["id"] == gate.pk
    assert (body["name"], body["latitude"], body["longitude"], body["capacity_limit"]) == ("Gate A", 21.42, 39.83, 200)
    assert (body["medium_threshold"], body["high_threshold"], body["alert_threshold"]) == (30.0, 70.0, 80.0)
    assert body["status"] == "NO_DATA"
    assert body["density_level"] is None
    assert body["current_count"] is None and body["occupancy_percentage"] is None and body["timestamp"] is None
    assert body["alert"] is False


def test_location_after_a_reading_is_live(viewer: APIClient, gate: Location) -> None:
    at = timezone.now() - timedelta(seconds=1)
    record_reading(gate, 145, source=CrowdLog.Source.CAMERA, at=at)

    (body,) = viewer.get("/api/locations/").json()["results"]
    assert body["status"] == "LIVE"
    assert (body["current_count"], body["capacity_limit"], body["occupancy_percentage"]) == (145, 200, 72.5)
    assert body["density_level"] == "HIGH"
    assert body["alert"] is False
    assert body["over_capacity"] is False
    assert body["timestamp"] == isoformat(at)
    assert body["timestamp"].endswith("Z")


def test_location_without_fresh_readings_shows_no_level(viewer: APIClient, gate: Location) -> None:
    record_reading(gate, 20, source=CrowdLog.Source.CAMERA, at=timezone.now() - timedelta(minutes=2))
    body = viewer.get(f"/api/locations/{gate.pk}/").json()
    assert body["status"] == "STALE"
    assert body["density_level"] is None  # never "LOW" when the camera went quiet
    assert body["current_count"] == 20  # the last known count stays, with its timestamp


def test_alert_flag_and_over_capacity(viewer: APIClient, gate: Location) -> None:
    record_reading(gate, 230, source=CrowdLog.Source.CAMERA)
    body = viewer.get(f"/api/locations/{gate.pk}/").json()
    assert (body["occupancy_percentage"], body["density_level"]) == (115.0, "HIGH")
    assert body["over_capacity"] is True
    assert body["alert"] is True


def test_over_capacity_counts_people_not_the_rounded_percentage(viewer: APIClient) -> None:
    stadium = Location.objects.create(name="Stadium", capacity_limit=10_000)
    record_reading(stadium, 10_004, source=CrowdLog.Source.CAMERA)
    body = viewer.get(f"/api/locations/{stadium.pk}/").json()
    assert (body["occupancy_percentage"], body["over_capacity"]) == (100.0, True)  # 4 people too many at "100.0 %"
    record_reading(stadium, 10_000, source=CrowdLog.Source.CAMERA)
    assert viewer.get(f"/api/locations/{stadium.pk}/").json()["over_capacity"] is False  # full is not over


def test_admin_creates_and_changes_a_location(admin: APIClient) -> None:
    response = admin.post(
        "/api/locations/",
        {"name": "Main Hall", "capacity_limit": 500, "latitude": 51.5, "longitude": -0.12, "high_threshold": 60},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "NO_DATA" and body["density_level"] is None
    hall = Location.objects.get(name="Main Hall")
    assert (hall.capacity_limit, hall.latitude, hall.high_threshold, hall.medium_threshold) == (500, 51.5, 60.0, 30.0)

    record_reading(hall, 320, source=CrowdLog.Source.CAMERA)  # 64 %: HIGH with this hall's thresholds
    assert admin.get(f"/api/locations/{hall.pk}/").json()["density_level"] == "HIGH"

    response = admin.patch(f"/api/locations/{hall.pk}/", {"high_threshold": 75}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["density_level"] == "MEDIUM"  # the current count is re-read with the new thresholds
    assert Location.objects.get(pk=hall.pk).density_level == "MEDIUM"

    response = admin.patch(f"/api/locations/{hall.pk}/", {"capacity_limit": 350}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["capacity_limit"], body["occupancy_percentage"], body["density_level"]) == (350, 91.4, "HIGH")
    assert body["alert"] is True
    assert Alert.objects.get(location=hall).kind == "OVERCROWDING"


# --- readings ------------------------------------------------------------------------------------------------------


def test_post_reading_returns_the_crowd_update(integrator: APIClient, gate: Location) -> None:
    response = integrator.post(readings_url(gate), {"count": 145}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == CROWD_UPDATE_KEYS
    assert body["type"] == "crowd_update"
    assert (body["location_id"], body["current_count"], body["capacity_limit"]) == (gate.pk, 145, 200)
    assert (body["occupancy_percentage"], body["density_level"], body["alert"]) == (72.5, "HIGH", False)
    log = CrowdLog.objects.get()
    assert (log.count, log.source, log.capacity_limit, log.density_level) == (145, "api", 200, "HIGH")
    assert body["timestamp"] == isoformat(log.timestamp)


def test_post_reading_with_timestamp_and_alert(integrator: APIClient, gate: Location) -> None:
    at = (timezone.now() - timedelta(seconds=30)).replace(microsecond=0)
    response = integrator.post(readings_url(gate), {"count": 170, "timestamp": at.isoformat()}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["timestamp"] == isoformat(at)
    assert (body["occupancy_percentage"], body["alert"]) == (85.0, True)
    assert CrowdLog.objects.get().timestamp == at
    assert Alert.objects.get().kind == "OVERCROWDING"


def test_late_reading_over_the_api_is_stored_but_not_current(integrator: APIClient, gate: Location) -> None:
    integrator.post(readings_url(gate), {"count": 10}, format="json")
    earlier = (timezone.now() - timedelta(minutes=1)).isoformat()
    response = integrator.post(readings_url(gate), {"count": 199, "timestamp": earlier}, format="json")
    assert response.status_code == 201
    assert response.json()["current_count"] == 10
    assert CrowdLog.objects.count() == 2
    assert not Alert.objects.exists()


def test_readings_list_newest_first_paginated_and_filtered(viewer: APIClient, gate: Location) -> None:
    other = Location.objects.create(name="Gate B", capacity_limit=10)
    record_reading(other, 3, source=CrowdLog.Source.CAMERA)
    base = (timezone.now() - timedelta(minutes=10)).replace(microsecond=0)
    times = [base + timedelta(minutes=i) for i in range(5)]
    for i, at in enumerate(times):
        record_reading(gate, 10 + i, source=CrowdLog.Source.CAMERA, at=at)

    response = viewer.get(readings_url(gate), {"page_size": 2})
    assert response.status_code == 200
    page = response.json()
    assert page["count"] == 5
    assert [r["count"] for r in page["results"]] == [14, 13]
    assert page["results"][0]["capacity_limit"] == 200
    assert page["results"][0]["location_id"] == gate.pk
    assert page["next"] is not None
    second = viewer.get(page["next"]).json()
    assert [r["count"] for r in second["results"]] == [12, 11]

    window = {"since": times[1].isoformat(), "until": times[3].isoformat()}
    response = viewer.get(readings_url(gate), window)
    assert response.status_code == 200
    assert [r["count"] for r in response.json()["results"]] == [13, 12, 11]  # both ends included
    assert [r["count"] for r in viewer.get(readings_url(gate), {"since": times[4].isoformat()}).json()["results"]] == [
        14
    ]


# --- alerts --------------------------------------------------------------------------------------------------------


def test_alerts_list_and_filters(viewer: APIClient, gate: Location) -> None:
    other = Location.objects.create(name="Gate B", capacity_limit=10)
    record_reading(gate, 20, source=CrowdLog.Source.CAMERA)
    record_reading(gate, 170, source=CrowdLog.Source.CAMERA)  # overcrowding and spike
    record_reading(other, 9, source=CrowdLog.Source.CAMERA)  # overcrowding
    spike = Alert.objects.get(kind="SPIKE")
    spike.status = "RESOLVED"
    spike.resolved_at = timezone.now()
    spike.save()

    def listed(**params: Any) -> list[tuple[str, str, str]]:
        response = viewer.get("/api/alerts/", params)
        assert response.status_code == 200, response.content
        return sorted((a["location_name"], a["kind"], a["status"]) for a in response.json()["results"])

    assert len(listed()) == 3
    assert listed(status="ACTIVE") == [("Gate A", "OVERCROWDING", "ACTIVE"), ("Gate B", "OVERCROWDING", "ACTIVE")]
    assert listed(status="RESOLVED") == [("Gate A", "SPIKE", "RESOLVED")]
    assert listed(location=other.pk) == [("Gate B", "OVERCROWDING", "ACTIVE")]
    assert listed(location=gate.pk, kind="SPIKE") == [("Gate A", "SPIKE", "RESOLVED")]
    assert listed(kind="STALE") == []

    newest_first = [a["id"] for a in viewer.get("/api/alerts/").json()["results"]]
    assert newest_first == list(Alert.objects.order_by("-triggered_at", "-id").values_list("id", flat=True))
    detail = viewer.get(f"/api/alerts/{spike.pk}/").json()
    assert (detail["kind"], detail["location_id"], detail["severity"]) == ("SPIKE", gate.pk, "WARNING")


def test_acknowledge_and_resolve_with_notes(operator: APIClient, gate: Location) -> None:
    alert = overcrowded(gate)

    response = operator.post(f"/api/alerts/{alert.pk}/acknowledge/", {"note": "Sending stewards."}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["acknowledged_by"], body["note"]) == ("ACKNOWLEDGED", "operator", "Sending stewards.")
    assert body["acknowledged_at"] is not None and body["resolved_at"] is None

    response = operator.post(f"/api/alerts/{alert.pk}/resolve/", {"note": "Gate 2 opened."}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["resolved_by"], body["note"]) == ("RESOLVED", "operator", "Gate 2 opened.")
    stored = Alert.objects.get(pk=alert.pk)
    assert (stored.status, stored.resolved_by.username, stored.acknowledged_by.username) == (
        "RESOLVED",
        "operator",
        "operator",
    )
    assert operator.get(f"/api/locations/{gate.pk}/").json()["alert"] is False


def test_resolve_without_a_body(operator: APIClient, gate: Location) -> None:
    alert = overcrowded(gate)
    response = operator.post(f"/api/alerts/{alert.pk}/resolve/")
    assert response.status_code == 200, response.content
    assert Alert.objects.get(pk=alert.pk).status == "RESOLVED"


def test_resolving_a_resolved_alert_is_a_conflict(operator: APIClient, gate: Location) -> None:
    alert = overcrowded(gate)
    assert operator.post(f"/api/alerts/{alert.pk}/resolve/", {"note": "first"}, format="json").status_code == 200
    resolved = Alert.objects.get(pk=alert.pk)

    for action in ("resolve", "acknowledge"):
        response = operator.post(f"/api/alerts/{alert.pk}/{action}/", {"note": "again"}, format="json")
        assert response.status_code == 409
        assert "RESOLVED" in response.json()["detail"]
    again = Alert.objects.get(pk=alert.pk)
    assert (again.note, again.resolved_at, again.acknowledged_at) == ("first", resolved.resolved_at, None)


# --- schema and health ---------------------------------------------------------------------------------------------


def test_openapi_schema_is_public() -> None:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert {"get", "post"} <= paths["/api/locations/{id}/readings/"].keys()
    assert "get" in paths["/api/alerts/"]
    assert "post" in paths["/api/alerts/{id}/acknowledge/"]
    assert "post" in paths["/api/alerts/{id}/resolve/"]
    assert "patch" in paths["/api/locations/{id}/"]
    yaml = APIClient().get("/api/schema/")
    assert yaml.status_code == 200 and b"openapi: 3." in yaml.content


def test_health_checks() -> None:
    client = APIClient()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}}


def test_health_checks_answer_probes_by_any_host_name() -> None:
    """Orchestrators probe with the pod's address or an internal name, not a host in ALLOWED_HOSTS: readiness is
    for anyone, like liveness, not a 400 page about the Host header."""
    client = APIClient(HTTP_HOST="10.1.2.3:8000")
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}}
    assert client.get("/api/locations/").status_code == 400  # everything else still checks the host


# --- permissions ---------------------------------------------------------------------------------------------------


DATA_ENDPOINTS = [
    ("get", "/api/locations/"),
    ("get", "/api/locations/{loc}/"),
    ("post", "/api/locations/"),
    ("patch", "/api/locations/{loc}/"),
    ("get", "/api/locations/{loc}/readings/"),
    ("post", "/api/locations/{loc}/readings/"),
    ("get", "/api/alerts/"),
    ("get", "/api/alerts/{alert}/"),
    ("post", "/api/alerts/{alert}/acknowledge/"),
    ("post", "/api/alerts/{alert}/resolve/"),
]


@pytest.mark.parametrize(("method", "path"), DATA_ENDPOINTS)
def test_anonymous_gets_nothing(gate: Location, method: str, path: str) -> None:
    alert = overcrowded(gate)
    before = database_state(gate)
    body = {"count": 5, "name": "Sneaky", "capacity_limit": 1}
    response = getattr(APIClient(), method)(path.format(loc=gate.pk, alert=alert.pk), body, format="json")
    assert response.status_code in (401, 403)
    assert "detail" in response.json()
    assert database_state(gate) == before


def test_viewer_reads_but_changes_nothing(viewer: APIClient, gate: Location) -> None:
    alert = overcrowded(gate)
    for path in ("/api/locations/", f"/api/locations/{gate.pk}/", readings_url(gate), "/api/alerts/"):
        assert viewer.get(path).status_code == 200, path
    before = database_state(gate)

    attempts = [
        viewer.post(readings_url(gate), {"count": 5}, format="json"),
        viewer.post("/api/locations/", {"name": "Mine", "capacity_limit": 10}, format="json"),
        viewer.patch(f"/api/locations/{gate.pk}/", {"capacity_limit": 10}, format="json"),
        viewer.put(f"/api/locations/{gate.pk}/", {"name": "Gate A", "capacity_limit": 10}, format="json"),
        viewer.post(f"/api/alerts/{alert.pk}/acknowledge/", {}, format="json"),
        viewer.post(f"/api/alerts/{alert.pk}/resolve/", {}, format="json"),
    ]
    assert [r.status_code for r in attempts] == [403] * len(attempts)
    assert all(r.json()["detail"] for r in attempts)
    assert database_state(gate) == before


def test_integrator_pushes_readings_but_manages_nothing(integrator: APIClient, gate: Location) -> None:
    assert integrator.post(readings_url(gate), {"count": 170}, format="json").status_code == 201
    alert = Alert.objects.get()
    assert integrator.patch(f"/api/locations/{gate.pk}/", {"capacity_limit": 10}, format="json").status_code == 403
    assert integrator.post("/api/locations/", {"name": "X", "capacity_limit": 10}, format="json").status_code == 403
    assert integrator.post(f"/api/alerts/{alert.pk}/resolve/", {}, format="json").status_code == 403
    assert Alert.objects.get().status == "ACTIVE"
    assert Location.objects.get(pk=gate.pk).capacity_limit == 200


def test_operator_handles_alerts_but_pushes_no_readings(operator: APIClient, gate: Location) -> None:
    alert = overcrowded(gate)
    assert operator.post(readings_url(gate), {"count": 5}, format="json").status_code == 403
    assert operator.patch(f"/api/locations/{gate.pk}/", {"capacity_limit": 10}, format="json").status_code == 403
    assert operator.post(f"/api/alerts/{alert.pk}/acknowledge/", {}, format="json").status_code == 200
    assert CrowdLog.objects.count() == 1


def test_superuser_does_everything(admin: APIClient, gate: Location) -> None:
    assert admin.post(readings_url(gate), {"count": 170}, format="json").status_code == 201
    alert = Alert.objects.get()
    assert admin.post(f"/api/alerts/{alert.pk}/acknowledge/", {}, format="json").status_code == 200
    assert admin.post(f"/api/alerts/{alert.pk}/resolve/", {}, format="json").status_code == 200
    assert admin.patch(f"/api/locations/{gate.pk}/", {"capacity_limit": 300}, format="json").status_code == 200
    assert admin.post("/api/locations/", {"name": "Gate C", "capacity_limit": 10}, format="json").status_code == 201
    assert admin.get(readings_url(gate)).json()["count"] == 1


# --- bad input: a 4xx with a JSON reason, and nothing changed ------------------------------------------------------


def database_state(*locations: Location) -> dict[str, Any]:
    return {
        "crowd_logs": CrowdLog.objects.count(),
        "alerts": list(Alert.objects.order_by("pk").values_list("pk", "status", "severity", "note", "resolved_at")),
        "locations": Location.objects.count(),
        "snapshots": list(DensitySnapshot.objects.values_list("pk", "readings")),
        "notifications": Notification.objects.count(),
        "state": [
            Location.objects.filter(pk=loc.pk)
            .values(
                "name",
                "capacity_limit",
                "medium_threshold",
                "high_threshold",
                "latitude",
                "current_count",
                "occupancy_percentage",
                "density_level",
                "last_reading_at",
                "updated_at",
            )
            .get()
            for loc in locations
        ],
    }


@pytest.fixture
def busy_gate(gate: Location) -> Location:
    """A location with a reading and an open alert, so that any stray change would show."""
    overcrowded(gate)
    return gate


def assert_json_error(response: Any, status: int, names: str) -> None:
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body
    assert names.lower() in json.dumps(body).lower(), body


FAR_FUTURE = "2999-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"count": -1}, "count"),
        ({"count": 12.5}, "count"),
        ({"count": "12"}, "count"),
        ({"count": True}, "count"),
        ({"count": None}, "count"),
        ({}, "count"),
        ({"timestamp": "2026-01-01T00:00:00Z"}, "count"),
        ({"count": 10**9}, "count"),
        ({"count": 10**30}, "count"),
        ({"count": 5, "timestamp": "yesterday"}, "timestamp"),
        ({"count": 5, "timestamp": "2026-13-45T00:00:00Z"}, "timestamp"),
        ({"count": 5, "timestamp": FAR_FUTURE}, "future"),
        ({"count": 5, "timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp"),
        ({"count": 5, "timestamp": "0001-01-01T00:00:30Z"}, "before 2000-01-01"),  # was a 500 (OverflowError)
        ({"count": 5, "timestamp": "2026-01-01T09:00:00"}, "give the time zone"),  # was taken as UTC
        ({"count": 5, "timestamp": 1700000000}, "timestamp"),
        ([5], "dictionary"),
        ("5", "dictionary"),
    ],
)
def test_bad_readings(admin: APIClient, busy_gate: Location, body: Any, names: str) -> None:
    before = database_state(busy_gate)
    response = admin.post(readings_url(busy_gate), body, format="json")
    assert_json_error(response, 400, names)
    assert database_state(busy_gate) == before


def test_future_reading_message(admin: APIClient, busy_gate: Location) -> None:
    soon = (timezone.now() + timedelta(minutes=5)).isoformat()
    response = admin.post(readings_url(busy_gate), {"count": 5, "timestamp": soon}, format="json")
    assert_json_error(response, 400, "timestamp is in the future")


def test_reading_for_an_unknown_location(admin: APIClient, busy_gate: Location) -> None:
    before = database_state(busy_gate)
    for location_id in (busy_gate.pk + 1000, 10**25):
        assert_json_error(admin.post(readings_url(location_id), {"count": 5}, format="json"), 404, "location")
        assert_json_error(admin.get(readings_url(location_id)), 404, "location")
    assert_json_error(admin.post("/api/locations/abc/readings/", {"count": 5}, format="json"), 404, "not found")
    assert database_state(busy_gate) == before


def test_reading_for_an_inactive_location(admin: APIClient, busy_gate: Location) -> None:
    Location.objects.filter(pk=busy_gate.pk).update(is_active=False)
    before = database_state(busy_gate)
    assert_json_error(admin.post(readings_url(busy_gate), {"count": 5}, format="json"), 400, "inactive")
    assert database_state(busy_gate) == before


def test_oversized_body(admin: APIClient, busy_gate: Location) -> None:
    before = database_state(busy_gate)
    body = json.dumps({"count": 5, "padding": "x" * 300_000})
    response = admin.post(readings_url(busy_gate), body, content_type="application/json")
    assert_json_error(response, 413, "too large")
    response = admin.patch(f"/api/locations/{busy_gate.pk}/", body, content_type="application/json")
    assert_json_error(response, 413, "too large")
    assert database_state(busy_gate) == before


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("{count: 5", "application/json", 400),
        ('{"count": 5', "application/json", 400),
        ('{"count": NaN}', "application/json", 400),
        ("\xff\xfe", "application/json", 400),
        ("count=5", "text/plain", 415),
    ],
)
def test_unparseable_bodies(admin: APIClient, busy_gate: Location, body: str, content_type: str, status: int) -> None:
    before = database_state(busy_gate)
    response = admin.post(readings_url(busy_gate), body, content_type=content_type)
    assert_json_error(response, status, "")
    assert "detail" in response.json()
    assert database_state(busy_gate) == before


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"name": "New", "capacity_limit": 0}, "capacity_limit"),
        ({"name": "New", "capacity_limit": -5}, "capacity_limit"),
        ({"name": "New", "capacity_limit": "abc"}, "capacity_limit"),
        ({"name": "New", "capacity_limit": 10**12}, "capacity_limit"),
        ({"name": "New"}, "capacity_limit"),
        ({"name": "New", "capacity_limit": 10, "medium_threshold": 70, "high_threshold": 70}, "medium_threshold"),
        ({"name": "New", "capacity_limit": 10, "medium_threshold": 75}, "medium_threshold"),
        ({"name": "New", "capacity_limit": 10, "latitude": 91}, "latitude"),
        ({"name": "New", "capacity_limit": 10, "longitude": -181}, "longitude"),
        ({"name": "New", "capacity_limit": 10, "latitude": "NaN"}, "latitude"),
        ({"name": "New", "capacity_limit": 10, "alert_threshold": 0}, "alert_threshold"),
        ({"name": "New", "capacity_limit": 10, "expected_interval_seconds": 0}, "expected_interval_seconds"),
        ({"name": "New", "capacity_limit": 10, "expected_interval_seconds": 10**18}, "expected_interval_seconds"),
        ({"name": "New", "capacity_limit": 10, "spike_window_seconds": 10**18}, "spike_window_seconds"),
        ({"name": "New", "capacity_limit": 10, "alert_cooldown_seconds": 10**18}, "alert_cooldown_seconds"),
        # Longer than a week (locations.models.MAX_SETTING_SECONDS, the limit Django admin applies too).
        ({"name": "New", "capacity_limit": 10, "expected_interval_seconds": 604_801}, "expected_interval_seconds"),
        ({"name": "New", "capacity_limit": 10, "spike_window_seconds": 604_801}, "spike_window_seconds"),
        ({"name": "New", "capacity_limit": 10, "alert_cooldown_seconds": 604_801}, "alert_cooldown_seconds"),
        ({"capacity_limit": 10}, "name"),
        ({"name": "", "capacity_limit": 10}, "name"),
        ({"name": "x" * 121, "capacity_limit": 10}, "name"),
        ({"name": "Gate A", "capacity_limit": 10}, "name"),  # duplicate
    ],
)
def test_bad_new_locations(admin: APIClient, busy_gate: Location, body: dict[str, Any], names: str) -> None:
    before = database_state(busy_gate)
    assert_json_error(admin.post("/api/locations/", body, format="json"), 400, names)
    assert database_state(busy_gate) == before
    assert admin.get("/api/locations/").status_code == 200  # and nothing half-stored breaks the listing


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"capacity_limit": 0}, "capacity_limit"),
        ({"capacity_limit": -5}, "capacity_limit"),
        ({"capacity_limit": "abc"}, "capacity_limit"),
        ({"capacity_limit": None}, "capacity_limit"),
        ({"medium_threshold": 70}, "medium_threshold"),  # equal to the stored high threshold
        ({"high_threshold": 25}, "medium_threshold"),  # below the stored medium threshold
        ({"medium_threshold": 60, "high_threshold": 50}, "medium_threshold"),
        ({"latitude": 91}, "latitude"),
        ({"name": ""}, "name"),
        ({"name": "Gate B"}, "name"),  # taken by another location
        ({"expected_interval_seconds": 10**18}, "expected_interval_seconds"),
        ({"spike_window_seconds": 604_801}, "spike_window_seconds"),
        ({"alert_cooldown_seconds": 2**63 - 1}, "alert_cooldown_seconds"),
    ],
)
def test_bad_location_changes(admin: APIClient, busy_gate: Location, body: dict[str, Any], names: str) -> None:
    other = Location.objects.create(name="Gate B", capacity_limit=10)
    before = database_state(busy_gate, other)
    assert_json_error(admin.patch(f"/api/locations/{busy_gate.pk}/", body, format="json"), 400, names)
    assert database_state(busy_gate, other) == before


def test_unknown_location_change(admin: APIClient, busy_gate: Location) -> None:
    before = database_state(busy_gate)
    response = admin.patch(f"/api/locations/{busy_gate.pk + 1000}/", {"capacity_limit": 5}, format="json")
    assert_json_error(response, 404, "location")
    assert database_state(busy_gate) == before


def test_bad_alert_actions(admin: APIClient, busy_gate: Location) -> None:
    alert = Alert.objects.get()
    before = database_state(busy_gate)
    for action in ("acknowledge", "resolve"):
        assert_json_error(admin.post(f"/api/alerts/{alert.pk + 1000}/{action}/", {}, format="json"), 404, "alert")
        assert_json_error(admin.post(f"/api/alerts/{10**25}/{action}/", {}, format="json"), 404, "alert")
        response = admin.post(f"/api/alerts/{alert.pk}/{action}/", {"note": "x" * 2001}, format="json")
        assert_json_error(response, 400, "note")
        response = admin.post(f"/api/alerts/{alert.pk}/{action}/", {"note": ["not", "text"]}, format="json")
        assert_json_error(response, 400, "note")
        response = admin.get(f"/api/alerts/{alert.pk}/{action}/")
        assert_json_error(response, 405, "not allowed")
    assert database_state(busy_gate) == before
    # A note of exactly the limit is fine.
    response = admin.post(f"/api/alerts/{alert.pk}/resolve/", {"note": "x" * 2000}, format="json")
    assert response.status_code == 200
    assert len(Alert.objects.get(pk=alert.pk).note) == 2000


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/api/alerts/?status=BOGUS", "status"),
        ("/api/alerts/?kind=FIRE", "kind"),
        ("/api/alerts/?location=abc", "location"),
        ("/api/alerts/?location=0", "location"),
        ("/api/alerts/?location=99999999999999999999999", "location"),
        ("/api/locations/{loc}/readings/?since=notadate", "since"),
        ("/api/locations/{loc}/readings/?until=2026-02-30T00:00:00Z", "until"),
        ("/api/locations/{loc}/readings/?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since"),
        ("/api/locations/{loc}/readings/?page=abc", "invalid page"),
        ("/api/alerts/?page=999", "invalid page"),
    ],
)
def test_bad_queries(viewer: APIClient, busy_gate: Location, path: str, names: str) -> None:
    response = viewer.get(path.format(loc=busy_gate.pk))
    assert_json_error(response, 404 if "page" in names else 400, names)


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("until=0001-01-01T00:00:00Z", "until"),  # the hour before it, the default period, is before the calendar
        ("until=0001-01-01T00:59:59Z", "until"),
        ("since=0001-01-01T00:30:00Z&until=0001-01-01T00:00:00Z", "since"),
    ],
)
def test_bad_heatmap_queries(viewer: APIClient, gate: Location, query: str, names: str) -> None:
    camera = Camera.objects.create(location=gate, name="North", source="/dev/null")
    assert_json_error(viewer.get(f"/api/cameras/{camera.pk}/heatmap/?{query}"), 400, names)


def test_heatmap_of_the_first_hour_of_the_calendar_is_empty(viewer: APIClient, gate: Location) -> None:
    camera = Camera.objects.create(location=gate, name="North", source="/dev/null")
    response = viewer.get(f"/api/cameras/{camera.pk}/heatmap/?since=0001-01-01T00:00:00Z&until=0001-01-01T00:30:00Z")
    assert response.status_code == 200, response.content
    assert (response.json()["readings"], response.json()["since"]) == (0, "0001-01-01T00:00:00Z")


@pytest.mark.parametrize("path", ["/api/nope/", "/api/locations/abc/", "/api/alerts/1/explode/", "/api/v2/locations/"])
def test_unknown_api_paths_are_json_404(admin: APIClient, path: str) -> None:
    assert_json_error(admin.get(path), 404, "not found")
