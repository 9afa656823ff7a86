"""The operator pages: overview, one location, the alert log.

Pages are rendered with their initial state embedded (Django's `json_script`, no inline scripts) and then
kept current by the scripts in static/js over the `/ws/crowd/` WebSocket.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from accounts.roles import DASHBOARD
from alerts.engine import AlertKind
from alerts.models import Alert
from alerts.serializers import AlertSerializer
from locations.models import Location
from locations.serializers import LocationSerializer
from locations.state import with_alert_flag

# How many resolved alerts the overview's feed shows under the open ones.
RECENTLY_RESOLVED = 5


def _open_alerts(location: Location | None = None) -> list[dict[str, Any]]:
    alerts = Alert.objects.filter(status__in=Alert.OPEN_STATUSES).select_related(
        "location", "acknowledged_by", "resolved_by"
    )
    if location is not None:
        alerts = alerts.filter(location=location)
    return AlertSerializer(alerts.order_by("-triggered_at", "-id"), many=True).data


def _page_config(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    """What every live page's scripts need: who may act on alerts, the server clock, the known open alerts."""
    return {
        "can_handle_alerts": request.user.has_perm("alerts.change_alert"),
        "username": request.user.get_username(),
        # Lets the page measure its own clock's offset: staleness is judged against the server's time.
        "server_time": int(timezone.now().timestamp() * 1000),
        "open_alerts": _open_alerts(),
        # Map tiles cannot load on a closed network, so none by default; markers work without them.
        "map_tiles": {
            "url": getattr(settings, "DASHBOARD_MAP_TILE_URL", ""),
            "attribution": getattr(settings, "DASHBOARD_MAP_TILE_ATTRIBUTION", ""),
        },
        **extra,
    }


@login_required
@permission_required(DASHBOARD)  # integrators (API only) are refused
def overview(request: HttpRequest) -> HttpResponse:
    locations = LocationSerializer(
        with_alert_flag(Location.objects.filter(is_active=True)).order_by("name"), many=True
    ).data
    resolved = (
        Alert.objects.filter(status=Alert.Status.RESOLVED)
        .select_related("location", "acknowledged_by", "resolved_by")
        .order_by("-resolved_at", "-id")[:RECENTLY_RESOLVED]
    )
    config = _page_config(
        request, page="overview", locations=locations, resolved_alerts=AlertSerializer(resolved, many=True).data
    )
    return render(request, "dashboard/overview.html", {"locations": locations, "config": config})


@login_required
@permission_required(DASHBOARD)  # integrators (API only) are refused
def location_detail(request: HttpRequest, pk: int) -> HttpResponse:
    location = get_object_or_404(with_alert_flag(Location.objects.all()), pk=pk)
    data = LocationSerializer(location).data
    config = _page_config(request, page="location", location=data)
    return render(request, "dashboard/location.html", {"location": data, "config": config})


@login_required
@permission_required(DASHBOARD)  # integrators (API only) are refused
def alert_log(request: HttpRequest) -> HttpResponse:
    locations = list(Location.objects.order_by("name").values("id", "name"))
    config = _page_config(request, page="alerts", locations=locations)
    return render(
        request,
        "dashboard/alerts.html",
        {
            "config": config,
            "locations": locations,
            "statuses": Alert.Status.choices,
            "kinds": [(kind.value, kind.value.replace("_", " ").title()) for kind in AlertKind],
        },
    )
