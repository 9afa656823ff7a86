"""Calibrate a camera from Django admin: label frames in the browser, fit a correction, see the error before/after.

The page (Camera change form -> "Calibrate") lists the camera's CalibrationFrames. An admin captures the frame the
detection worker last stored, marks the heads on it (static/js/calibration.js) or types a count, and fits: the
labelled frames are written to a temporary folder with a counts.csv and `manage.py calibrate_camera` runs on them
in a subprocess. The subprocess keeps the counting models (torch / OpenVINO, hundreds of MB) out of the web
process, and a hang or crash there costs this request, not a web worker. The command stores the fitted mode and
map on the camera, where the worker picks them up.
"""

import csv
import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from .models import CalibrationFrame, Camera, CameraFrame, validate_heads
from .services import MAX_COUNT

if TYPE_CHECKING:
    from detection.counting.calibration import Calibration

logger = logging.getLogger(__name__)

MIN_FRAMES = 3  # calibrate_camera refuses fewer
FIT_TIMEOUT = 180  # seconds; counting a few dozen frames with every mode takes well under a minute on a CPU
# Calibrating changes what the camera reports, and the frames are images of people: admins only.
PERMISSIONS = (
    "locations.change_camera",
    "locations.view_calibrationframe",
    "locations.add_calibrationframe",
    "locations.change_calibrationframe",
    "locations.delete_calibrationframe",
)


