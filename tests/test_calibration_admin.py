"""Calibrating a camera from Django admin (locations/calibration_admin.py): capture frames, label them by heads or
by count, fit with the real `calibrate_camera` in a subprocess, see the error before/after, clear.

The fits run `manage.py calibrate_camera` as a separate process on the test database, so those tests commit their
data (transaction=True) and need PostgreSQL or a file SQLite database (not pytest-django's in-memory one).
"""

import contextlib
import csv
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from detection.detectors import CountResult
from detection.worker import store_latest_frame
from locations.models import CalibrationFrame, Camera, CameraFrame, Location
from locations.services import MAX_COUNT

SHARED = Path(settings.BASE_DIR).parent / "shared"  # beside the repository, as in CI
MALL = SHARED / "data" / "mall"
needs_mall = pytest.mark.skipif(
    not MALL.is_dir(), reason="../shared/data/mall (frames with human counts) is not beside the repo"
)


def jpeg(width: int = 64, height: int = 48, shade: int = 128) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), shade, np.uint8))
    assert ok
    return data.tobytes()


def url(name: str, *args: int) -> str:
    return reverse(f"admin:locations_camera_calibration{name}", args=args)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def camera() -> Camera:
    location = Location.objects.create(name="Mall", capacity_limit=100)
    return Camera.objects.create(location=location, name="atrium", source="rtsp://u:pw@10.0.0.9/stream")


@pytest.fixture
def admin(user_with_role: Callable[..., Any]) -> Client:
    """A member of the admin role (not a superuser): its permissions come from accounts/roles.py."""
    client = Client()
    client.force_login(user_with_role("boss", "admin"))
    return client


def add_frame(camera: Camera, count: int | None = None, data: bytes | None = None, **fields: Any) -> CalibrationFrame:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    height, width = image.shape[:2] if image is not None else (48, 64)
    return CalibrationFrame.objects.create(
        camera=camera,
        jpeg=data or jpeg(),
        width=width,
        height=height,
        captured_at=timezone.now(),
        count=count,
        **fields,
    )


def subprocess_database_url() -> str:
    """The test database as a DATABASE_URL, for the `calibrate_camera` subprocess the fit starts."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():
            pytest.skip("a subprocess cannot open pytest-django's in-memory SQLite database: set DATABASE_URL")
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextlib.contextmanager
def fitting_in_background(client: Client, camera: Camera, **post: Any) -> Iterator[Future[Any]]:
    """A Fit posted from another thread, handed over once its calibrate_camera subprocess runs; the future is the
    page the fit answers with."""

    def fit() -> Any:
        try:
            return client.post(url("_fit", camera.pk), **post)
        finally:
            connections.close_all()  # this thread's own connection, which would keep the test database open

    with ThreadPoolExecutor(max_workers=1) as pool:
        fitting = pool.submit(fit)
        deadline = time.monotonic() + 30
        while not fit_processes(camera):
            assert time.monotonic() < deadline and not fitting.done(), "the fit never started its subprocess"
            time.sleep(0.02)
        yield fitting


def fit_processes(camera: Camera) -> list[int]:
    """The ids of running `manage.py calibrate_camera <camera>` processes, read from /proc."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended while being read
            continue
        if b"calibrate_camera" in args and str(camera.pk).encode() in args:
            found.append(int(cmdline.parent.name))
    return found


# --- page, capture, label, delete -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_camera_page_links_to_its_calibration_page(admin: Client, camera: Camera) -> None:
    change = admin.get(reverse("admin:locations_camera_change", args=[camera.pk]))
    assert change.status_code == 200
    assert url("", camera.pk).encode() in change.content
    page = admin.get(url("", camera.pk))
    assert page.status_code == 200
    assert b"Capture the current frame" in page.content and b"No frames yet" in page.content
    assert b"None: the camera reports its raw count" in page.content
    assert b"<script>" not in page.content and b"style=" not in page.content  # the CSP allows neither


