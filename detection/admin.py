from django.contrib import admin
from django.http import HttpRequest

from .models import Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Running detection workers and their figures: written by the workers themselves, read-only here."""

    list_display = ["name", "cameras", "heartbeat_at", "started_at"]
    readonly_fields = ["name", "hostname", "pid", "started_at", "heartbeat_at", "cameras", "stats"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
