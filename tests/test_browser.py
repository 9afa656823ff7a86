"""The operator pages in a real headless Chromium, against the real ASGI app (HTTP + WebSocket) under uvicorn.

Chromium comes from the system (Debian's `chromium`; `CHROMIUM_PATH` points elsewhere): Playwright's own browser
downloads are not used. Screenshots of every page land in test-artifacts/ for a person to look at.
Runs on SQLite and the in-memory channel layer by default, PostgreSQL and Redis with DATABASE_URL / REDIS_URL.
"""

import importlib.util
import itertools
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.sessions.models import Session
from django.db import OperationalError, connections
from django.utils import timezone

from alerts import services as alert_services
from alerts.models import Alert
from locations.models import Camera, CameraFrame, Location
from locations.services import record_reading

from .conftest import LiveAsgiServer, launch_chromium

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
# The design's density colours as the map draws them (static/js/common.js CM.LEVEL_COLORS).
LEVEL_COLORS = {"LOW": "#22c55e", "MEDIUM": "#f59e0b", "HIGH": "#ef4444", "NO_DATA": "#64748b"}
LIVE = 1000  # ms: a reading must be on screen within a second
RECONNECT = 15000  # ms: back-off after a server restart is at most a few seconds


# --- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture
def off_loop() -> Iterator[Callable[..., Any]]:
    """`off_loop(fn, *args, **kwargs)`: run server-side code (ORM, record_reading) in a thread of its own.

    Playwright's sync API keeps its asyncio loop marked as running in the test's thread between calls; there
    Django refuses ORM calls and `async_to_sync` (which publishes live updates) refuses to run. The thread is
    like another process writing to the database, and closes its connections after each call.
    """
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="server-side")

    def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def call() -> Any:
            # The test database on SQLite is in memory with a shared cache: a table another connection (a server
            # thread) is reading is "locked" at once, without the busy timeout. The work is one transaction, so
            # trying it again is safe; production's file database never shares its cache.
            for attempt in range(20):
                try:
                    return fn(*args, **kwargs)
                except OperationalError as exc:
                    if "table is locked" not in str(exc) or attempt == 19:
                        raise
                    time.sleep(0.05)
                finally:
                    connections.close_all()
            raise AssertionError("unreachable")

        return executor.submit(call).result(timeout=30)

    yield run
    executor.shutdown()


@dataclass
class Watched:
    """A page plus what it did: every request URL, console errors and uncaught exceptions."""

    page: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.evaluate("window.scrollTo(0, 0)")  # the sticky header stays on top of a full-page shot
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture
def open_page(
    live_asgi_server: LiveAsgiServer, session_cookie_for: Callable, off_loop: Callable
) -> Iterator[Callable[..., Watched]]:
    """`open_page(user=None, path="/", width=1440, height=900, timezone_id=None)`: a page in a fresh context, signed
    in as `user`, with the browser's clock in `timezone_id` (an IANA name; default: the machine's).

    Chromium starts on the first call, so a test sets up its data before; from then on, server-side code goes
    through `off_loop`. It stops before the live server and the database are torn down.
    """
    started: dict[str, Any] = {}
    cookies: dict[int, str] = {}  # one session per user: signing in again would write while pages read

    def open_(
        user: Any = None, path: str = "/", width: int = 1440, height: int = 900, timezone_id: str | None = None
    ) -> Watched:
        if user is not None and user.pk not in cookies:
            cookies[user.pk] = off_loop(session_cookie_for, user)
        cookie = cookies.get(user.pk) if user is not None else None
        if not started:
            started["playwright"] = playwright_sync.sync_playwright().start()
            started["browser"] = launch_chromium(started["playwright"])
        context = started["browser"].new_context(
            viewport={"width": width, "height": height}, base_url=live_asgi_server.url, timezone_id=timezone_id
        )
        if cookie is not None:
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_asgi_server.url}])
        page = context.new_page()
        page.set_default_timeout(5000)
        watched = Watched(page)
        page.on("request", lambda request: watched.requests.append(request.url))
        page.on("websocket", lambda socket: watched.requests.append(socket.url))
        page.on("response", lambda r: watched.errors.append(f"HTTP {r.status} {r.url}") if r.status >= 500 else None)
        page.on("console", lambda msg: watched.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: watched.errors.append(f"uncaught: {exc}"))
        page.goto(path)
        return watched

    yield open_
    if started:
        started["browser"].close()
        started["playwright"].stop()


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
    user = django_user_model.objects.create_user("duty-officer", password="correct horse battery staple")
    return with_role(user, "operator", "alerts.change_alert")


@pytest.fixture
def viewer(django_user_model: Any) -> Any:
    """A viewer: watches the dashboard; may not change alerts."""
    return with_role(
        django_user_model.objects.create_user("watcher", password="correct horse battery staple"), "viewer"
    )


@pytest.fixture
def api(live_asgi_server: LiveAsgiServer, django_user_model: Any, api_token_for: Callable) -> requests.Session:
    """An integrator's HTTP client for the live server (an admin's token)."""
    admin = django_user_model.objects.create_superuser("integrator", "i@example.com", "not-used")
    session = requests.Session()
    session.trust_env = False  # never a proxy: the server is on loopback
    session.headers["Authorization"] = f"Token {api_token_for(admin)}"
    session.base_url = live_asgi_server.url  # type: ignore[attr-defined]
    return session


def place(name: str, capacity: int = 100, lat: float | None = 51.5, lon: float | None = -0.12, **kw: Any) -> Location:
    return Location.objects.create(name=name, capacity_limit=capacity, latitude=lat, longitude=lon, **kw)