@pytest.mark.django_db
def test_capture_copies_the_cameras_newest_frame(admin: Client, camera: Camera) -> None:
    captured_at = timezone.now()
    CameraFrame.objects.create(
        camera=camera, jpeg=jpeg(64, 48), width=64, height=48, count=2, boxes=[], captured_at=captured_at
    )
    response = admin.post(url("_capture", camera.pk))
    frame = CalibrationFrame.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{url('', camera.pk)}#frame-{frame.pk}"
    assert (bytes(frame.jpeg), frame.width, frame.height) == (jpeg(64, 48), 64, 48)
    assert frame.captured_at == captured_at and frame.count is None and frame.heads == []

    again = admin.post(url("_capture", camera.pk))  # the same frame twice would weigh double in the fit
    assert "already captured" in messages_of(again)[-1]
    assert CalibrationFrame.objects.count() == 1

    page = admin.get(url("", camera.pk))
    assert b"not labelled" in page.content
    image = admin.get(url("_image", camera.pk, frame.pk))
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg" and image.content == jpeg(64, 48)
    assert image["Cache-Control"] == "private, max-age=3600"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no row locks (select_for_update)")
@pytest.mark.django_db(transaction=True)
def test_two_captures_at_once_store_the_frame_once(camera: Camera, user_with_role: Callable[..., Any]) -> None:
    """A double-click on Capture, or two admins: both requests used to find the frame not yet captured and both
    stored it, so it counted double in the fit."""
    CameraFrame.objects.create(camera=camera, jpeg=jpeg(), width=64, height=48, count=0, captured_at=timezone.now())
    user = user_with_role("boss", "admin")
    clients = [Client(), Client()]
    for client in clients:
        client.force_login(user)
    for _ in range(10):  # the race is lost most times, not every time
        CalibrationFrame.objects.all().delete()
        together = threading.Barrier(len(clients))

        def capture(client: Client, together: threading.Barrier = together) -> int:
            try:
                together.wait()
                return client.post(url("_capture", camera.pk)).status_code
            finally:
                connections.close_all()  # this thread's own connection, which would keep the test database open

        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            assert list(pool.map(capture, clients)) == [302, 302]
        assert CalibrationFrame.objects.count() == 1


@pytest.mark.django_db
def test_capture_without_a_frame_says_so(admin: Client, camera: Camera) -> None:
    response = admin.post(url("_capture", camera.pk), follow=True)
    assert response.status_code == 200
    assert b"This camera has no frame yet" in response.content
    assert not CalibrationFrame.objects.exists()


@pytest.mark.django_db
def test_labelling_by_heads_or_by_count(admin: Client, camera: Camera) -> None:
    frame = add_frame(camera)
    heads = "[[0.1, 0.2], [0.5, 0.5], [0.912345, 0.3]]"
    response = admin.post(url("_label", camera.pk, frame.pk), {"heads": heads, "count": ""})
    assert response.status_code == 302
    frame.refresh_from_db()
    assert frame.count == 3 and frame.heads == [[0.1, 0.2], [0.5, 0.5], [0.9123, 0.3]]
    assert frame.labelled_by.username == "boss"

    # A typed count is the label (a dense crowd counted without marking every head); the marks are kept.
    admin.post(url("_label", camera.pk, frame.pk), {"heads": heads, "count": "12"})
    frame.refresh_from_db()
    assert (frame.count, len(frame.heads)) == (12, 3)
    admin.post(url("_label", camera.pk, frame.pk), {"heads": "[]", "count": "0"})  # an empty scene is a label too
    frame.refresh_from_db()
    assert (frame.count, frame.heads) == (0, [])

    # No frame holds more than MAX_COUNT people (what a reading may count); a huge count used to overflow the
    # database column: a 500 rather than a message.
    too_many = ({"count": str(MAX_COUNT + 1)}, {"count": str(2**63)}, {"count": str(10**20)})
    for bad in (
        {"heads": "[[1.5, 0.2]]"},
        {"heads": "not json"},
        {"count": "-1"},
        {"heads": "", "count": ""},
        *too_many,
    ):
        response = admin.post(url("_label", camera.pk, frame.pk), bad, follow=True)
        assert response.status_code == 200
        assert any("not saved" in m for m in messages_of(response)), bad
    frame.refresh_from_db()
    assert (frame.count, frame.heads) == (0, [])
    response = admin.post(url("_label", camera.pk, frame.pk), {"count": str(MAX_COUNT + 1)}, follow=True)
    assert f"Ensure this value is less than or equal to {MAX_COUNT}" in messages_of(response)[-1]
    page = admin.get(url("", camera.pk))
    assert b"Labelled frames: 1 of 1" in page.content and b"0 people" in page.content


