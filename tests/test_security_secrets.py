"""Camera credentials stay in the database and admin's edit form: never in API responses, WebSocket messages,
logs (native library output included), alert texts, admin list pages or error pages.

The cameras fail for real: the detection worker, with a real (weights-free HOG) counter, tries RTSP and HTTP
sources with passwords on a closed local port until they are marked OFFLINE and alerted on.
"""

import asyncio
import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework.test import APIClient
from websockets.asyncio.client import connect

from accounts.models import ApiToken
from alerts.models import Alert
from crowd_monitor.log_filters import RedactSecretsFilter, redact_text
from detection.detectors import HogCounter
from detection.sources import Backoff
from detection.worker import DetectionWorker, Feed
from locations.models import Camera, Location

from .conftest import LiveAsgiServer

SECRETS = ["RTSP-Secret-1", "HTTP-Secret-2", "Query-Secret-3", "p@ss-Secret-4"]
SOURCES = {
    "rtsp": f"rtsp://operator:{SECRETS[0]}@127.0.0.1:1/stream",
    "http": f"http://viewer:{SECRETS[1]}@127.0.0.1:1/snapshot.jpg?user=viewer&pwd={SECRETS[2]}",
    "at-sign": f"rtsp://admin:{SECRETS[3]}@127.0.0.1:1/live",
}


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in {where}"
    assert "Secret-" not in text, f"part of a password leaked in {where}"


@pytest.fixture
def console_log() -> Iterator[io.StringIO]:
    """What the configured console handler (settings.LOGGING) writes, captured."""
    handlers = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactSecretsFilter) for f in h.filters)]
    assert handlers, "the console log handler carries the RedactSecretsFilter"
    stream = io.StringIO()
    previous = [h.setStream(stream) for h in handlers]  # type: ignore[attr-defined]
    yield stream
    for handler, old in zip(handlers, previous, strict=True):
        handler.setStream(old)  # type: ignore[attr-defined]


def fail_cameras(location: Location) -> None:
    cameras = list(Camera.objects.filter(location=location))

    def feeds() -> list[Feed]:
        return [Feed(c.location_id, c.source, c.pk, backoff=Backoff(base=0.001)) for c in cameras]

    DetectionWorker(HogCounter(), feeds, interval=0.01, stop=threading.Event()).run(cycles=6)