def card(page: Any, location: Location) -> Any:
    return page.locator(f"#location-{location.pk}")


def wait_live(page: Any) -> None:
    expect(page.locator("#connection")).to_have_text("Live")


# --- tests ----------------------------------------------------------------------------------------------------------


def test_login_then_cards_chart_and_colours_follow_readings_live(
    open_page: Callable, off_loop: Callable, operator: Any, api: Any
) -> None:
    gate = place("North Gate", capacity=200, lat=51.50, lon=-0.12)
    hall = place("Main Hall", capacity=100, lat=51.51, lon=-0.13)
    record_reading(hall, 20, source="api")
    stadium = place("Stadium", capacity=10_000, lat=51.56, lon=-0.28)
    record_reading(stadium, 10_004, source="api")  # "100.0 %", yet four people over

    watched = open_page(path="/")
    page = watched.page
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    watched.screenshot("login", full_page=False)
    page.get_by_label("Username").fill("duty-officer")
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("link", name="North Gate")).to_be_visible()
    expect(page.get_by_role("link", name="Main Hall")).to_be_visible()
    expect(card(page, hall).locator(".current-count")).to_have_text("20")
    expect(card(page, hall)).to_have_attribute("data-level", "LOW")
    expect(card(page, gate).locator(".level")).to_have_text("No data")
    expect(card(page, stadium).locator(".badge-over")).to_be_visible()
    expect(card(page, hall).locator(".badge-over")).to_be_hidden()
    wait_live(page)

    # An integrator pushes a reading over the API: the card, its colour and the chart change without a reload.
    response = api.post(f"{api.base_url}/api/locations/{gate.pk}/readings/", json={"count": 90}, timeout=5)
    assert response.status_code == 201, response.text
    gate_card = card(page, gate)
    expect(gate_card.locator(".current-count")).to_have_text("90", timeout=LIVE)
    expect(gate_card.locator(".occupancy")).to_have_text("45.0%", timeout=LIVE)
    expect(gate_card).to_have_attribute("data-level", "MEDIUM", timeout=LIVE)
    expect(gate_card.locator(".level")).to_have_text("Medium", timeout=LIVE)
    chart = page.locator("#occupancy-chart")
    expect(chart).to_have_attribute("aria-label", re.compile(r"North Gate 45\.0%"), timeout=LIVE)
    colour = gate_card.locator(".gauge-fill").evaluate("node => getComputedStyle(node).backgroundColor")
    assert colour == "rgb(245, 158, 11)", colour  # the MEDIUM amber

    off_loop(record_reading, gate, 150, source="api")
    expect(gate_card.locator(".current-count")).to_have_text("150", timeout=LIVE)
    expect(gate_card).to_have_attribute("data-level", "HIGH", timeout=LIVE)
    expect(chart).to_have_attribute("aria-label", re.compile(r"North Gate 75\.0%"), timeout=LIVE)
    points = chart.get_attribute("data-points")
    assert points is not None and int(points.split(",")[1]) >= 2, points  # datasets follow card order by name
    expect(page.locator("#sum-people")).to_have_text(re.compile(r"^10,?174$"))
    assert not watched.errors, watched.errors


def test_alert_appears_live_and_is_resolved_with_a_note_in_the_page(
    open_page: Callable, off_loop: Callable, operator: Any, api: Any, django_user_model: Any
) -> None:
    concourse = place("Concourse", capacity=100)
    platform = place("Platform 4", capacity=50, lat=51.52)
    record_reading(concourse, 50, source="api")
    record_reading(platform, 10, source="api")
    watched = open_page(operator, "/")
    page = watched.page
    wait_live(page)
    expect(page.locator("#no-alerts")).to_be_visible()

    off_loop(record_reading, concourse, 85, source="api")
    alert = off_loop(Alert.objects.get, location=concourse, kind="OVERCROWDING")
    item = page.locator(f"#alert-feed #alert-{alert.pk}")
    expect(item).to_be_visible(timeout=LIVE)
    expect(item).to_contain_text("Concourse")
    expect(page.locator("#alert-banner")).to_be_visible()
    expect(page.locator("#alert-banner")).to_contain_text("Overcrowding at Concourse")
    expect(page.locator("#alert-announcer")).to_contain_text("Concourse")
    expect(card(page, concourse)).to_have_attribute("data-alert", "true", timeout=LIVE)

    item.get_by_role("button", name=re.compile("^Resolve")).click()
    dialog = page.locator("#alert-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label(re.compile("Note")).fill("Opened gates 3 and 4; crowd dispersed.")
    dialog.get_by_role("button", name="Resolve").click()
    expect(dialog).to_be_hidden()
    expect(item).to_have_count(0)
    resolved_item = page.locator(f"#resolved-feed #resolved-alert-{alert.pk}")
    expect(resolved_item).to_contain_text("Resolved")
    expect(resolved_item).to_contain_text("by duty-officer")
    expect(resolved_item).to_contain_text("Opened gates 3 and 4; crowd dispersed.")
    # The jump from 50 to 85 was also a SPIKE, still open; the handled alert leaves the banner.
    expect(page.locator("#alert-banner")).not_to_contain_text("Overcrowding at Concourse")
    expect(page.locator("#alert-banner")).to_contain_text("Spike at Concourse")

    body = api.get(f"{api.base_url}/api/alerts/{alert.pk}/", timeout=5).json()
    assert body["status"] == "RESOLVED"
    assert body["resolved_by"] == "duty-officer"
    assert body["note"] == "Opened gates 3 and 4; crowd dispersed."

    # Someone else acts first while this operator's dialog is open: the page says so instead of pretending.
    off_loop(record_reading, platform, 45, source="api")
    second = off_loop(Alert.objects.get, location=platform, kind="OVERCROWDING")
    second_item = page.locator(f"#alert-feed #alert-{second.pk}")
    second_item.get_by_role("button", name=re.compile("^Acknowledge")).click()
    expect(dialog).to_be_visible()
    colleague = off_loop(django_user_model.objects.create_user, "night-shift")
    off_loop(alert_services.resolve, second, colleague, "Handled on the radio.")
    dialog.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#alert-dialog-error")).to_contain_text("someone else changed this alert first")
    expect(page.locator("#alert-dialog-error")).to_contain_text("RESOLVED")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator(f"#resolved-alert-{second.pk}")).to_contain_text("by night-shift")
    # Chromium logs every non-2xx response; the 409 was expected and handled.
    unexpected = [error for error in watched.errors if "status of 409" not in error]
    assert not unexpected, unexpected