@pytest.mark.django_db
def test_deleting_a_frame(admin: Client, camera: Camera) -> None:
    keep, drop = add_frame(camera, count=4), add_frame(camera, count=5)
    assert admin.get(url("_delete", camera.pk, drop.pk)).status_code == 405  # POST only
    response = admin.post(url("_delete", camera.pk, drop.pk))
    assert response.status_code == 302
    assert list(CalibrationFrame.objects.all()) == [keep]


@pytest.mark.django_db
def test_frames_of_another_camera_are_not_reachable(admin: Client, camera: Camera) -> None:
    other = Camera.objects.create(location=camera.location, name="other", source="/dev/null")
    frame = add_frame(other, count=3)
    assert admin.post(url("_label", camera.pk, frame.pk), {"count": "9"}).status_code == 404
    assert admin.post(url("_delete", camera.pk, frame.pk)).status_code == 404
    assert admin.get(url("_image", camera.pk, frame.pk)).status_code == 404
    frame.refresh_from_db()
    assert frame.count == 3


@pytest.mark.django_db
def test_only_admins_calibrate(camera: Camera, user_with_role: Callable[..., Any]) -> None:
    CameraFrame.objects.create(camera=camera, jpeg=jpeg(), width=64, height=48, count=0, captured_at=timezone.now())
    frame = add_frame(camera, count=2)
    viewer, operator = Client(), Client()
    viewer.force_login(user_with_role("viewer", "viewer"))
    operator.force_login(user_with_role("operator", "operator", is_staff=True))  # staff, without the permissions

    for path in (url("", camera.pk), url("_image", camera.pk, frame.pk)):
        response = viewer.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), path
        assert operator.get(path).status_code == 403, path
    for path in (url("_capture", camera.pk), url("_fit", camera.pk), url("_clear", camera.pk)):
        assert viewer.post(path).status_code == 302
        assert operator.post(path).status_code == 403
    assert operator.post(url("_label", camera.pk, frame.pk), {"count": "7"}).status_code == 403
    assert operator.post(url("_delete", camera.pk, frame.pk)).status_code == 403
    assert list(CalibrationFrame.objects.values_list("count", flat=True)) == [2]
    change = operator.get(reverse("admin:locations_camera_change", args=[camera.pk]))
    assert url("", camera.pk).encode() not in change.content


# --- fit and clear ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_fit_is_refused_below_three_labelled_frames(admin: Client, camera: Camera) -> None:
    add_frame(camera, count=3)
    add_frame(camera, count=5)
    add_frame(camera)  # not labelled: does not count
    page = admin.get(url("", camera.pk))
    assert b'value="Fit calibration" disabled' in page.content
    response = admin.post(url("_fit", camera.pk), follow=True)
    assert response.status_code == 200
    assert b"Fitting needs at least 3 labelled frames; this camera has 2." in response.content
    camera.refresh_from_db()
    assert camera.calibration == {}


