"""The operator pages as HTML (no browser): who may see them, what they embed, and that they are ready for a strict
Content-Security-Policy and a closed network. The browser behaviour is in test_browser.py."""

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone

from alerts.models import Alert
from locations.models import Location

PAGES = ["/", "/alerts/"]


def with_role(user: Any, role: str, *fallback: str) -> Any:
    """Give `user` the product's role group when it exists, else the role's one distinguishing permission."""
    group = Group.objects.filter(name=role).first()
    if group is not None:
        user.groups.add(group)
    for perm in fallback if group is None else ():
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


@pytest.fixture
def operator(django_user_model: Any) -> Any:
    """An operator: watches the dashboard and handles alerts (alerts.change_alert)."""
    user = django_user_model.objects.create_user("operator", password="pw-operator-123")
    return with_role(user, "operator", "alerts.change_alert")


@pytest.fixture
def viewer(django_user_model: Any) -> Any:
    """A viewer: watches the dashboard; may not change alerts."""
    return with_role(django_user_model.objects.create_user("viewer", password="pw-operator-123"), "viewer")


@pytest.fixture
def location() -> Location:
    return Location.objects.create(name="Gate A", capacity_limit=100, latitude=51.5, longitude=-0.1)


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_config(response: Any) -> dict[str, Any]:
    match = re.search(r'<script id="cm-config" type="application/json">(.*?)</script>', response.content.decode())
    assert match, "the page embeds its data with json_script"
    return json.loads(match.group(1))


@pytest.mark.django_db
@pytest.mark.parametrize("path", [*PAGES, "/locations/1/"])
def test_pages_require_login(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.django_db
def test_login_page_renders(client: Client) -> None:
    response = client.get("/login/")
    assert response.status_code == 200
    assert b'<label class="label" for="id_username">Username</label>' in response.content


@pytest.mark.django_db
def test_operator_may_handle_alerts_and_a_viewer_may_not(operator: Any, viewer: Any, location: Location) -> None:
    alert = Alert.objects.create(
        location=location, kind="OVERCROWDING", key="OVERCROWDING", severity="WARNING", message="m"
    )
    for user, allowed in ((operator, True), (viewer, False)):
        config = page_config(signed_in(user).get("/"))
        assert config["can_handle_alerts"] is allowed
        assert [a["id"] for a in config["open_alerts"]] == [alert.pk]
        assert config["locations"][0]["name"] == "Gate A"


@pytest.mark.django_db
def test_location_page(operator: Any, location: Location) -> None:
    client = signed_in(operator)
    response = client.get(f"/locations/{location.pk}/")
    assert response.status_code == 200
    assert page_config(response)["location"]["id"] == location.pk
    assert client.get("/locations/999999/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", *PAGES, "/locations/{id}/"])
def test_pages_have_no_inline_code_and_load_nothing_remote(operator: Any, location: Location, path: str) -> None:
    client = Client() if path == "/login/" else signed_in(operator)
    html = client.get(path.format(id=location.pk)).content.decode()
    # A strict CSP (script-src 'self'; style-src 'self') will forbid inline scripts, handlers and styles.
    scripts = re.findall(r"<script\b([^>]*)>", html)
    assert scripts or path == "/login/"
    for attrs in scripts:
        assert 'src="/static/' in attrs or 'type="application/json"' in attrs, attrs
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style attribute"
    assert "<style" not in html
    # A closed network: every script, stylesheet and image comes from this server.
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not re.match(r"^(https?:)?//", url), url


@pytest.mark.django_db
def test_alerts_api_filters_by_time(operator: Any, location: Location) -> None:
    now = timezone.now()
    old = Alert.objects.create(
        location=location,
        kind="SPIKE",
        key="SPIKE",
        severity="WARNING",
        message="old",
        status="RESOLVED",
        triggered_at=now - timedelta(hours=3),
    )
    new = Alert.objects.create(
        location=location,
        kind="OVERCROWDING",
        key="OVERCROWDING",
        severity="WARNING",
        message="new",
        triggered_at=now - timedelta(minutes=5),
    )
    client = signed_in(operator)

    def ids(query: dict[str, str]) -> list[int]:
        response = client.get("/api/alerts/", query)
        assert response.status_code == 200, response.content
        return [a["id"] for a in response.json()["results"]]

    hour_ago = (now - timedelta(hours=1)).isoformat()
    assert ids({"since": hour_ago}) == [new.pk]
    assert ids({"until": hour_ago}) == [old.pk]
    assert ids({"since": (now - timedelta(hours=4)).isoformat(), "until": hour_ago, "kind": "SPIKE"}) == [old.pk]
    assert ids({}) == [new.pk, old.pk]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45T99:00:00Z"}, "until"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ],
)
def test_alerts_api_rejects_bad_time_filters(operator: Any, query: dict[str, str], field: str) -> None:
    response = signed_in(operator).get("/api/alerts/", query)
    assert response.status_code == 400
    assert field in response.json()