def test_an_acknowledged_alert_that_escalates_is_announced_and_acknowledged_anew(
    open_page: Callable, off_loop: Callable, operator: Any
) -> None:
    stand = place("North Stand", capacity=100)
    record_reading(stand, 85, source="api")
    alert = Alert.objects.get(location=stand, kind="OVERCROWDING")
    watched = open_page(operator, "/")
    page = watched.page
    wait_live(page)
    item = page.locator(f"#alert-feed #alert-{alert.pk}")
    item.get_by_role("button", name=re.compile("^Acknowledge")).click()
    page.locator("#alert-dialog-note").fill("Stewards on the way.")
    page.keyboard.press("Control+Enter")
    expect(item).to_contain_text("Acknowledged")
    expect(page.locator("#alert-banner")).not_to_contain_text("Overcrowding at North Stand")

    # The stand goes over capacity: the same alert, now CRITICAL, must be seen and acknowledged again.
    off_loop(record_reading, stand, 104, source="api")
    banner = page.locator("#alert-banner")
    expect(banner).to_be_visible(timeout=LIVE)
    expect(banner).to_contain_text("Escalated: Overcrowding at North Stand")
    expect(banner).to_have_attribute("data-severity", "CRITICAL")
    expect(page.locator("#alert-announcer")).to_contain_text("Alert escalated to critical at North Stand")
    expect(item.get_by_role("button", name=re.compile("^Acknowledge"))).to_be_visible()
    expect(item).not_to_contain_text("Acknowledged")
    watched.screenshot("alert-escalated", full_page=False)
    assert not watched.errors, watched.errors


def test_server_restart_shows_reconnecting_then_catches_up(
    open_page: Callable, off_loop: Callable, operator: Any, live_asgi_server: LiveAsgiServer
) -> None:
    lobby = place("Lobby", capacity=100)
    stand = place("East Stand", capacity=100, lat=51.6)
    record_reading(lobby, 10, source="api")
    record_reading(stand, 10, source="api")
    page = open_page(operator, "/").page
    wait_live(page)
    expect(card(page, lobby).locator(".current-count")).to_have_text("10")

    live_asgi_server.stop()
    expect(page.locator("#connection")).to_have_text("Reconnecting…")
    expect(page.locator("#offline-bar")).to_be_visible()
    # Recorded while nobody can be told: the page must catch up, and must not lose the alert.
    off_loop(record_reading, lobby, 30, source="api")
    off_loop(record_reading, lobby, 42, source="api")
    off_loop(record_reading, stand, 95, source="api")
    alert = off_loop(Alert.objects.get, location=stand, kind="OVERCROWDING")
    live_asgi_server.start()

    expect(page.locator("#connection")).to_have_text("Live", timeout=RECONNECT)
    expect(page.locator("#offline-bar")).to_be_hidden()
    expect(card(page, lobby).locator(".current-count")).to_have_text("42")
    expect(card(page, stand)).to_have_attribute("data-level", "HIGH")
    expect(page.locator(f"#alert-feed #alert-{alert.pk}")).to_be_visible()
    expect(page.locator("#alert-banner")).to_contain_text("East Stand")
    # The chart fills the gap from the stored readings (30 and 42), not just with the newest state.
    expect(page.locator("#occupancy-chart")).to_have_attribute("aria-label", re.compile(r"Lobby 42\.0%"))
    lobby_values = "Chart.getChart('occupancy-chart').data.datasets.find(d => d.label === 'Lobby').data.map(p => p.y)"
    page.wait_for_function(f"{lobby_values}.includes(30)")
    assert page.evaluate(lobby_values)[-3:] == [10, 30, 42]

    # The session ends while the server is away: the page says so and offers to sign in, instead of retrying.
    live_asgi_server.stop()
    off_loop(Session.objects.all().delete)
    live_asgi_server.start()
    expect(page.locator("#connection")).to_have_text("Signed out", timeout=RECONNECT)
    page.locator("#offline-bar").get_by_role("link", name="Sign in again").click()
    expect(page).to_have_url(re.compile(r"/login/\?next=(/|%2F)$"))


