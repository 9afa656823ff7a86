from django.contrib import admin
from django.http import HttpRequest
from django.urls import URLPattern
from django.utils import timezone

from .calibration_admin import calibration_urls
from .forms import CameraForm
from .models import Camera, CrowdLog, DensitySnapshot, Location
from .services import refresh_location


class CameraInline(admin.TabularInline):
    model = Camera
    form = CameraForm  # the source's password is never shown
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
    """Stored readings are evidence: viewable, never edited or deleted by hand."""

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
    list_filter = ["source", "density_level", "location"]
    date_hierarchy = "timestamp"
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
    list_filter = ["location", "bucket_seconds"]
    date_hierarchy = "bucket_start"
