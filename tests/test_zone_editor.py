"""Drawing a camera's counting zone on its latest frame in the admin, in a real headless Chromium.

An admin opens the camera's change page from the live ASGI server (production headers, strict CSP), clicks the
zone's corners on the frame, undoes and redoes one, saves, and the camera's zone holds the clicked points in 0-1
frame coordinates; reopened, the page draws the saved zone. A frame the browser cannot show leaves the JSON field
with a note saying so. No Content-Security-Policy violation on the way.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from locations.models import Camera, CameraFrame, Location

from .conftest import LiveAsgiServer, launch_chromium
from .test_csp_browser import RECORD_VIOLATIONS

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
FRAME_SIZE = (640, 360)  # width, height: not square, so swapped axes would show
CORNERS = [(0.1, 0.2), (0.85, 0.15), (0.9, 0.9), (0.2, 0.8)]


def frame_jpeg(width: int, height: int) -> bytes:
    """A real JPEG with a floor and a doorway to aim at, as a camera would deliver it."""
    image = np.full((height, width, 3), 90, np.uint8)
    cv2.rectangle(image, (0, height // 2), (width, height), (60, 120, 60), thickness=-1)
    cv2.rectangle(image, (width // 3, height // 5), (2 * width // 3, height // 2), (40, 40, 160), thickness=-1)
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    return jpeg.tobytes()


def test_admin_draws_the_zone_on_the_frame_and_saves_it(
    live_asgi_server: LiveAsgiServer, session_cookie_for: Callable[[Any], str]
) -> None:
    gate = Location.objects.create(name="Gate A", capacity_limit=100)
    camera = Camera.objects.create(location=gate, name="North", source="rtsp://u:pw@127.0.0.1:1/x")
    width, height = FRAME_SIZE
    CameraFrame.objects.create(
        camera=camera, jpeg=frame_jpeg(width, height), width=width, height=height, count=0, boxes=[],
        captured_at=timezone.now(),
    )  # fmt: skip
    broken = Camera.objects.create(location=gate, name="South", source="rtsp://127.0.0.1:1/y")
    CameraFrame.objects.create(
        camera=broken, jpeg=b"not a JPEG", width=width, height=height, count=0, boxes=[], captured_at=timezone.now()
    )
    cookie = session_cookie_for(User.objects.create_superuser("root", "root@example.org", "unused-password"))
    change_page = f"/admin/locations/camera/{camera.pk}/change/"
    console: list[str] = []
    failed: list[str] = []  # responses >= 400 (the admin names no favicon, so the browser's guess is left out)

    # Django refuses ORM calls while Playwright's loop runs in this thread: the database is read after it stops.
    with playwright_sync.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=live_asgi_server.url, viewport={"width": 1440, "height": 900})
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_asgi_server.url}])
        context.add_init_script(RECORD_VIOLATIONS)
        page = context.new_page()
        page.set_default_timeout(10000)
        page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: console.append(f"uncaught: {exc}"))
        page.on(
            "response",
            lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
        )
        page.goto(change_page)

        overlay = page.locator(".zone-editor__overlay")
        expect(overlay).to_be_visible()  # shown once the frame has loaded
        assert page.locator(".zone-editor__frame").evaluate("img => [img.naturalWidth, img.naturalHeight]") == [
            width,
            height,
        ]
        box = overlay.bounding_box()
        assert box is not None

        def click(x: float, y: float) -> None:
            overlay.click(position={"x": x * box["width"], "y": y * box["height"]})

        for x, y in CORNERS[:3]:
            click(x, y)
        click(0.5, 0.5)  # a slip of the hand
        expect(page.locator(".zone-editor__vertex")).to_have_count(4)
        page.get_by_role("button", name="Undo last point").click()
        expect(page.locator(".zone-editor__vertex")).to_have_count(3)
        click(*CORNERS[3])
        expect(page.locator("polygon.zone-editor__shape")).to_have_count(1)
        typed = json.loads(page.locator("#id_zone").input_value())
        assert typed == [[round(x, 4), round(y, 4)] for x, y in typed]  # 0-1 coordinates, 4 decimals
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "admin-zone-editor.png"), full_page=True)

        with page.expect_navigation():
            page.locator("input[name=_save]").click()
        expect(page.locator(".messagelist .success")).to_contain_text("was changed successfully")
        violations = page.evaluate("window.__csp")

        page.goto(change_page)  # the saved zone is drawn when the page opens
        expect(page.locator(".zone-editor__vertex")).to_have_count(4)
        expect(page.locator("polygon.zone-editor__shape")).to_have_count(1)
        page.get_by_role("button", name="Clear (whole frame)").click()
        expect(page.locator(".zone-editor__vertex")).to_have_count(0)
        assert json.loads(page.locator("#id_zone").input_value()) == []
        # Points on one line enclose nobody (the camera would report an empty place): refused, the saved zone kept.
        for x, y in ((0.1, 0.1), (0.5, 0.5), (0.9, 0.9)):
            click(x, y)
        with page.expect_navigation():
            page.locator("input[name=_save]").click()
        expect(page.locator(".errorlist")).to_contain_text("The zone encloses next to no area")
        violations += page.evaluate("window.__csp")

        page.goto(f"/admin/locations/camera/{broken.pk}/change/")  # a frame the browser cannot show
        expect(page.locator(".zone-editor__note")).to_contain_text("could not be loaded")
        expect(page.locator(".zone-editor__overlay")).to_be_hidden()
        expect(page.locator("#id_zone")).to_be_editable()  # the JSON can still be typed
        violations += page.evaluate("window.__csp")
        browser.close()

    camera.refresh_from_db()
    assert len(camera.zone) == 4, camera.zone
    for (x, y), (expected_x, expected_y) in zip(camera.zone, CORNERS, strict=True):
        assert x == pytest.approx(expected_x, abs=0.01) and y == pytest.approx(expected_y, abs=0.01), camera.zone
    assert violations == []
    assert [m for m in console if "Content Security Policy" in m or "Refused to" in m] == []
    assert [m for m in console if m.startswith("uncaught")] == []
    assert failed == []