@pytest.mark.django_db
def test_stored_calibration_is_shown_and_can_be_cleared(admin: Client, camera: Camera) -> None:
    camera.counting_mode = "detect"
    camera.calibration = {
        "kind": "linear", "mode": "detect", "a": 1.8, "b": 2.5, "heldout_mae_before": 9.5,
        "heldout_mae_after": 2.25, "n_frames": 8, "n_fit": 8, "n_heldout": 8, "validation": "5-fold CV",
    }  # fmt: skip
    camera.save()
    page = admin.get(url("", camera.pk))
    text = page.content.decode()
    assert "linear: count = 1.800 * raw +2.50" in text
    assert "9.50 before → 2.25 after" in text and "8 labelled; fitted on 8, measured on 8 (5-fold CV)" in text

    response = admin.post(url("_clear", camera.pk), follow=True)
    assert "Calibration cleared" in response.content.decode()
    camera.refresh_from_db()
    assert camera.calibration == {} and camera.counting_mode == "detect"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "stored",
    [
        {"kind": "scale", "a": "abc"},
        {"kind": "linear", "a": None, "b": None},
        {"kind": "isotonic", "x": 5, "y": [1]},
        {"kind": "isotonic", "x": ["a"], "y": ["b"]},
        {"kind": "boxes", "boxes": {"missed": "many"}},
        ["not", "an", "object"],
    ],
)
def test_a_stored_calibration_the_counter_cannot_apply_is_shown_not_a_500(
    admin: Client, camera: Camera, stored: Any
) -> None:
    """Written by SQL or an older version (the admin form refuses it): the page says the camera counts raw."""
    Camera.objects.filter(pk=camera.pk).update(calibration=stored)
    page = admin.get(url("", camera.pk))
    assert page.status_code == 200
    assert "not usable, so the camera reports its raw count" in page.content.decode()
    response = admin.post(url("_clear", camera.pk), follow=True)  # and it can be cleared from there
    assert "Calibration cleared" in response.content.decode()
    camera.refresh_from_db()
    assert camera.calibration == {}


@pytest.mark.django_db
def test_a_hand_edited_fit_report_is_shown_as_written(admin: Client, camera: Camera) -> None:
    Camera.objects.filter(pk=camera.pk).update(
        calibration={"kind": "scale", "a": 2, "heldout_mae_before": "x", "n_frames": 3}
    )
    page = admin.get(url("", camera.pk))
    assert page.status_code == 200
    text = page.content.decode()
    assert "scale: count = 2.000 * raw" in text and "x before → 0.00 after" in text


