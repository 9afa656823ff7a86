"""Serializers that only describe responses in the OpenAPI schema (the views build these payloads themselves)."""

from rest_framework import serializers

from .density import DensityLevel

LEVELS = [level.value for level in DensityLevel]


class CrowdUpdateSerializer(serializers.Serializer):
    """The design's crowd_update payload, as pushed over WebSockets."""

    type = serializers.ChoiceField(choices=["crowd_update"])
    location_id = serializers.IntegerField()
    current_count = serializers.IntegerField(allow_null=True)
    capacity_limit = serializers.IntegerField()
    occupancy_percentage = serializers.FloatField(allow_null=True)
    density_level = serializers.ChoiceField(choices=LEVELS, allow_null=True, help_text="null without fresh data")
    alert = serializers.BooleanField(help_text="true while the location has an unresolved alert")
    timestamp = serializers.DateTimeField(allow_null=True)


class HistoryPointSerializer(serializers.Serializer):
    t = serializers.DateTimeField(
        help_text="start of the bucket; buckets start on the site's wall clock (TIME_ZONE), e.g. on the hour in India"
    )
    readings = serializers.IntegerField()
    min_count = serializers.IntegerField()
    avg_count = serializers.FloatField()
    max_count = serializers.IntegerField()
    avg_occupancy = serializers.FloatField()
    max_occupancy = serializers.FloatField()


class HistorySerializer(serializers.Serializer):
    location_id = serializers.IntegerField()
    range = serializers.CharField()
    bucket_seconds = serializers.IntegerField()
    points = HistoryPointSerializer(many=True)


class QualitySerializer(serializers.Serializer):
    """How far a camera's count can be trusted, as the counting engine judged it (absent on readings pushed over
    the API). Reads a stored reading's `details["quality"]`; the engine's raw per-method figures stay internal."""

    mode_used = serializers.ChoiceField(
        choices=["detect", "density", "blend"],
        read_only=True,
        help_text="what produced the count: person detection, a crowd-density model, or a blend of both",
    )
    low = serializers.FloatField(read_only=True, allow_null=True, help_text="plausible lowest true count")
    high = serializers.FloatField(
        read_only=True, allow_null=True, help_text="plausible highest true count; null: no upper bound can be given"
    )
    dense = serializers.BooleanField(read_only=True, help_text="a dense crowd: the count is a density estimate")
    saturated = serializers.BooleanField(
        read_only=True,
        help_text="the crowd is beyond reliable detection: the count is a lower bound (the true count is at least it)",
    )


class CameraPartSerializer(serializers.Serializer):
    """One camera's part of a location's count (the location's count is the sum of its cameras' newest counts)."""

    camera_id = serializers.IntegerField(read_only=True)
    count = serializers.IntegerField(read_only=True, help_text="the camera's newest count when the reading was stored")
    held = serializers.BooleanField(
        read_only=True, help_text="the camera had stopped counting: its last count was kept in the sum"
    )


class LatestFrameSerializer(serializers.Serializer):
    camera_id = serializers.IntegerField()
    captured_at = serializers.DateTimeField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    count = serializers.IntegerField()
    boxes = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="person boxes [x1, y1, x2, y2, confidence] in frame pixels",
    )
    image_url = serializers.CharField()
    quality = QualitySerializer(
        allow_null=True, help_text="the quality of this camera's newest reading; null when it has none"
    )


class HeatmapSerializer(serializers.Serializer):
    camera_id = serializers.IntegerField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    cols = serializers.IntegerField()
    rows = serializers.IntegerField()
    readings = serializers.IntegerField()
    people = serializers.IntegerField()
    cells = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()), help_text="rows x cols foot-point counts"
    )
