from collections.abc import Callable

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers as drf_serializers
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from crowd_monitor.api import ZONED
from crowd_monitor.permissions import require_perm

from . import services
from .models import Alert
from .serializers import AlertActionSerializer, AlertFilterSerializer, AlertSerializer

ERROR_RESPONSE = OpenApiResponse(
    inline_serializer("AlertConflict", {"detail": drf_serializers.CharField()}),
    description="The alert is not in a state that allows this change (e.g. already resolved).",
)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", enum=Alert.Status.values),
            OpenApiParameter("kind", enum=[value for value, _ in Alert._meta.get_field("kind").choices]),
            OpenApiParameter("location", type=int),
            OpenApiParameter("since", type=OpenApiTypes.DATETIME, description=f"triggered at or after; {ZONED}"),
            OpenApiParameter("until", type=OpenApiTypes.DATETIME, description=f"triggered at or before; {ZONED}"),
        ]
    )
)
class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    """Alerts, newest first. Operators and admins acknowledge and resolve them."""

    serializer_class = AlertSerializer

    def get_queryset(self) -> QuerySet[Alert]:
        alerts = Alert.objects.select_related("location", "acknowledged_by", "resolved_by").order_by(
            "-triggered_at", "-id"
        )
        if self.action != "list":
            return alerts
        filters = AlertFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        if "status" in data:
            alerts = alerts.filter(status=data["status"])
        if "kind" in data:
            alerts = alerts.filter(kind=data["kind"])
        if "location" in data:
            alerts = alerts.filter(location_id=data["location"])
        if "since" in data:
            alerts = alerts.filter(triggered_at__gte=data["since"])
        if "until" in data:
            alerts = alerts.filter(triggered_at__lte=data["until"])
        return alerts

    def get_permissions(self) -> list:
        if self.action in ("acknowledge", "resolve"):
            return [require_perm("alerts.change_alert")()]
        return [require_perm("alerts.view_alert")()]

    @extend_schema(request=AlertActionSerializer, responses={200: AlertSerializer, 409: ERROR_RESPONSE})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        return self._change(request, services.acknowledge)

    @extend_schema(request=AlertActionSerializer, responses={200: AlertSerializer, 409: ERROR_RESPONSE})
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        return self._change(request, services.resolve)

    def _change(self, request: Request, change: Callable[..., Alert]) -> Response:
        alert = self.get_object()
        body = AlertActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            alert = change(alert, request.user, body.validated_data.get("note", ""))
        except services.InvalidTransition as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(AlertSerializer(alert).data)