@pytest.fixture
def labelled_without_model(camera: Camera, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Three labelled frames, and a fit's calibrate_camera subprocess that sees the test database and a model that
    does not exist: the real command runs, and fails in its own words."""
    monkeypatch.setenv("DATABASE_URL", subprocess_database_url())
    monkeypatch.setenv("DETECTION_MODEL", str(tmp_path / "missing_openvino_model"))
    for count in (3, 4, 5):
        add_frame(camera, count=count)


@pytest.mark.django_db(transaction=True)
def test_fit_failure_is_an_admin_message_not_a_500(admin: Client, camera: Camera, labelled_without_model: None) -> None:
    """The real command in its subprocess, with a model that does not exist: its own message reaches the page."""
    response = admin.post(url("_fit", camera.pk))
    assert response.status_code == 200
    text = response.content.decode()
    assert "Calibration failed: Detection model" in text and "does not exist" in text
    assert "Output of calibrate_camera" in text
    camera.refresh_from_db()
    assert camera.calibration == {}


@pytest.mark.django_db(transaction=True)
def test_fit_runs_while_the_cache_is_unreachable(admin: Client, camera: Camera, labelled_without_model: None) -> None:
    """Redis restarting: the fit's lock could not be taken and the page answered 500. Now the fit runs unlocked."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{unused.getsockname()[1]}/0"
    unreachable = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": dead}}
    with override_settings(CACHES=unreachable):
        response = admin.post(url("_fit", camera.pk))
    assert response.status_code == 200
    assert "Calibration failed: Detection model" in response.content.decode()  # the fit ran, to its own end


@pytest.mark.django_db(transaction=True)
def test_a_camera_deleted_while_it_is_fitted_is_a_message_not_a_500(
    admin: Client, camera: Camera, labelled_without_model: None
) -> None:
    """Another admin deletes the camera while calibrate_camera runs: the fit's page used to re-read the camera
    afterwards, which raised Camera.DoesNotExist, a 500."""

    with fitting_in_background(admin, camera, follow=True) as fitting:
        Camera.objects.filter(pk=camera.pk).delete()
        response = fitting.result(timeout=120)

    assert response.status_code == 200
    assert f"Camera {camera.pk} was deleted while it was being fitted" in messages_of(response)[-1]
    assert response.redirect_chain[-1][0] == reverse("admin:locations_camera_changelist")


@pytest.fixture
def real_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fit's calibrate_camera subprocess sees the test database and the real YOLO model."""
    model = Path(settings.DETECTION_MODEL)
    if not model.exists():
        model = SHARED / "models" / "yolov8n_int8_openvino_model"
    monkeypatch.setenv("DATABASE_URL", subprocess_database_url())
    monkeypatch.setenv("DETECTION_MODEL", str(model))


@pytest.mark.model
@needs_mall
@pytest.mark.django_db(transaction=True)
def test_fit_on_mall_frames_stores_the_calibration_and_shows_before_after(
    admin: Client, camera: Camera, real_fit: None
) -> None:
    """Six Mall frames labelled with their human counts; "Fit" runs the real counting models in a subprocess."""
    with (MALL / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))[::12][:6]
    for row in rows:
        with open(MALL / row["image"], "rb") as image:
            add_frame(camera, count=int(row["count"]), data=image.read())

    response = admin.post(url("_fit", camera.pk))
    assert response.status_code == 200
    text = response.content.decode()
    camera.refresh_from_db()
    stored = camera.calibration
    assert "Calibration fitted and stored" in text, text
    assert stored["mode"] == camera.counting_mode and stored["n_frames"] == 6
    assert stored["kind"] in ("identity", "scale", "linear", "isotonic")
    # Identity is one of the candidates: the chosen map is never worse on held-back frames.
    assert 0 <= stored["heldout_mae_after"] <= stored["heldout_mae_before"]
    assert f"{stored['heldout_mae_before']:.2f} before → {stored['heldout_mae_after']:.2f} after" in text
    assert "Best: mode" in text  # the command's own output


@pytest.mark.model
@needs_mall
@pytest.mark.django_db(transaction=True)
def test_fit_on_frames_with_clicked_heads_also_tries_a_box_model(admin: Client, camera: Camera, real_fit: None) -> None:
    """Frames labelled by clicking every head: the fit hands the heads to calibrate_camera, which weighs a box model
    against the maps (the human points of the Mall set stand in for clicks)."""
    points = json.loads((MALL / "points.json").read_text())
    with (MALL / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))[::10][:8]
    for row in rows:
        heads = [[round(x / 640, 4), round(y / 480, 4)] for x, y in points[row["image"]]]
        with open(MALL / row["image"], "rb") as image:
            add_frame(camera, count=len(heads), data=image.read(), heads=heads)

    response = admin.post(url("_fit", camera.pk))
    text = response.content.decode()
    assert "Calibration fitted and stored" in text, text
    assert "calibrated (boxes)" in text and "No box model" not in text, text
    camera.refresh_from_db()
    assert camera.calibration["n_frames"] == 8
    if camera.calibration["kind"] == "boxes":  # chosen when it beat the maps on these frames
        assert "box model: each box detected in the frame or its mirror image" in text


