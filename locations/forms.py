"""Admin forms for cameras: a source's password is never sent back to the browser, and the counting zone is drawn
on the camera's newest frame."""

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.urls import reverse

from crowd_monitor.redaction import redact_uri

from .models import Camera, CameraFrame

ZONE_EXAMPLE = "[[0.1, 0.2], [0.9, 0.2], [0.5, 0.9]]"


class ZoneEditorWidget(forms.Textarea):
    """The zone as JSON in a plain textarea, plus the camera's newest frame to click the polygon on (zone_editor.js).

    The script only reads and writes the textarea, so typing JSON keeps working without it. Everything it needs
    comes in data- attributes: the pages' Content-Security-Policy allows no inline script or style.
    Without `frame_url` (a camera not saved yet, or that has not delivered a frame) `note` says why.
    """

    template_name = "admin/widgets/zone_editor.html"

    class Media:
        js = ["js/zone_editor.js"]
        css = {"all": ["css/zone_editor.css"]}

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs={"rows": 3, "class": "vLargeTextField", "spellcheck": "false", **(attrs or {})})
        self.frame_url: str | None = None
        self.note = (
            "Save the camera first: once it has delivered a frame, the zone can be drawn on it here. Until then, "
            f"type the zone as JSON, e.g. {ZONE_EXAMPLE}, or leave it empty for the whole frame."
        )

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["widget"].update(frame_url=self.frame_url, note=self.note)
        return context


class CameraForm(forms.ModelForm):
    """Shows the source with its password masked (rtsp://user:***@host/...) and a zone editor on the latest frame.

    Saved unchanged, the masked text keeps the stored source; anything else typed replaces it, so to change a
    source that has a password, type the whole URI again, password included.
    """

    class Meta:
        model = Camera
        fields = "__all__"  # noqa: DJ007 - the admin picks the fields
        widgets = {"zone": ZoneEditorWidget}
        error_messages = {
            "zone": {
                "invalid": f"The zone is not valid JSON. Write a list of [x, y] points, e.g. {ZONE_EXAMPLE}, or "
                "leave it empty for the whole frame."
            }
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mask_source()
        self._show_frame_in_zone_editor()

    def _mask_source(self) -> None:
        field = self.fields.get("source")
        if field is None or not self.instance.pk or not self.instance.source:
            return
        masked = redact_uri(self.instance.source)
        self.initial["source"] = masked
        if masked != self.instance.source:
            field.help_text = (
                "The password is hidden (***). Leave this as it is to keep it; to change anything, type the whole "
                "source again, password included."
            )
        field.widget.attrs.update(autocomplete="off", spellcheck="false")

    def _show_frame_in_zone_editor(self) -> None:
        field = self.fields.get("zone")
        if field is None or not isinstance(field.widget, ZoneEditorWidget) or not self.instance.pk:
            return
        # Only the capture time: the JPEG itself is fetched by the browser, from the API that serves it anyway.
        captured_at = (
            CameraFrame.objects.filter(camera_id=self.instance.pk).values_list("captured_at", flat=True).first()
        )
        if captured_at is None:
            field.widget.note = (
                "This camera has not delivered a frame yet, so there is nothing to draw on: type the zone as JSON, "
                f"e.g. {ZONE_EXAMPLE}, or leave it empty for the whole frame, and reload this page once it runs."
            )
            return
        # The capture time in the URL: a newer frame is a new image, never one the browser kept.
        stamp = int(captured_at.timestamp() * 1000)
        field.widget.frame_url = f"{reverse('camera-frame', args=[self.instance.pk])}?t={stamp}"

    def clean_source(self) -> str:
        source = self.cleaned_data["source"]
        if self.instance.pk and self.instance.source and source == redact_uri(self.instance.source):
            return self.instance.source
        return source

    def clean_zone(self) -> list[list[float]]:
        """The polygon as the counter will read it (detection.counting.zones), or [] for the whole frame."""
        # Imported here: the zones module loads OpenCV (~60 MB), which web processes need for nothing else.
        from detection.counting.zones import ZoneError, parse_zone

        try:
            zone = parse_zone(self.cleaned_data["zone"])
        except ZoneError as exc:
            raise ValidationError(str(exc), code="invalid_zone") from exc
        except (TypeError, ValueError) as exc:  # a coordinate that float() refuses: text, null, a nested list
            raise ValidationError(
                "Zone coordinates must be numbers between 0 and 1, e.g. [0.25, 0.5].", code="invalid_zone"
            ) from exc
        return zone or []

    def clean_calibration(self) -> Any:
        """Only a calibration the counter can apply: one it cannot is refused here, in words, rather than stored and
        then skipped by the detection worker (detection.counting.calibration holds the rule)."""
        from detection.counting.calibration import Calibration, CalibrationError  # detection sits on top of locations

        calibration = self.cleaned_data["calibration"]
        try:
            Calibration.parse(calibration)
        except CalibrationError as exc:
            raise ValidationError(str(exc), code="invalid_calibration") from exc
        return calibration
