from django.contrib import admin
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import URLPattern
from django.utils import timezone

from .calibration_admin import calibration_urls
from .forms import CameraForm
from .models import Camera, CrowdLog, DensitySnapshot, Location
from .services import refresh_location


class CameraInlineFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        """Refuse a rename the save would fail on: rows are saved from the top, one at a time, so a camera may not take
        a name that a camera of a later row still holds (swapping two names). The database's unique (location, name)
        constraint then failed mid-save and the page answered 500; a name given up by an earlier row is free."""
        super().clean()
        if self.instance.pk is None:
            return
        stored = dict(Camera.objects.filter(location=self.instance).values_list("pk", "name"))
        holder = {name: pk for pk, name in stored.items()}  # each name's camera, as the rows saved so far leave them
        for form in self.initial_forms:
            pk = form.instance.pk
            if pk not in stored or not hasattr(form, "cleaned_data"):
                continue
            if self.can_delete and self._should_delete_form(form):
                holder.pop(stored[pk], None)
                continue
            name = form.cleaned_data.get("name")
            if not name or name == stored[pk]:
                continue
            other = holder.get(name)
            if other is not None and other != pk:
                form.add_error(
                    "name",
                    f"'{name}' is still the name of camera {other} here when this row is saved (rows are saved from "
                    "the top): rename that camera in a row above this one, or in a separate save first.",
                )
                continue
            holder.pop(stored[pk], None)
            holder[name] = pk


class CameraInline(admin.TabularInline):
    model = Camera
    form = CameraForm  # the source's password is never shown
    formset = CameraInlineFormSet
    extra = 0
    fields = ["name", "source", "enabled", "status", "last_seen_at"]
    readonly_fields = ["status", "last_seen_at"]


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "capacity_limit",
        "current_count",
        "occupancy_percentage",
        "density_level",
        "last_reading_at",
        "is_active",
    ]
    list_filter = ["is_active", "density_level"]
    search_fields = ["name", "description"]
    readonly_fields = [
        "current_count",
        "occupancy_percentage",
        "density_level",
        "last_reading_at",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "description", "is_active", ("latitude", "longitude")]}),
        ("Capacity and density", {"fields": ["capacity_limit", "medium_threshold", "high_threshold"]}),
        (
            "Alerts",
            {
                "fields": [
                    "alert_threshold",
                    "spike_percent",
                    "spike_window_seconds",
                    "spike_min_delta",
                    "alert_cooldown_seconds",
                    "expected_interval_seconds",
                ]
            },
        ),
        (
            "Current state",
            {
                "fields": [
                    "current_count",
                    "occupancy_percentage",
                    "density_level",
                    "last_reading_at",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]
    inlines = [CameraInline]

    def save_model(self, request: HttpRequest, obj: Location, form, change: bool) -> None:
        if not change:
            obj.save()
            return
        # Save only the edited settings: a reading stored while the form was open must not be
        # overwritten with the current state loaded before it. Then re-derive the state.
        obj.save(update_fields=[*form.changed_data, "updated_at"])
        refresh_location(obj)


@admin.register(Camera)
class CameraAdmin(admin.ModelAdmin):
    form = CameraForm  # the source's password is never shown
    list_display = ["name", "location", "enabled", "status", "last_seen_at", "counted", "leased_by"]
    list_filter = ["enabled", "status", "location"]
    list_select_related = ["location", "newest_count"]
    search_fields = ["name", "location__name"]
    readonly_fields = [
        "status",
        "last_seen_at",
        "counted",
        "last_error",
        "leased_by",
        "lease_expires_at",
        "created_at",
    ]

    @admin.display(description="Newest count")
    def counted(self, camera: Camera) -> str:
        """The camera's part of its location's count (the sum of its enabled cameras' newest counts)."""
        part = camera.count_here
        if part is None:
            return "not yet counted"
        return f"{part.count} at {timezone.localtime(part.at):%Y-%m-%d %H:%M:%S}"

    def get_urls(self) -> list[URLPattern]:
        # The calibration page (linked from the change form's object tools): locations/calibration_admin.py.
        return calibration_urls(self) + super().get_urls()


class ReadOnlyAdmin(admin.ModelAdmin):
    """Stored readings are evidence: viewable, never edited or deleted by hand.

    Their tables hold millions of rows (12.6 million readings in 90 days from 8 cameras at a 5 s interval), so the
    lists stay on what an index answers at once: newest stored first (the primary key, where ordering by the time
    would sort the whole table), a time filter instead of a date hierarchy (which reads every row for its dates),
    and no second count of the whole table beside the filtered one (bench/admin_pages.py measures them).
    """

    ordering = ["-pk"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CrowdLog)
class CrowdLogAdmin(ReadOnlyAdmin):
    list_display = [
        "timestamp",
        "location",
        "count",
        "capacity_limit",
        "occupancy_percentage",
        "density_level",
        "source",
        "camera",
    ]
    list_filter = [("timestamp", admin.DateFieldListFilter), "source", "density_level", "location"]
    list_select_related = ["location", "camera__location"]


@admin.register(DensitySnapshot)
class DensitySnapshotAdmin(ReadOnlyAdmin):
    list_display = [
        "bucket_start",
        "location",
        "bucket_seconds",
        "readings",
        "min_count",
        "avg_count",
        "max_count",
        "max_occupancy",
    ]
    # No filter on bucket_seconds: the write path writes one size, and listing the sizes reads every row.
    list_filter = [("bucket_start", admin.DateFieldListFilter), "location"]