@pytest.mark.model
@needs_mall
@pytest.mark.django_db(transaction=True)
def test_heads_clicked_on_a_camera_wider_than_the_stored_frame_reach_the_fit_on_that_frame(
    admin: Client, camera: Camera, real_fit: None, tmp_path: Path
) -> None:
    """A 1920 px camera: the worker keeps its frames 960 px wide (with the camera's own size), and the fit used to
    hand calibrate_camera the clicked heads in 1920 px coordinates on those 960 px JPEGs, so the box model was fitted
    on heads that matched no box. The fit must see what calibrate_camera run by hand on the same JPEGs, with the heads
    in their own pixels, sees."""
    points = json.loads((MALL / "points.json").read_text())
    with (MALL / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))[::10][:6]
    start = timezone.now()
    for index, row in enumerate(rows):
        image = cv2.resize(cv2.imread(str(MALL / row["image"])), (1920, 1440))  # a 1920 x 1440 camera
        store_latest_frame(camera.pk, image, CountResult(count=0), start + timedelta(seconds=index))
        assert admin.post(url("_capture", camera.pk)).status_code == 302
        heads = [[round(x / 640, 4), round(y / 480, 4)] for x, y in points[row["image"]]]
        frame = CalibrationFrame.objects.latest("pk")
        admin.post(url("_label", camera.pk, frame.pk), {"heads": json.dumps(heads), "count": ""})
    frames = list(CalibrationFrame.objects.filter(camera=camera))
    assert {(f.width, f.height) for f in frames} == {(1920, 1440)} and all(f.count for f in frames)

    fitted = admin.post(url("_fit", camera.pk)).content.decode()
    assert "Calibration fitted and stored" in fitted, fitted

    by_hand: dict[str, list[list[float]]] = {}
    with (tmp_path / "counts.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "count"])
        for frame in frames:
            (tmp_path / f"{frame.pk}.jpg").write_bytes(bytes(frame.jpeg))
            height, width = cv2.imdecode(np.frombuffer(bytes(frame.jpeg), np.uint8), cv2.IMREAD_COLOR).shape[:2]
            assert (width, height) == (960, 720)
            writer.writerow([f"{frame.pk}.jpg", frame.count])
            by_hand[f"{frame.pk}.jpg"] = [[x * width, y * height] for x, y in frame.heads]
    (tmp_path / "heads.json").write_text(json.dumps(by_hand))
    out = StringIO()
    call_command(
        "calibrate_camera", str(camera.pk), "--counts", str(tmp_path / "counts.csv"),
        "--heads", str(tmp_path / "heads.json"), "--dry-run", stdout=out,
    )  # fmt: skip
    box_model = re.search(r"calibrated \(boxes\) +[0-9.]+", out.getvalue())
    assert box_model is not None, out.getvalue()
    assert box_model.group(0) in fitted, (box_model.group(0), fitted)


# --- in a real browser --------------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_clicking_heads_in_the_browser_labels_the_frame(
    live_asgi_server: Any, session_cookie_for: Callable[[Any], str], user_with_role: Callable[..., Any], camera: Camera
) -> None:
    """Three heads clicked on a frame (a fourth clicked and removed again), saved: under the CSP, with no violation."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    from .conftest import launch_chromium
    from .test_csp_browser import RECORD_VIOLATIONS

    expect = playwright_sync.expect
    frame = add_frame(camera, data=jpeg(640, 480, shade=90))
    cookie = session_cookie_for(user_with_role("boss", "admin"))  # the ORM before Playwright's loop starts
    spots = [(0.25, 0.3), (0.5, 0.5), (0.8, 0.7)]
    problems: list[str] = []

    playwright = playwright_sync.sync_playwright().start()
    try:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=live_asgi_server.url, viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_asgi_server.url}])
        context.add_init_script(RECORD_VIOLATIONS)
        page = context.new_page()
        page.set_default_timeout(10000)
        # Admin pages have no favicon: its 404 is not a problem; a CSP refusal or a script error is.
        page.on("console", lambda msg: problems.append(msg.text) if "Refused to" in msg.text else None)
        page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
        page.goto(url("", camera.pk))

        canvas = page.locator(f"#frame-{frame.pk} svg.calibration-canvas")
        marks = canvas.locator("circle.head")
        count = page.locator(f"#label-{frame.pk} input[name=count]")
        box = canvas.bounding_box()
        assert box is not None
        for x, y in [*spots, (0.1, 0.1)]:
            canvas.click(position={"x": x * box["width"], "y": y * box["height"]})
        expect(marks).to_have_count(4)
        marks.nth(3).click()  # a click on a mark removes it
        expect(marks).to_have_count(3)
        expect(count).to_have_value("3")
        with page.expect_navigation():
            page.locator(f"#label-{frame.pk} input[type=submit]").click()
        expect(page.locator("ul.messagelist")).to_contain_text(f"Frame {frame.pk} saved: 3 people.")
        expect(marks).to_have_count(3)  # drawn again from what was stored
        page.screenshot(path=str(Path(settings.BASE_DIR) / "test-artifacts" / "admin-calibration.png"), full_page=True)
        problems += page.evaluate("window.__csp")
        browser.close()
    finally:
        playwright.stop()

    assert problems == []
    frame.refresh_from_db()
    assert frame.count == 3 and len(frame.heads) == 3
    for (x, y), (fx, fy) in zip(frame.heads, spots, strict=True):
        assert x == pytest.approx(fx, abs=0.01) and y == pytest.approx(fy, abs=0.01)


@pytest.mark.model
@needs_mall
@pytest.mark.django_db(transaction=True)
def test_a_second_fit_while_one_runs_is_refused_not_run_twice(
    admin: Client, camera: Camera, real_fit: None, user_with_role: Callable[..., Any]
) -> None:
    """A double-click on "Fit", or a second admin fitting the same camera, used to start a second calibrate_camera
    next to the first: two processes counting every frame and both writing the camera's calibration."""
    with (MALL / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))[::12][:4]
    for row in rows:
        with open(MALL / row["image"], "rb") as image:
            add_frame(camera, count=int(row["count"]), data=image.read())
    other = Client()
    other.force_login(user_with_role("second", "admin"))

    with fitting_in_background(admin, camera) as first:
        second = other.post(url("_fit", camera.pk), follow=True)
        first_text = first.result(timeout=300).content.decode()

    second_text = second.content.decode()
    assert "Output of calibrate_camera" not in second_text  # no second subprocess
    assert "A fit of this camera is already running" in second_text
    assert "Calibration fitted and stored" in first_text, first_text
    camera.refresh_from_db()
    assert camera.calibration["n_frames"] == 4
    # The finished fit no longer blocks the next one.
    assert "already running" not in admin.post(url("_fit", camera.pk)).content.decode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_double_click_on_fit_sends_one_fit_and_shows_its_result(
    live_asgi_server: Any,
    session_cookie_for: Callable[[Any], str],
    user_with_role: Callable[..., Any],
    camera: Camera,
    labelled_without_model: None,
) -> None:
    """A double-click used to send two fits: the second was refused as already running and its answer replaced the
    page, so the first fit's result (here: its failure, for a model that does not exist) was never shown."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    from .conftest import launch_chromium

    expect = playwright_sync.expect
    cookie = session_cookie_for(user_with_role("boss", "admin"))  # the ORM before Playwright's loop starts
    fits: list[str] = []
    problems: list[str] = []

    playwright = playwright_sync.sync_playwright().start()
    try:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=live_asgi_server.url)
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_asgi_server.url}])
        page = context.new_page()
        page.set_default_timeout(60000)  # the fit starts a Django process of its own
        page.on("request", lambda request: fits.append(request.method) if request.url.endswith("/fit/") else None)
        page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
        page.goto(url("", camera.pk))
        button = page.get_by_role("button", name="Fit calibration").bounding_box()
        assert button is not None
        x, y = button["x"] + button["width"] / 2, button["y"] + button["height"] / 2
        page.mouse.click(x, y)
        page.wait_for_timeout(300)  # a person's double-click: the first request is on its way
        page.mouse.click(x, y)  # at the same spot, on whatever is there
        # The fit's own process loads Django and the models first: seconds on a busy machine, beyond expect's 5 s.
        expect(page.locator("ul.messagelist")).to_contain_text("Calibration failed: Detection model", timeout=60000)
        expect(page.get_by_role("button", name="Fit calibration")).to_be_enabled()  # the page anew
        browser.close()
    finally:
        playwright.stop()

    assert fits == ["POST"] and problems == []
