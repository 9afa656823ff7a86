from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import services
from .models import Alert, AlertRule, Notification, NotificationChannel


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = [
        "triggered_at",
        "location",
        "kind",
        "severity",
        "status",
        "message",
        "acknowledged_by",
        "resolved_by",
    ]
    list_filter = ["status", "kind", "severity", "location"]
    date_hierarchy = "triggered_at"
    search_fields = ["message", "note", "location__name"]
    list_select_related = ["location", "acknowledged_by", "resolved_by"]
    actions = ["acknowledge_selected", "resolve_selected"]
    readonly_fields = [f.name for f in Alert._meta.fields if f.name != "note"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # alerts come from the alert engine only

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge_selected(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        self._apply(request, queryset.filter(status=Alert.Status.ACTIVE), services.acknowledge, "acknowledged")

    @admin.action(description="Resolve selected alerts", permissions=["change"])
    def resolve_selected(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        self._apply(request, queryset.filter(status__in=Alert.OPEN_STATUSES), services.resolve, "resolved")

    def _apply(self, request: HttpRequest, queryset: QuerySet[Alert], change, verb: str) -> None:
        done = 0
        for alert in queryset:
            try:
                change(alert, request.user, "")
                done += 1
            except services.InvalidTransition:
                pass  # someone else changed it meanwhile
        self.message_user(request, f"{done} alert(s) {verb}.", messages.SUCCESS)


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "location", "metric", "comparison", "threshold", "severity", "enabled"]
    list_filter = ["enabled", "severity", "location"]


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "target", "min_severity", "enabled"]
    list_filter = ["kind", "enabled"]
    filter_horizontal = ["locations"]


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "alert", "channel", "event", "status", "attempts", "next_attempt_at", "sent_at"]
    list_filter = ["status", "channel"]
    list_select_related = ["alert__location", "channel"]
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