@pytest.mark.django_db(transaction=True)
def test_failing_cameras_leak_no_password_anywhere(
    live_asgi_server: LiveAsgiServer,
    session_cookie_for: Callable[[Any], str],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    console_log: io.StringIO,
) -> None:
    caplog.set_level(logging.DEBUG)
    gate = Location.objects.create(name="Gate A", capacity_limit=100)
    for name, source in SOURCES.items():
        Camera.objects.create(location=gate, name=name, source=source)

    fail_cameras(gate)

    cameras = list(Camera.objects.filter(location=gate))
    assert all(c.status == Camera.Status.OFFLINE for c in cameras)
    for camera in cameras:
        assert "127.0.0.1" in camera.last_error  # still says what failed
        assert_no_secret(camera.last_error, f"Camera.last_error of {camera.name}")
    alerts = list(Alert.objects.filter(kind="CAMERA_OFFLINE"))
    assert len(alerts) == len(SOURCES)
    for alert in alerts:
        assert_no_secret(alert.message, "an alert message")

    # The API, as an admin (who may see the most).
    admin = User.objects.create_user("boss", is_staff=True)
    admin.groups.add(Group.objects.get(name="admin"))
    _token, key = ApiToken.issue(admin)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    paths = ["/api/cameras/", "/api/alerts/", "/api/locations/", f"/api/locations/{gate.pk}/", "/api/schema/"]
    paths += [f"/api/cameras/{c.pk}/{suffix}" for c in cameras for suffix in ("", "latest/", "heatmap/")]
    paths += [f"/api/alerts/{a.pk}/" for a in alerts]
    for path in paths:
        response = api.get(path)
        assert response.status_code in (200, 404), path
        assert_no_secret(response.content.decode(), path)

    # Admin: list pages, and the camera's own page shows the source masked.
    browser = Client()
    browser.force_login(admin)
    pages = ["/admin/locations/camera/", "/admin/alerts/alert/", f"/admin/locations/location/{gate.pk}/change/"]
    pages += [f"/admin/locations/camera/{c.pk}/change/" for c in cameras]
    pages += [f"/admin/alerts/alert/{a.pk}/change/" for a in alerts]
    pages += ["/", f"/locations/{gate.pk}/", "/alerts/"]
    for page in pages:
        response = browser.get(page)
        assert response.status_code == 200, page
        assert_no_secret(response.content.decode(), page)
    for name, masked in (("rtsp", "rtsp://operator:***@127.0.0.1:1/stream"), ("at-sign", "rtsp://admin:***@127.0.0.1")):
        camera = Camera.objects.get(name=name)
        assert masked in browser.get(f"/admin/locations/camera/{camera.pk}/change/").content.decode()

    # WebSockets: the first messages are every location's state and the open (camera offline) alerts.
    sessionid = session_cookie_for(admin)

    async def receive_snapshot() -> list[str]:
        async with connect(
            live_asgi_server.ws_url + "/ws/crowd/",
            additional_headers=live_asgi_server.ws_headers(sessionid),
            proxy=None,
        ) as ws:
            return [await asyncio.wait_for(ws.recv(), 5) for _ in range(1 + len(alerts))]

    messages = asyncio.run(receive_snapshot())
    assert sum(json.loads(m)["type"] == "alert_update" for m in messages) == len(alerts)
    for message in messages:
        assert_no_secret(message, "a WebSocket message")

    # Logs: the records, the configured handler's output, and what native code (FFmpeg) wrote to stdout/stderr.
    assert any("camera" in r.getMessage().lower() for r in caplog.records)
    for record in caplog.records:
        assert_no_secret(record.getMessage(), f"log record {record.name}")
    assert_no_secret(console_log.getvalue(), "the console log")
    out, err = capfd.readouterr()
    assert_no_secret(out + err, "process output")


@pytest.mark.django_db
def test_error_pages_and_logs_of_a_crash_hold_no_password(
    monkeypatch: pytest.MonkeyPatch, console_log: io.StringIO, settings: Any
) -> None:
    assert settings.DEBUG is False
    gate = Location.objects.create(name="Gate A", capacity_limit=100)
    camera = Camera.objects.create(location=gate, name="North", source=SOURCES["rtsp"])

    from locations.camera_api import CameraViewSet

    def crash(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"could not open {camera.source}")  # a careless library message

    monkeypatch.setattr(CameraViewSet, "list", crash)
    admin = User.objects.create_superuser("root", "root@example.com", None)
    browser = Client(raise_request_exception=False)
    browser.force_login(admin)
    response = browser.get("/api/cameras/")
    assert response.status_code == 500
    body = response.content.decode()
    assert_no_secret(body, "the 500 page")
    assert "Traceback" not in body and "could not open" not in body  # no debug page in production

    logged = console_log.getvalue()
    assert "could not open rtsp://operator:***@127.0.0.1:1/stream" in logged  # logged, masked
    assert "Traceback" in logged
    assert_no_secret(logged, "the error log")

    not_found = browser.get("/no/such/page/")
    assert not_found.status_code == 404
    assert "URLconf" not in not_found.content.decode()  # Django's technical 404 is off


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("opening rtsp://u:pw@cam/x failed", "opening rtsp://u:***@cam/x failed"),
        ("'http://a:b@c:8080/s.jpg?pwd=z&x=1'", "'http://a:***@c:8080/s.jpg?pwd=***&x=1'"),
        ("rtsp://u:p@ss@host/x and rtsp://v:q@h2", "rtsp://u:***@host/x and rtsp://v:***@h2"),
        ("GET /api/?token=abc HTTP/1.1", "GET /api/?token=*** HTTP/1.1"),
        ("no secrets at rtsp://cam/x or http://host:80/", "no secrets at rtsp://cam/x or http://host:80/"),
    ],
)
def test_log_filter_masks_credentials_in_free_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
