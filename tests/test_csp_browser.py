"""The Content-Security-Policy in a real browser: every page works under it, with no violation reported.

Headless Chromium (Debian's, or CHROMIUM_PATH) loads each page from the live ASGI server with the production
headers, records every `securitypolicyviolation` event and console error, and checks the protective headers.
The live pages must also connect their WebSocket under `connect-src`.
"""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.utils import timezone

from alerts.models import Alert
from locations.models import Camera, CameraFrame, CrowdLog, Location
from locations.services import record_reading

from .conftest import LiveAsgiServer, launch_chromium

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Registered before any page script runs (through DevTools, so the CSP does not apply to it).
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def page_data(live_asgi_server: LiveAsgiServer, session_cookie_for: Callable[[Any], str]) -> dict[str, Any]:
    """Made before Chromium starts: once Playwright's loop runs in this thread, the ORM refuses to."""
    data = world()
    data["cookie"] = session_cookie_for(data["user"])
    return data


@pytest.fixture
def chromium(page_data: dict[str, Any]) -> Iterator[Any]:
    playwright = playwright_sync.sync_playwright().start()
    try:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


def world() -> dict[str, Any]:
    gate = Location.objects.create(name="Gate A", capacity_limit=100, latitude=51.5, longitude=-0.12)
    Location.objects.create(name="Hall B", capacity_limit=50, latitude=51.51, longitude=-0.1)
    record_reading(gate, 85, source=CrowdLog.Source.API)  # HIGH, with an OVERCROWDING alert
    camera = Camera.objects.create(location=gate, name="North", source="rtsp://u:pw@127.0.0.1:1/x")
    CameraFrame.objects.create(
        camera=camera, jpeg=_tiny_jpeg(), width=8, height=8, count=1, boxes=[[1, 1, 4, 7, 0.9]],
        captured_at=timezone.now(),
    )  # fmt: skip
    boss = User.objects.create_user("boss", is_staff=True)
    boss.groups.add(Group.objects.get(name="admin"))
    return {"gate": gate, "camera": camera, "alert": Alert.objects.get(), "user": boss}


def _tiny_jpeg() -> bytes:
    import cv2
    import numpy as np

    ok, jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))
    assert ok
    return jpeg.tobytes()


def test_every_page_runs_under_the_content_security_policy(
    live_asgi_server: LiveAsgiServer, page_data: dict[str, Any], chromium: Any
) -> None:
    browser, cookie = chromium, page_data["cookie"]
    gate, camera, alert = page_data["gate"], page_data["camera"], page_data["alert"]
    live_pages = ["/", f"/locations/{gate.pk}/", "/alerts/"]
    other_pages = [
        "/admin/",
        f"/admin/locations/location/{gate.pk}/change/",
        f"/admin/locations/camera/{camera.pk}/change/",
        f"/admin/alerts/alert/{alert.pk}/change/",
        "/admin/accounts/apitoken/add/",
        "/admin/accounts/auditlog/",
        "/admin/auth/user/",
    ]

    context = browser.new_context(base_url=live_asgi_server.url, viewport={"width": 1440, "height": 900})
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_asgi_server.url}])
    context.add_init_script(RECORD_VIOLATIONS)
    anonymous = browser.new_context(base_url=live_asgi_server.url)
    anonymous.add_init_script(RECORD_VIOLATIONS)
    problems: dict[str, list[str]] = {}

    def visit(ctx: Any, path: str, live: bool) -> None:
        page = ctx.new_page()
        page.set_default_timeout(10000)
        console: list[str] = []
        page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: console.append(f"uncaught: {exc}"))
        if live:
            with page.expect_websocket() as socket_info:
                response = page.goto(path)
            socket = socket_info.value
            socket.wait_for_event("framereceived")  # connected under connect-src and receiving
        else:
            response = page.goto(path)
        page.wait_for_load_state("networkidle")
        assert response is not None and response.status == 200, (path, response and response.status)
        headers = response.headers
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert (
            "'unsafe-inline'" not in headers["content-security-policy"]
            and "unsafe-eval" not in headers["content-security-policy"]
        )
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "same-origin", path
        assert headers["x-content-type-options"] == "nosniff", path
        violations = page.evaluate("window.__csp")
        csp_console = [m for m in console if "Content Security Policy" in m or "Refused to" in m]
        if violations or csp_console:
            problems[path] = violations + csp_console
        page.close()

    for path in live_pages:
        visit(context, path, live=True)
    for path in other_pages:
        visit(context, path, live=False)
    visit(anonymous, "/login/", live=False)
    visit(anonymous, "/admin/login/?next=/admin/", live=False)
    context.close()
    anonymous.close()

    assert problems == {}
