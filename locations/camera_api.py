"""Cameras as operators see them: status, the latest annotated frame and a heatmap of where people stood.

Camera sources may carry credentials, so no response here ever contains one.
"""

from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from crowd_monitor.api import ZONED, ZonedDateTimeField
from crowd_monitor.permissions import require_perm

from .api_schema import HeatmapSerializer, LatestFrameSerializer, QualitySerializer
from .heatmap import occupancy_grid
from .models import Camera, CameraFrame, CrowdLog
from .state import isoformat

# Enough readings for a stable picture (an hour at 1 s sampling) without scanning weeks of rows.
HEATMAP_MAX_READINGS = 3600
HEATMAP_DEFAULT_PERIOD = timedelta(hours=1)  # without `since`, the hour before `until`


class CameraSerializer(serializers.ModelSerializer):
    location_id = serializers.IntegerField(read_only=True)
    has_frame = serializers.SerializerMethodField()
    count = serializers.SerializerMethodField(
        help_text="the camera's newest count, its part of the location's count; null before it first counts"
    )
    counted_at = serializers.SerializerMethodField(help_text="when the camera took its newest count")

    class Meta:
        model = Camera
        fields = ["id", "location_id", "name", "enabled", "status", "last_seen_at", "has_frame", "count", "counted_at"]

    def get_has_frame(self, camera: Camera) -> bool:
        return hasattr(camera, "latest_frame")

    def get_count(self, camera: Camera) -> int | None:
        newest = camera.count_here
        return None if newest is None else newest.count

    def get_counted_at(self, camera: Camera) -> datetime | None:
        newest = camera.count_here
        return None if newest is None else newest.at


class CameraFilterSerializer(serializers.Serializer):
    location = serializers.IntegerField(required=False, min_value=1)


class HeatmapQuerySerializer(serializers.Serializer):
    since = ZonedDateTimeField(required=False, naive_is_utc=True)
    until = ZonedDateTimeField(required=False, naive_is_utc=True)
    cols = serializers.IntegerField(required=False, min_value=4, max_value=128, default=32)
    rows = serializers.IntegerField(required=False, min_value=3, max_value=96, default=24)

    def validate(self, attrs: dict) -> dict:
        attrs.setdefault("until", timezone.now())
        if "since" not in attrs:
            attrs["since"] = hour_before(attrs["until"])
        if attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"since": "Must be before until."})
        return attrs


def hour_before(until: datetime) -> datetime:
    """The default start of the period; a 400 for an `until` within the first hour of year 1, which has none."""
    try:
        return until - HEATMAP_DEFAULT_PERIOD
    except OverflowError:
        raise serializers.ValidationError(
            {"until": "Must be at least an hour after 0001-01-01T00:00:00Z, or give since too."}
        ) from None


def newest_quality(camera: Camera) -> dict[str, Any] | None:
    """The quality of the camera's newest count (the documented subset), or None when it has none."""
    newest = camera.count_here
    if newest is None or newest.quality is None:
        return None
    return QualitySerializer(newest.quality).data


@extend_schema_view(list=extend_schema(parameters=[OpenApiParameter("location", type=int)]))
class CameraViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = CameraSerializer
    permission_classes = [require_perm("locations.view_camera")]

    def get_queryset(self) -> QuerySet[Camera]:
        cameras = Camera.objects.select_related("latest_frame", "newest_count").order_by("location__name", "name")
        if self.action == "list":
            filters = CameraFilterSerializer(data=self.request.query_params)
            filters.is_valid(raise_exception=True)
            if "location" in filters.validated_data:
                cameras = cameras.filter(location_id=filters.validated_data["location"])
        return cameras

    def _frame(self) -> CameraFrame:
        camera = self.get_object()
        try:
            return camera.latest_frame
        except CameraFrame.DoesNotExist:
            raise NotFound("This camera has not delivered a frame yet.") from None

    @extend_schema(responses={200: LatestFrameSerializer})
    @action(detail=True, methods=["get"])
    def latest(self, request: Request, pk: str | None = None) -> Response:
        """The newest frame's detections; the image itself is at `image_url`."""
        frame = self._frame()
        stamp = int(frame.captured_at.timestamp() * 1000)
        return Response(
            {
                "camera_id": frame.camera_id,
                "captured_at": isoformat(frame.captured_at),
                "width": frame.width,
                "height": frame.height,
                "count": frame.count,
                "boxes": frame.boxes,
                "image_url": f"/api/cameras/{frame.camera_id}/frame/?t={stamp}",
                "quality": newest_quality(frame.camera),
            }
        )

    @extend_schema(responses={(200, "image/jpeg"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def frame(self, request: Request, pk: str | None = None) -> HttpResponse:
        """The newest frame as JPEG (people boxes are drawn by the client from `latest`)."""
        frame = self._frame()
        response = HttpResponse(bytes(frame.jpeg), content_type="image/jpeg")
        response["Cache-Control"] = "private, max-age=0"
        return response

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "since", type=OpenApiTypes.DATETIME, description=f"default: an hour before until; {ZONED}"
            ),
            OpenApiParameter("until", type=OpenApiTypes.DATETIME, description=f"default: now; {ZONED}"),
            OpenApiParameter("cols", type=int),
            OpenApiParameter("rows", type=int),
        ],
        responses={200: HeatmapSerializer},
    )
    @action(detail=True, methods=["get"])
    def heatmap(self, request: Request, pk: str | None = None) -> Response:
        """Where people stood (foot points of their boxes) over a period, on a grid over the camera's view."""
        camera = self.get_object()
        query = HeatmapQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        details = (
            CrowdLog.objects.filter(camera=camera, timestamp__gte=params["since"], timestamp__lte=params["until"])
            .order_by("-timestamp")
            .values_list("details", flat=True)[:HEATMAP_MAX_READINGS]
        )
        frames = [
            (d["frame_size"][0], d["frame_size"][1], d["boxes"])
            for d in details
            if d.get("frame_size") and "boxes" in d
        ]
        return Response(
            {
                "camera_id": camera.pk,
                "since": isoformat(params["since"]),
                "until": isoformat(params["until"]),
                "cols": params["cols"],
                "rows": params["rows"],
                "readings": len(frames),
                "people": sum(len(boxes) for _, _, boxes in frames),
                "cells": occupancy_grid(frames, params["cols"], params["rows"]),
            }
        )
