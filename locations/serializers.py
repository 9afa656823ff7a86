from typing import Any

from rest_framework import serializers

from crowd_monitor.api import ZonedDateTimeField

from .api_schema import CameraPartSerializer, QualitySerializer
from .density import FeedStatus
from .models import CrowdLog, Location
from .services import MAX_COUNT
from .state import crowd_update, status_of

MAX_DB_INTEGER = 2_147_483_647  # PostgreSQL's `integer`


class LocationSerializer(serializers.ModelSerializer):
    """A location's settings plus its live state (the crowd_update fields)."""

    location_id = serializers.IntegerField(source="pk", read_only=True)
    current_count = serializers.IntegerField(read_only=True, allow_null=True)
    occupancy_percentage = serializers.FloatField(read_only=True, allow_null=True)
    density_level = serializers.SerializerMethodField()
    alert = serializers.SerializerMethodField()
    timestamp = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    over_capacity = serializers.SerializerMethodField()

    class Meta:
        model = Location
        fields = [
            "id",
            "location_id",
            "name",
            "description",
            "latitude",
            "longitude",
            "capacity_limit",
            "medium_threshold",
            "high_threshold",
            "alert_threshold",
            "spike_percent",
            "spike_window_seconds",
            "spike_min_delta",
            "alert_cooldown_seconds",
            "expected_interval_seconds",
            "is_active",
            "current_count",
            "occupancy_percentage",
            "density_level",
            "alert",
            "timestamp",
            "status",
            "over_capacity",
        ]
        # The same upper bound on every database (SQLite's integers are wider than PostgreSQL's). The durations in
        # seconds take theirs from the model's validators (MAX_SETTING_SECONDS), shared with Django admin.
        extra_kwargs = {name: {"max_value": MAX_DB_INTEGER} for name in ("capacity_limit", "spike_min_delta")}

    def _state(self, obj: Location) -> dict[str, Any]:
        # Computed once per object; the same function builds the WebSocket payload.
        cache = self.context.setdefault("_state", {})
        if obj.pk not in cache:
            cache[obj.pk] = crowd_update(obj)
        return cache[obj.pk]

    def get_density_level(self, obj: Location) -> str | None:
        return self._state(obj)["density_level"]

    def get_alert(self, obj: Location) -> bool:
        return self._state(obj)["alert"]

    def get_timestamp(self, obj: Location) -> str | None:
        return self._state(obj)["timestamp"]

    def get_status(self, obj: Location) -> FeedStatus:
        return status_of(obj)

    def get_over_capacity(self, obj: Location) -> bool:
        # The count, not the rounded percentage: 10,004 people in a place for 10,000 is over capacity at 100.0 %.
        return obj.current_count is not None and obj.current_count > obj.capacity_limit

    def update(self, instance: Location, validated_data: dict[str, Any]) -> Location:
        for name, value in validated_data.items():
            setattr(instance, name, value)
        # Save only the settings: the current state belongs to the write path, and a reading stored
        # since `instance` was loaded must not be overwritten with the older figures.
        instance.save(update_fields=[*validated_data, "updated_at"])
        return instance

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        medium = attrs.get("medium_threshold", getattr(self.instance, "medium_threshold", 30.0))
        high = attrs.get("high_threshold", getattr(self.instance, "high_threshold", 70.0))
        if medium >= high:
            raise serializers.ValidationError({"medium_threshold": "Must be below high_threshold."})
        return attrs


class CrowdLogSerializer(serializers.ModelSerializer):
    location_id = serializers.IntegerField(read_only=True)
    camera_id = serializers.IntegerField(read_only=True, allow_null=True)
    # A missing `quality` key (readings pushed over the API, older readings) comes out as null.
    quality = QualitySerializer(
        source="details.quality",
        read_only=True,
        allow_null=True,
        help_text="how far a camera's count can be trusted; null for readings without one (pushed over the API)",
    )
    camera_count = serializers.SerializerMethodField(
        help_text="what the reading's camera itself counted (`count` is the location's: the sum of its cameras); "
        "null for a reading without a camera"
    )
    cameras = CameraPartSerializer(
        source="camera_parts",
        many=True,
        read_only=True,
        help_text="the cameras whose counts `count` adds up; empty for a reading pushed without a camera",
    )

    class Meta:
        model = CrowdLog
        fields = [
            "id",
            "location_id",
            "camera_id",
            "source",
            "count",
            "capacity_limit",
            "occupancy_percentage",
            "density_level",
            "timestamp",
            "recorded_at",
            "quality",
            "camera_count",
            "cameras",
        ]

    def get_camera_count(self, obj: CrowdLog) -> int | None:
        return None if obj.camera_id is None else obj.camera_count


class StrictIntegerField(serializers.IntegerField):
    """An integer given as a JSON number: rejects 12.5, "12", true."""

    def to_internal_value(self, data: Any) -> int:
        whole = isinstance(data, int) or (isinstance(data, float) and data.is_integer())
        if isinstance(data, bool) or not whole:
            self.fail("invalid")
        return super().to_internal_value(data)


class ReadingSerializer(serializers.Serializer):
    count = StrictIntegerField(min_value=0, max_value=MAX_COUNT)
    timestamp = ZonedDateTimeField(required=False, help_text="When counted (ISO-8601 with a time zone); default: now.")


class ReadingFilterSerializer(serializers.Serializer):
    since = ZonedDateTimeField(required=False, naive_is_utc=True)
    until = ZonedDateTimeField(required=False, naive_is_utc=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"since": "Must not be after until."})
        return attrs
