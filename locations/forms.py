"""Admin forms for cameras: a source's password is never sent back to the browser."""

from typing import Any

from django import forms

from crowd_monitor.redaction import redact_uri

from .models import Camera


class CameraForm(forms.ModelForm):
    """Shows the source with its password masked (rtsp://user:***@host/...).

    Saved unchanged, the masked text keeps the stored source; anything else typed replaces it, so to change a
    source that has a password, type the whole URI again, password included.
    """

    class Meta:
        model = Camera
        fields = "__all__"  # noqa: DJ007 - the admin picks the fields

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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

    def clean_source(self) -> str:
        source = self.cleaned_data["source"]
        if self.instance.pk and self.instance.source and source == redact_uri(self.instance.source):
            return self.instance.source
        return source