def test_stale_is_no_data_map_colours_local_only_and_clean_console(
    open_page: Callable, off_loop: Callable, operator: Any
) -> None:
    now = timezone.now()
    low = place("Arrivals", lat=51.50, lon=-0.10)
    medium = place("Food Court", lat=51.51, lon=-0.12)
    high = place("Gate B", lat=51.52, lon=-0.14)
    stale = place("West Car Park", lat=51.49, lon=-0.16)  # 5 s interval: stale after 15 s
    fading = place("Tunnel", lat=51.53, lon=-0.11, expected_interval_seconds=1)  # stale 3 s after its reading
    unplaced = place("Roof Terrace", lat=None, lon=None)
    record_reading(low, 12, source="api")
    record_reading(medium, 55, source="api")
    record_reading(high, 92, source="api")
    record_reading(stale, 10, source="api", at=now - timedelta(seconds=40))  # would be LOW if it were fresh
    record_reading(unplaced, 5, source="api")

    watched = open_page(operator, "/")
    page = watched.page
    wait_live(page)
    page.wait_for_load_state("networkidle")  # SQLite's shared-cache test database: write when nothing reads
    off_loop(record_reading, fading, 10, source="api")
    expect(card(page, fading)).to_have_attribute("data-level", "LOW", timeout=LIVE)

    expected = {low: "LOW", medium: "MEDIUM", high: "HIGH", stale: "NO_DATA"}
    for location, level in expected.items():
        expect(card(page, location)).to_have_attribute("data-level", level)
        marker = page.locator(f"#map path[data-location-id='{location.pk}']")
        expect(marker).to_have_attribute("data-level", level)
        expect(marker).to_have_attribute("fill", LEVEL_COLORS[level])
        expect(marker).to_have_class(re.compile(rf"\bmarker-level-{level}\b"))
    expect(card(page, stale).locator(".level")).to_have_text("No data")
    expect(card(page, stale).locator(".level")).not_to_have_text(re.compile("low", re.I))
    expect(page.locator("#map-unplaced")).to_contain_text("Roof Terrace")
    # No new reading for 3 intervals: the page turns it into "no data" by itself, without any message.
    expect(card(page, fading)).to_have_attribute("data-level", "NO_DATA", timeout=6000)
    expect(page.locator(f"#map path[data-location-id='{fading.pk}']")).to_have_attribute(
        "fill", LEVEL_COLORS["NO_DATA"]
    )
    expect(page.locator("#sum-nodata")).to_have_text("2")
    page.locator(f"#map path[data-location-id='{high.pk}']").click()
    expect(page.locator(".leaflet-popup")).to_contain_text("Gate B")
    page.locator(".leaflet-popup-close-button").click()
    watched.screenshot("overview")

    phone = open_page(operator, "/", width=375, height=812)
    expect(phone.page.locator("#connection")).to_have_text("Live")
    expect(card(phone.page, stale)).to_have_attribute("data-level", "NO_DATA")
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the overview scrolls sideways on a phone ({width} px wide)"
    phone.screenshot("overview-phone")

    for other in (f"/locations/{stale.pk}/", "/alerts/"):
        page.goto(other)
        wait_live(page)
    for url in watched.requests + phone.requests:
        host = urlsplit(url).hostname
        assert host in LOCAL_HOSTS, f"request left the machine: {url}"
    assert not watched.errors and not phone.errors, watched.errors + phone.errors


def test_names_with_markup_characters_show_as_typed_on_the_map(open_page: Callable, operator: Any) -> None:
    name = 'Hall <b>B</b> & "Exit" <img src=x>'
    hall = place(name)
    record_reading(hall, 12, source="api")

    page = open_page(operator, "/").page
    wait_live(page)

    label = page.locator("#map .map-label")
    expect(label).to_have_text(name)
    assert label.locator("b, img").count() == 0, "the name's text was parsed as markup"
    expect(card(page, hall)).to_contain_text(name)


def test_viewer_sees_alerts_but_no_buttons(open_page: Callable, viewer: Any) -> None:
    hall = place("Exhibition Hall", capacity=100)
    record_reading(hall, 90, source="api")
    alert = Alert.objects.get(location=hall, kind="OVERCROWDING")

    watched = open_page(viewer, "/")
    page = watched.page
    wait_live(page)
    item = page.locator(f"#alert-feed #alert-{alert.pk}")
    expect(item).to_contain_text("Exhibition Hall")
    expect(item.get_by_role("button")).to_have_count(0)
    # The alert sound is off until asked for, and the choice survives a reload (it is kept in this browser).
    sound = page.locator("#sound-toggle")
    expect(sound).to_have_attribute("aria-pressed", "false")
    sound.click()
    expect(sound).to_have_text("Sound on")
    page.reload()
    expect(sound).to_have_attribute("aria-pressed", "true")
    page.goto(f"/locations/{hall.pk}/")
    expect(page.locator(f"#location-alerts #alert-{alert.pk}")).to_be_visible()
    expect(page.locator("#location-alerts button")).to_have_count(0)
    page.goto("/alerts/")
    expect(page.locator(f"#alert-log #alert-{alert.pk}")).to_be_visible()
    expect(page.locator("#alert-log button")).to_have_count(0)
    assert not watched.errors, watched.errors