def calibration_urls(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    """The calibration pages of CameraAdmin, behind the admin site's sign-in."""
    wrap = model_admin.admin_site.admin_view
    site = model_admin.admin_site

    def page_view(request: HttpRequest, camera_id: int) -> HttpResponse:
        return render_page(request, site, _camera(request, camera_id))

    def fit_view(request: HttpRequest, camera_id: int) -> HttpResponse:
        return fit(request, site, _camera(request, camera_id))

    return [
        path("<int:camera_id>/calibration/", wrap(page_view), name="locations_camera_calibration"),
        path("<int:camera_id>/calibration/capture/", wrap(capture), name="locations_camera_calibration_capture"),
        path("<int:camera_id>/calibration/fit/", wrap(require_POST(fit_view)), name="locations_camera_calibration_fit"),
        path("<int:camera_id>/calibration/clear/", wrap(clear), name="locations_camera_calibration_clear"),
        path(
            "<int:camera_id>/calibration/<int:frame_id>/label/",
            wrap(label),
            name="locations_camera_calibration_label",
        ),
        path(
            "<int:camera_id>/calibration/<int:frame_id>/delete/",
            wrap(delete),
            name="locations_camera_calibration_delete",
        ),
        path(
            "<int:camera_id>/calibration/<int:frame_id>/frame.jpg",
            wrap(image, cacheable=True),  # a stored frame never changes: the browser may keep it
            name="locations_camera_calibration_image",
        ),
    ]


def _camera(request: HttpRequest, camera_id: int) -> Camera:
    if not request.user.has_perms(PERMISSIONS):
        raise PermissionDenied
    return get_object_or_404(Camera.objects.select_related("location"), pk=camera_id)


def _frame(request: HttpRequest, camera_id: int, frame_id: int) -> CalibrationFrame:
    return get_object_or_404(CalibrationFrame, camera=_camera(request, camera_id), pk=frame_id)


def _back(camera: Camera, anchor: str = "") -> HttpResponse:
    return redirect(reverse("admin:locations_camera_calibration", args=[camera.pk]) + anchor)


# --- the page ---------------------------------------------------------------------------------------------------------


def render_page(
    request: HttpRequest, site: admin.AdminSite, camera: Camera, fit_output: str | None = None
) -> HttpResponse:
    frames = list(camera.calibration_frames.select_related("labelled_by").defer("jpeg"))
    zone = camera.zone if isinstance(camera.zone, list) else []  # dict forms are rare; the outline is a hint only
    context = {
        **site.each_context(request),
        "title": f"Calibrate {camera}",
        "opts": Camera._meta,
        "camera": camera,
        "frames": [{"frame": f, "heads_json": json.dumps(f.heads)} for f in frames],
        "labelled": sum(f.count is not None for f in frames),
        "min_frames": MIN_FRAMES,
        "zone_json": json.dumps(zone),
        "stored": describe(camera.calibration),
        "fit_output": fit_output,
        "fit_timeout": FIT_TIMEOUT,
    }
    return TemplateResponse(request, "admin/locations/camera/calibration.html", context)


def describe(calibration: Any) -> list[tuple[str, str]] | None:
    """The stored calibration as (label, value) rows for people; None when there is none (identity).

    Read with the counter's own rule (Calibration.parse), so the page shows what the worker applies, and says so
    when the worker cannot apply it: a value written by SQL or an older version must still render here, for the
    admin to see it and clear it."""
    # Imported here: detection sits on top of locations.
    from detection.counting.calibration import Calibration, CalibrationError

    try:
        parsed = Calibration.parse(calibration)
    except CalibrationError as exc:
        return [("Map (raw estimate → count)", f"not usable, so the camera reports its raw count: {exc}")]
    if parsed is None:
        return None
    rows = [("Counting mode", parsed.mode or "any"), ("Map (raw estimate → count)", _mapping(parsed))]
    return rows + _report_rows(calibration)


def _mapping(calibration: "Calibration") -> str:
    if calibration.kind == "scale":
        return f"scale: count = {calibration.a:.3f} * raw"
    if calibration.kind == "linear":
        return f"linear: count = {calibration.a:.3f} * raw {calibration.b:+.2f}"
    if calibration.kind == "isotonic":
        return "isotonic: " + ", ".join(f"{x:g} → {y:g}" for x, y in zip(calibration.xs, calibration.ys, strict=True))
    if calibration.boxes is not None:
        views = "the frame or its mirror image" if calibration.boxes.mirrored else "the frame"
        return (
            f"box model: each box detected in {views} weighed by how likely it is a person on this camera (learnt "
            f"from the clicked heads), plus {calibration.boxes.missed:.1f} people per frame no box finds"
        )
    return "identity: no correction beat the raw count on held-back frames"


def _report_rows(stored: dict[str, Any]) -> list[tuple[str, str]]:
    """What calibrate_camera reported with the fit; the counter never reads these, so they are shown as found."""
    rows = []
    if "heldout_mae_before" in stored:
        before, after = _figure(stored["heldout_mae_before"]), _figure(stored.get("heldout_mae_after", 0))
        rows.append(("Error on held-back frames (MAE)", f"{before} before → {after} after"))
    if "n_frames" in stored:
        rows.append(
            (
                "Frames",
                f"{stored['n_frames']} labelled; fitted on {stored.get('n_fit', '?')}, "
                f"measured on {stored.get('n_heldout', '?')} ({stored.get('validation', '')})",
            )
        )
    return rows


def _figure(value: Any) -> str:
    """A number to 2 decimals; anything else (hand-edited JSON) as it is, rather than a server error."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.2f}"
    return str(value)


def image(request: HttpRequest, camera_id: int, frame_id: int) -> HttpResponse:
    frame = _frame(request, camera_id, frame_id)
    response = HttpResponse(bytes(frame.jpeg), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response


# --- frames -----------------------------------------------------------------------------------------------------------


@require_POST
def capture(request: HttpRequest, camera_id: int) -> HttpResponse:
    camera = _camera(request, camera_id)
    latest = CameraFrame.objects.filter(camera=camera).first()
    if latest is None:
        messages.error(
            request,
            "This camera has no frame yet: the detection worker stores one each time it reads the camera. "
            "Check that the camera is enabled and online, then try again.",
        )
        return _back(camera)
    # The same frame twice would count double in the fit. Two captures at once (a double-click, two admins) both
    # found it missing and both stored it: the camera's row, locked, makes the second wait for the first's frame.
    with transaction.atomic():
        if not Camera.objects.select_for_update().filter(pk=camera.pk).exists():
            raise Http404("The camera was deleted.")  # since this request looked it up
        if camera.calibration_frames.filter(captured_at=latest.captured_at).exists():
            messages.warning(request, "This frame is already captured; wait for the camera's next frame.")
            return _back(camera)
        frame = CalibrationFrame.objects.create(
            camera=camera,
            jpeg=bytes(latest.jpeg),
            width=latest.width,
            height=latest.height,
            captured_at=latest.captured_at,
        )
    messages.success(request, "Frame captured: click the heads on it (or type the count) and save.")
    return _back(camera, f"#frame-{frame.pk}")


class LabelForm(forms.Form):
    heads = forms.JSONField(required=False)
    # The most a reading may count: a typed count beyond it overflowed the database column (a 500), and could not be
    # a real frame anyway.
    count = forms.IntegerField(min_value=0, max_value=MAX_COUNT, required=False)

    def clean_heads(self) -> list[list[float]]:
        heads = self.cleaned_data["heads"] or []
        validate_heads(heads)
        return [[round(x, 4), round(y, 4)] for x, y in heads]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.errors and data.get("count") is None:
            # A typed count wins (a dense crowd is easier counted in parts); otherwise the clicked heads are it.
            if not data.get("heads"):
                raise forms.ValidationError("Click the heads on the frame or type the number of people.")
            data["count"] = len(data["heads"])
        return data


@require_POST
def label(request: HttpRequest, camera_id: int, frame_id: int) -> HttpResponse:
    frame = _frame(request, camera_id, frame_id)
    form = LabelForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(e for field_errors in form.errors.values() for e in field_errors)
        messages.error(request, f"Frame {frame.pk} not saved: {errors}")
        return _back(frame.camera, f"#frame-{frame.pk}")
    frame.heads, frame.count, frame.labelled_by = form.cleaned_data["heads"], form.cleaned_data["count"], request.user
    frame.save(update_fields=["heads", "count", "labelled_by"])
    messages.success(request, f"Frame {frame.pk} saved: {frame.count} people.")
    return _back(frame.camera, f"#frame-{frame.pk}")


@require_POST
def delete(request: HttpRequest, camera_id: int, frame_id: int) -> HttpResponse:
    frame = _frame(request, camera_id, frame_id)
    frame.delete()
    messages.success(request, f"Frame {frame_id} deleted.")
    return _back(frame.camera)


# --- fit --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitRun:
    ok: bool
    output: str
    error: str = ""


def fit(request: HttpRequest, site: admin.AdminSite, camera: Camera) -> HttpResponse:
    frames = list(camera.calibration_frames.filter(count__isnull=False))
    if len(frames) < MIN_FRAMES:
        messages.error(request, f"Fitting needs at least {MIN_FRAMES} labelled frames; this camera has {len(frames)}.")
        return _back(camera)
    # One fit per camera at a time: a double-click on "Fit" or a second admin would otherwise start a second
    # calibrate_camera next to the first, both counting every frame and both writing the camera's calibration. The
    # cache is shared by every web process (Redis in production). The lock expires shortly after the fit's own
    # timeout, so one left behind by a web process killed mid-fit blocks the camera for minutes, not for good.
    lock = f"calibration-fit:{camera.pk}"
    try:
        locked: bool | None = cache.add(lock, True, timeout=FIT_TIMEOUT + 30)
    except Exception:
        # The cache (Redis) restarting must not keep an admin from calibrating a camera, nor answer 500: fit without
        # the lock. A second click meanwhile could start a second fit; both fit the same frames.
        logger.exception("Calibration fit of camera %s runs without its lock: the cache is unreachable", camera.pk)
        locked = None
    if locked is False:
        messages.warning(
            request,
            "A fit of this camera is already running (a second click, or another admin): its result is stored when "
            f"it finishes, within {FIT_TIMEOUT} s. Reload this page then to see it.",
        )
        return _back(camera)
    try:
        run = run_calibrate_camera(camera, frames)
    finally:
        if locked:
            try:
                cache.delete(lock)
            except Exception:  # it expires by itself
                logger.exception(
                    "Calibration fit lock of camera %s left to expire: the cache is unreachable", camera.pk
                )
    try:
        camera.refresh_from_db(fields=["counting_mode", "calibration"])
    except Camera.DoesNotExist:  # deleted by another admin while the fit ran: there is no page left to show
        messages.error(request, f"Camera {camera.pk} was deleted while it was being fitted; nothing was stored.")
        return redirect("admin:locations_camera_changelist")
    if run.ok:
        messages.success(request, "Calibration fitted and stored; the detection worker applies it from its next pass.")
    else:
        messages.error(request, f"Calibration failed: {run.error}")
    # Rendered, not redirected: the command's output belongs to this one response.
    return render_page(request, site, camera, fit_output=run.output)


def run_calibrate_camera(camera: Camera, frames: list[CalibrationFrame]) -> FitRun:
    """`manage.py calibrate_camera` on the labelled frames, in a subprocess with this process's environment."""
    with tempfile.TemporaryDirectory(prefix="calibrate-") as folder:
        counts = Path(folder) / "counts.csv"
        # The clicked heads, as stored (0-1): calibrate_camera fits a box model from them. They go as fractions, scaled
        # by the command to each JPEG it reads: a frame's width x height is the camera's own resolution, while the
        # worker stores frames at most 960 px wide, so heads in those pixels missed every box on a larger camera.
        heads = {}
        with counts.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "count"])
            for frame in frames:
                name = f"frame-{frame.pk}.jpg"
                (Path(folder) / name).write_bytes(bytes(frame.jpeg))
                writer.writerow([name, frame.count])
                heads[name] = frame.heads
        (Path(folder) / "heads.json").write_text(json.dumps(heads))
        command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "calibrate_camera", str(camera.pk)]
        try:
            result = subprocess.run(
                [*command, "--counts", str(counts), "--heads", str(Path(folder) / "heads.json"), "--heads-relative"],
                cwd=settings.BASE_DIR,
                capture_output=True,
                text=True,
                timeout=FIT_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            return FitRun(False, partial, f"it did not finish within {FIT_TIMEOUT} s; try fewer frames.")
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        # A CommandError ends stderr with "CommandError: <why>" (no model, unreadable frame...), possibly over
        # several lines; a crash ends it with the exception's last line.
        stderr = result.stderr.strip()
        start = stderr.rfind("CommandError: ")
        if start >= 0:
            reason = stderr[start + len("CommandError: ") :]
        else:
            reason = stderr.splitlines()[-1] if stderr else f"exit status {result.returncode}"
        return FitRun(False, output, reason)
    return FitRun(True, output)


@require_POST
def clear(request: HttpRequest, camera_id: int) -> HttpResponse:
    camera = _camera(request, camera_id)
    camera.calibration = {}
    camera.save(update_fields=["calibration"])
    messages.success(
        request,
        f"Calibration cleared: the camera reports its raw count (identity). Its counting mode stays "
        f"{camera.get_counting_mode_display()}; change it on the camera's page.",
    )
    return _back(camera)
