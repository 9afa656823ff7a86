from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.throttling import ReadingsRateThrottle
from crowd_monitor.api import ZONED
from crowd_monitor.permissions import ModelPermissions, require_perm

from .api_schema import CrowdUpdateSerializer, HistorySerializer
from .history import RANGES, history
from .models import CrowdLog, Location
from .serializers import CrowdLogSerializer, LocationSerializer, ReadingFilterSerializer, ReadingSerializer
from .services import InvalidReading, record_reading, refresh_location
from .state import crowd_update, with_alert_flag


class LocationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Locations with their live state. Anyone signed in reads; admins create and change.

    Locations are not deleted over the API: their readings are kept; deactivate one instead.
    """

    serializer_class = LocationSerializer
    permission_classes = [IsAuthenticated, ModelPermissions]

    def get_queryset(self) -> QuerySet[Location]:
        return with_alert_flag(Location.objects.all()).order_by("name")

    def get_permissions(self) -> list:
        if self.action == "readings":
            if self.request.method == "POST":
                return [require_perm("locations.add_crowdlog")()]
            return [require_perm("locations.view_crowdlog")()]
        if self.action == "history":
            return [require_perm("locations.view_crowdlog")()]
        return super().get_permissions()

    def get_throttles(self) -> list:
        throttles = super().get_throttles()
        if self.action == "readings" and self.request.method == "POST":
            throttles.append(ReadingsRateThrottle())
        return throttles

    def perform_update(self, serializer: LocationSerializer) -> None:
        location = serializer.save()
        # Capacity or thresholds may have changed what the current count means.
        refresh_location(location)
        # Answer with the re-derived state (and alert flag), not the figures from before the change.
        serializer.instance = with_alert_flag(Location.objects.filter(pk=location.pk)).get()

    @extend_schema(
        methods=["GET"],
        parameters=[
            OpenApiParameter(
                "since", type=OpenApiTypes.DATETIME, description=f"readings at or after this time; {ZONED}"
            ),
            OpenApiParameter(
                "until", type=OpenApiTypes.DATETIME, description=f"readings at or before this time; {ZONED}"
            ),
        ],
        responses=CrowdLogSerializer(many=True),
    )
    @extend_schema(methods=["POST"], request=ReadingSerializer, responses={201: CrowdUpdateSerializer})
    @action(detail=True, methods=["get", "post"])
    def readings(self, request: Request, pk: str | None = None) -> Response:
        """GET: stored readings, newest first. POST: record a reading through the write path."""
        location = self.get_object()
        if request.method == "POST":
            return self._record(request, location)
        filters = ReadingFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        logs = CrowdLog.objects.filter(location=location)
        if "since" in filters.validated_data:
            logs = logs.filter(timestamp__gte=filters.validated_data["since"])
        if "until" in filters.validated_data:
            logs = logs.filter(timestamp__lte=filters.validated_data["until"])
        page = self.paginate_queryset(logs.order_by("-timestamp", "-id"))
        return self.get_paginated_response(CrowdLogSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("range", enum=list(RANGES), default="hour")],
        responses={200: HistorySerializer},
    )
    @action(detail=True, methods=["get"])
    def history(self, request: Request, pk: str | None = None) -> Response:
        """Occupancy over the last hour, day or week, in buckets (min / avg / max)."""
        range_name = request.query_params.get("range") or "hour"  # empty, like absent (as for every filter)
        if range_name not in RANGES:
            raise ValidationError({"range": f"Must be one of: {', '.join(RANGES)}."})
        return Response(history(self.get_object(), range_name))

    def _record(self, request: Request, location: Location) -> Response:
        if not location.is_active:
            raise ValidationError({"location": "This location is inactive and does not accept readings."})
        reading = ReadingSerializer(data=request.data)
        reading.is_valid(raise_exception=True)
        try:
            record_reading(
                location,
                reading.validated_data["count"],
                source=CrowdLog.Source.API,
                at=reading.validated_data.get("timestamp"),
            )
        except InvalidReading as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        location = with_alert_flag(Location.objects.filter(pk=location.pk)).get()
        return Response(crowd_update(location), status=status.HTTP_201_CREATED)