def test_alert_log_filters_and_live_rows(open_page: Callable, off_loop: Callable, operator: Any) -> None:
    north = place("North Plaza", capacity=100)
    south = place("South Plaza", capacity=100, lat=51.4)
    record_reading(north, 90, source="api")
    record_reading(south, 95, source="api")
    north_alert = Alert.objects.get(location=north, kind="OVERCROWDING")
    south_alert = Alert.objects.get(location=south, kind="OVERCROWDING")
    alert_services.acknowledge(south_alert, operator, "Stewards sent.")

    watched = open_page(operator, "/alerts/")
    page = watched.page
    wait_live(page)
    log = page.locator("#alert-log")
    expect(log.locator(".alert-item")).to_have_count(2)
    expect(page.locator(f"#alert-{south_alert.pk}")).to_contain_text("by duty-officer")
    expect(page.locator(f"#alert-{south_alert.pk}")).to_contain_text("Stewards sent.")

    page.get_by_label("Location").select_option(label="North Plaza")
    expect(log.locator(".alert-item")).to_have_count(1)
    expect(page.locator(f"#alert-{north_alert.pk}")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"location={north.pk}"))

    page.get_by_label("Location").select_option(value="")
    page.get_by_label("Status").select_option("ACKNOWLEDGED")
    expect(log.locator(".alert-item")).to_have_count(1)
    expect(page.locator(f"#alert-{south_alert.pk}")).to_be_visible()

    # Time filters go to the API as ISO-8601; an impossible range is refused by the server and explained.
    page.get_by_label("Status").select_option("")
    page.get_by_label("Raised from").fill("2030-01-02T10:00")
    page.get_by_label("Raised until").fill("2030-01-01T10:00")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#alerts-error")).to_contain_text("since: Must not be after until.")
    page.get_by_role("button", name="Last 24 h").click()
    expect(page.locator("#alerts-error")).to_be_hidden()
    expect(log.locator(".alert-item")).to_have_count(2)

    # A new alert matching the filters appears at the top without a reload.
    east = off_loop(place, "East Plaza", capacity=10, lat=51.45)
    off_loop(record_reading, east, 9, source="api")
    east_alert = off_loop(Alert.objects.get, location=east, kind="OVERCROWDING")
    expect(log.locator(".alert-item").first).to_have_id(f"alert-{east_alert.pk}", timeout=LIVE)
    expect(page.locator("#alerts-summary")).to_have_text("Showing 3 of 3 alerts")
    page.locator(f"#alert-{north_alert.pk}").get_by_role("button", name=re.compile("^Acknowledge")).click()
    page.locator("#alert-dialog-note").fill("Looking at camera 2.")
    page.keyboard.press("Control+Enter")
    expect(page.locator(f"#alert-{north_alert.pk}")).to_contain_text("Acknowledged")
    expect(page.locator(f"#alert-{north_alert.pk}")).to_contain_text("Looking at camera 2.")
    stored = off_loop(
        lambda: Alert.objects.values_list("status", "acknowledged_by__username", "note").get(pk=north_alert.pk)
    )
    assert stored == ("ACKNOWLEDGED", "duty-officer", "Looking at camera 2.")
    watched.screenshot("alerts")
    unexpected = [error for error in watched.errors if "status of 400" not in error]  # the refused range
    assert not unexpected, unexpected


def test_raised_until_a_minute_takes_in_the_whole_minute(open_page: Callable, operator: Any) -> None:
    """The "Raised until 16:05" field (datetime-local, to the minute) went to the API as 16:05:00.000: an alert raised
    at 16:05:30 was left out of the list, though the same alert arriving live was shown (the page's own filter takes
    in the whole minute)."""
    gate = place("Gate A", capacity=100)
    record_reading(gate, 90, source="api")
    inside = Alert.objects.get()
    record_reading(place("Gate B", capacity=100, lat=51.4), 90, source="api")
    after = Alert.objects.exclude(pk=inside.pk).get()
    # 16:05:30 and 16:06:00 in India (UTC+5:30), the browser's zone.
    Alert.objects.filter(pk=inside.pk).update(triggered_at=datetime(2026, 1, 15, 10, 35, 30, tzinfo=UTC))
    Alert.objects.filter(pk=after.pk).update(triggered_at=datetime(2026, 1, 15, 10, 36, tzinfo=UTC))

    page = open_page(operator, "/alerts/", timezone_id="Asia/Kolkata").page
    wait_live(page)
    page.get_by_label("Raised from").fill("2026-01-15T16:00")
    page.get_by_label("Raised until").fill("2026-01-15T16:05")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#alerts-summary")).to_have_text("Showing 1 of 1 alerts")
    expect(page.locator("#alert-log .alert-item")).to_have_id(f"alert-{inside.pk}")


def test_an_alert_raised_while_the_log_loads_stays_in_it(
    open_page: Callable, off_loop: Callable, operator: Any
) -> None:
    """The log's query answered before an alert was raised but arrived after its live message: the answer replaced
    the rows, and the new alert vanished from the log (the banner had announced it) until a reload."""
    north = place("North Plaza", capacity=100)
    record_reading(north, 90, source="api")
    watched = open_page(operator, "/alerts/")
    page = watched.page
    wait_live(page)
    log = page.locator("#alert-log")
    expect(log.locator(".alert-item")).to_have_count(1)

    east = off_loop(place, "East Plaza", capacity=10, lat=51.45)

    def answer_from_before_the_alert(route: Any) -> None:
        before = route.fetch()  # the server answers now, without the alert
        off_loop(record_reading, east, 9, source="api")
        expect(page.locator("#alert-banner")).to_contain_text("East Plaza")  # its live message has been handled
        route.fulfill(response=before)

    page.route(re.compile(r"/api/alerts/\?page_size=50&kind="), answer_from_before_the_alert)
    page.get_by_label("Kind").select_option("OVERCROWDING")
    expect(page.locator("#alerts-summary")).to_have_text("Showing 2 of 2 alerts")
    east_alert = off_loop(Alert.objects.get, location=east, kind="OVERCROWDING")
    expect(log.locator(f"#alert-{east_alert.pk}")).to_be_visible()
    assert not watched.errors, watched.errors


