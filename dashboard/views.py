from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from locations.models import Location
from locations.serializers import LocationSerializer
from locations.state import with_alert_flag


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    locations = with_alert_flag(Location.objects.filter(is_active=True)).order_by("name")
    return render(
        request,
        "dashboard/overview.html",
        {
            "locations": LocationSerializer(locations, many=True).data,
            "can_handle_alerts": request.user.has_perm("alerts.change_alert"),
        },
    )