BUS_BOXES = [[221, 407, 342, 856, 0.89], [52, 398, 246, 904, 0.88], [668, 392, 810, 880, 0.86], [0, 550, 64, 873, 0.6]]


def bus_jpeg(scale: float) -> tuple[bytes, int, int]:
    """ultralytics' bundled bus.jpg (810x1080), stored downscaled as the worker may; returns the original size."""
    cv2 = pytest.importorskip("cv2")
    spec = importlib.util.find_spec("ultralytics")  # found without importing it (and torch)
    assert spec is not None and spec.origin is not None
    image = cv2.imread(str(Path(spec.origin).parent / "assets" / "bus.jpg"))
    height, width = image.shape[:2]
    small = cv2.resize(image, (int(width * scale), int(height * scale)))
    ok, encoded = cv2.imencode(".jpg", small)
    assert ok
    return encoded.tobytes(), width, height


def test_location_page_frame_boxes_heatmap_and_history(open_page: Callable, off_loop: Callable, operator: Any) -> None:
    atrium = place("Atrium", capacity=40, description="Ground floor, under the glass roof.")
    camera = Camera.objects.create(location=atrium, name="Atrium east", source="/dev/null")
    jpeg, width, height = bus_jpeg(0.5)
    now = timezone.now()
    Camera.objects.filter(pk=camera.pk).update(status=Camera.Status.ONLINE, last_seen_at=now)
    CameraFrame.objects.create(
        camera=camera, jpeg=jpeg, width=width, height=height, count=4, boxes=BUS_BOXES, captured_at=now
    )
    for seconds_ago in (50, 40, 30, 20, 10):
        details = {"frame_size": [width, height], "boxes": BUS_BOXES}
        at = now - timedelta(seconds=seconds_ago)
        record_reading(atrium, 4, source="camera", camera_id=camera.pk, at=at, details=details)

    watched = open_page(operator, f"/locations/{atrium.pk}/", width=1440, height=1000)
    page = watched.page
    wait_live(page)
    expect(page.get_by_role("heading", name="Atrium", exact=True)).to_be_visible()
    expect(page.locator("#frame-count")).to_have_text("4 people detected")
    expect(page.locator("#camera-status")).to_have_text("online")
    boxes = page.locator("#box-canvas")
    expect(boxes).to_have_attribute("data-boxes", "4")
    assert painted_pixels(page, "box-canvas") > 500
    heat = page.locator("#heat-canvas")
    expect(heat).not_to_have_attribute("data-cells", "0")
    assert painted_pixels(page, "heat-canvas") > 500
    expect(page.locator("#heat-stats")).to_have_text("20 person detections in 5 readings")
    # The boxes are scaled from original-frame pixels to the displayed (downscaled) image.
    drawn = page.evaluate(
        """() => { const c = document.getElementById('box-canvas'), i = document.getElementById('frame-img');
                   return [c.clientWidth, c.clientHeight, i.clientWidth, i.clientHeight, i.naturalWidth]; }"""
    )
    assert drawn[:2] == drawn[2:4] and drawn[4] == width // 2, drawn
    expect(page.locator("#history-chart")).not_to_have_attribute("data-points", "0")
    expect(page.locator("#live-chart")).to_have_attribute("data-points", "5")
    page.get_by_role("button", name="Week").click()
    expect(page.locator("#history-chart")).to_have_attribute("aria-label", re.compile("week"))
    page.get_by_role("button", name="15 min").click()
    expect(page.locator("#heat-period button[aria-pressed=true]")).to_have_text("15 min")
    watched.screenshot("location")

    # A new reading for this location brings the camera's newer frame.
    newer = CameraFrame.objects.filter(pk=camera.pk)
    off_loop(newer.update, count=3, boxes=BUS_BOXES[:3], captured_at=timezone.now())
    off_loop(record_reading, atrium, 3, source="camera", camera_id=camera.pk)
    expect(page.locator("#location-" + str(atrium.pk) + " .current-count")).to_have_text("3", timeout=LIVE)
    expect(page.locator("#frame-count")).to_have_text("3 people detected", timeout=5000)
    expect(boxes).to_have_attribute("data-boxes", "3")
    assert not watched.errors, watched.errors


def painted_pixels(page: Any, canvas_id: str) -> int:
    return page.evaluate(
        """id => { const c = document.getElementById(id);
                   const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++; return n; }""",
        canvas_id,
    )


def camera_details(width: int, height: int, **quality: Any) -> dict[str, Any]:
    """What the counting engine stores with a reading (detection/detectors.py CountResult.details())."""
    engine = {"low": None, "high": None, "dense": False, "saturated": False, "estimates": {}, "notes": []}
    return {"frame_size": [width, height], "boxes": BUS_BOXES, "quality": {**engine, **quality}}


def test_history_ticks_stand_on_the_operators_wall_clock(open_page: Callable, operator: Any) -> None:
    """The week chart's day ticks stood at round numbers of epoch milliseconds: "Mon 30" at Monday 06:23 (the hours
    before it looked like Sunday's), with days skipped; the day chart's at 02:50, 08:23, ... Now on the wall clock of
    the browser (here India, UTC+5:30): midnights, every 4 hours, every 10 minutes."""
    hall = place("Hall", capacity=50)
    record_reading(hall, 10, source="api")
    watched = open_page(operator, f"/locations/{hall.pk}/", timezone_id="Asia/Kolkata")
    page = watched.page
    wait_live(page)
    read_ticks = """() => Chart.getChart(document.getElementById("history-chart")).scales.x.ticks.map(
        (tick) => { const d = new Date(tick.value); return [d.getHours() * 60 + d.getMinutes(), tick.label]; })"""
    for range_name, minutes, count in [("week", 1440, 7), ("day", 240, 6), ("hour", 10, 6)]:
        page.locator(f'button[data-range="{range_name}"]').click()
        expect(page.locator(f'button[data-range="{range_name}"]')).to_have_attribute("aria-pressed", "true")
        page.wait_for_function(
            f"() => Chart.getChart(document.getElementById('history-chart')).options.scales.x.min"
            f" < Date.now() - {minutes * 60000 * 0.9}"
        )
        ticks = page.evaluate(read_ticks)
        assert count <= len(ticks) <= count + 1, (range_name, ticks)
        assert all(minute % minutes == 0 for minute, _label in ticks), (range_name, ticks)
        labels = [label for _minute, label in ticks]
        assert len(set(labels)) == len(labels), (range_name, labels)
    # The night the clocks go back in Berlin, five hours from local midnight: six ticks an hour apart, 02:00 twice.
    berlin = open_page(operator, f"/locations/{hall.pk}/", timezone_id="Europe/Berlin").page
    hours = berlin.evaluate(
        """() => CM.localTicks(Date.parse("2025-10-25T22:00:00Z"), Date.parse("2025-10-26T04:00:00Z"), "time")
            .map((tick) => [new Date(tick.value).getHours(), tick.value])"""
    )
    assert [hour for hour, _ in hours] == [0, 1, 2, 2, 3, 4, 5]
    assert {later - earlier for (_, earlier), (_, later) in itertools.pairwise(hours)} == {3600_000}
    assert not watched.errors, watched.errors


def test_location_page_says_how_far_the_camera_count_can_be_trusted(
    open_page: Callable, off_loop: Callable, operator: Any
) -> None:
    square = place("Square", capacity=500)
    camera = Camera.objects.create(location=square, name="Square west", source="/dev/null")
    jpeg, width, height = bus_jpeg(0.25)
    CameraFrame.objects.create(
        camera=camera, jpeg=jpeg, width=width, height=height, count=45, boxes=BUS_BOXES, captured_at=timezone.now()
    )
    dense = camera_details(width, height, mode_used="density", low=36.4, high=54.2, dense=True)
    record_reading(square, 45, source="camera", camera_id=camera.pk, details=dense)

    watched = open_page(operator, f"/locations/{square.pk}/")
    page = watched.page
    wait_live(page)
    expect(page.locator("#frame-count")).to_have_text("45 people estimated")
    expect(page.locator("#frame-interval")).to_have_text("likely 36\u201355")  # an en dash, as typeset
    expect(page.locator("#frame-dense")).to_have_text("Dense crowd — density estimate")
    warning = page.locator("#frame-saturated")
    expect(warning).to_be_hidden()
    watched.screenshot("location-dense", full_page=False)

    # Without its density model the camera falls back to detection, which cannot resolve this crowd: the live
    # reading's count is a lower bound (and rises too little for a spike alert).
    off_loop(CameraFrame.objects.filter(camera=camera).update, count=56, captured_at=timezone.now())
    saturated = camera_details(width, height, mode_used="detect", low=48.0, saturated=True)
    off_loop(record_reading, square, 56, source="camera", camera_id=camera.pk, details=saturated)
    expect(warning).to_be_visible(timeout=5000)
    expect(warning).to_contain_text("At least 56 — crowd beyond reliable detection")
    expect(page.locator("#frame-count")).to_have_text("56 people detected")
    expect(page.locator("#frame-interval")).to_be_hidden()  # the warning says it: no "likely" range to give
    expect(page.locator("#frame-dense")).to_be_hidden()
    watched.screenshot("location-saturated")
    assert not watched.errors, watched.errors


def test_a_location_seen_by_several_cameras_shows_what_each_adds(
    open_page: Callable, off_loop: Callable, operator: Any
) -> None:
    hall = place("Arrivals hall", capacity=100)
    north = Camera.objects.create(location=hall, name="North doors", source="/dev/null")
    south = Camera.objects.create(location=hall, name="South doors", source="/dev/null")
    record_reading(hall, 30, source="camera", camera_id=south.pk, at=timezone.now() - timedelta(minutes=3))
    record_reading(hall, 12, source="camera", camera_id=north.pk)

    watched = open_page(operator, f"/locations/{hall.pk}/")
    page = watched.page
    wait_live(page)
    expect(card(page, hall).locator(".current-count")).to_have_text("42")
    parts = page.locator("#camera-sum")
    expect(parts).to_have_text(
        re.compile(r"^Count = sum of cameras: North doors 12 \+ South doors 30 \(held: counted 3 min ago\)$")
    )
    expect(parts.locator("[data-held]")).to_have_count(1)
    watched.screenshot("location-cameras", full_page=False)

    # The south camera counts again: the sum follows live and nothing is held any more.
    off_loop(record_reading, hall, 25, source="camera", camera_id=south.pk)
    expect(card(page, hall).locator(".current-count")).to_have_text("37", timeout=LIVE)
    expect(parts).to_have_text("Count = sum of cameras: North doors 12 + South doors 25", timeout=5000)
    # A camera renamed in admin: the camera picker follows without a reload.
    off_loop(Camera.objects.filter(pk=south.pk).update, name="South gate")
    off_loop(record_reading, hall, 26, source="camera", camera_id=south.pk)
    expect(page.locator("#camera-select option")).to_have_text(["North doors", "South gate"], timeout=5000)
    assert not watched.errors, watched.errors


def test_an_old_camera_frame_shows_its_date_not_only_its_time(open_page: Callable, operator: Any) -> None:
    """A camera that stopped two days ago: its last frame used to read "frame of 07:41:16", as if taken today."""
    hall = place("Hall", capacity=50)
    camera = Camera.objects.create(location=hall, name="Hall north", source="/dev/null")
    jpeg, width, height = bus_jpeg(0.25)
    captured_at = timezone.now() - timedelta(days=2)
    CameraFrame.objects.create(
        camera=camera, jpeg=jpeg, width=width, height=height, count=4, boxes=BUS_BOXES, captured_at=captured_at
    )

    watched = open_page(operator, f"/locations/{hall.pk}/")
    page = watched.page
    expect(page.locator("#frame-count")).to_have_text("4 people detected")
    # The day as this browser names it (its locale and time zone).
    day = page.evaluate(
        "iso => new Date(iso).toLocaleDateString([], {month: 'short', day: 'numeric'})", captured_at.isoformat()
    )
    expect(page.locator("#frame-time")).to_contain_text(f"frame of {day}")
    assert not watched.errors, watched.errors


def test_overview_chart_holding_half_an_hour_of_a_surge_redraws_as_fast_as_its_bare_lines(
    open_page: Callable, operator: Any
) -> None:
    """40 locations read about every 1.3 s (30 readings a second) put 54,000 readings on the overview's 30-minute
    chart. The newest value's dot was a scriptable pointRadius, resolved for every point on every redraw: a redraw
    took 15 times as long as one of the bare lines (0.6-0.8 s on a 2-core machine), and the page, which redraws every
    second and on every reading, was busy all the time. Timed against the same chart without dots, in turns, so that
    the machine's load cancels out."""
    for i in range(40):
        place(f"Zone {i:02d}", capacity=100, lat=51.5 + i / 1000)
    watched = open_page(operator, "/")
    page = watched.page
    wait_live(page)
    figures = page.evaluate(
        """() => {
          const chart = Chart.getChart('occupancy-chart');
          const now = CM.now();
          chart.data.datasets.forEach((dataset, i) => {
            for (let k = 0; k < 1350; k++) dataset.data.push({x: now - 1800e3 + k * (1740e3 / 1349), y: 10 + 2 * i});
          });
          const radius = chart.data.datasets.map((dataset) => dataset.pointRadius);
          function redraw(bare) {
            chart.data.datasets.forEach((dataset, i) => (dataset.pointRadius = bare ? 0 : radius[i]));
            const start = performance.now();
            chart.update('none');
            return performance.now() - start;
          }
          redraw(false);
          const asShown = [];
          const bare = [];
          for (let k = 0; k < 5; k++) {
            asShown.push(redraw(false));
            bare.push(redraw(true));
          }
          redraw(false);
          const median = (list) => list.sort((a, b) => a - b)[2];
          // Where the top line ends, a dot of its colour: 3 px above the flat line is inside the dot, not the line.
          const top = chart.data.datasets.length - 1;
          const points = chart.getDatasetMeta(top).data;
          const newest = points[points.length - 1];
          const ratio = chart.currentDevicePixelRatio;
          const pixel = Array.from(chart.ctx.getImageData(newest.x * ratio, (newest.y - 3) * ratio, 1, 1).data);
          return {asShown: median(asShown), bare: median(bare), points: points.length, pixel: pixel,
                  colour: chart.data.datasets[top].borderColor};
        }"""
    )
    assert figures["points"] == 1350, figures
    assert figures["asShown"] < 2 * figures["bare"] + 20, f"a redraw takes much longer than the bare lines: {figures}"
    red, green, blue = (int(figures["colour"][k : k + 2], 16) for k in (1, 3, 5))
    assert all(abs(a - b) <= 8 for a, b in zip(figures["pixel"][:3], (red, green, blue), strict=True)), figures
    assert not watched.errors, watched.errors


def test_a_burst_of_readings_redraws_the_overview_chart_twice_a_second_at_most(
    open_page: Callable, off_loop: Callable, operator: Any
) -> None:
    """In a surge readings come many times a second; the chart was redrawn for each (on the next frame), and with half
    an hour of 40 locations' lines the overview was busy 87 % of the time. The cards follow every reading at once;
    the chart catches up at most twice a second, and shows the newest value."""
    gate = place("North Gate", capacity=100)
    watched = open_page(operator, "/")
    page = watched.page
    wait_live(page)
    page.evaluate(
        """() => {
          const chart = Chart.getChart('occupancy-chart');
          const update = chart.update.bind(chart);
          window.redraws = [];
          chart.update = (mode) => { window.redraws.push(performance.now()); return update(mode); };
        }"""
    )
    started = page.evaluate("performance.now()")
    for count in range(1, 31):
        off_loop(record_reading, gate, count, source="api")
    expect(card(page, gate).locator(".current-count")).to_have_text("30", timeout=LIVE)
    newest = re.compile(r"North Gate 30\.0%")
    expect(page.locator("#occupancy-chart")).to_have_attribute("aria-label", newest, timeout=LIVE)
    elapsed, redraws = page.evaluate(f"[performance.now() - {started}, window.redraws]")
    assert len(redraws) <= elapsed / 500 + 2, (elapsed, redraws)  # 30 readings, not 30 redraws
    assert all(b - a >= 490 for a, b in itertools.pairwise(redraws)), redraws
    assert not watched.errors, watched.errors
