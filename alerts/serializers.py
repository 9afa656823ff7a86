from typing import Any

from rest_framework import serializers

from crowd_monitor.api import ZonedDateTimeField

from .models import Alert


class AlertSerializer(serializers.ModelSerializer):
    """An alert as the API returns it and as alert_update pushes it."""

    location_id = serializers.IntegerField(read_only=True)
    location_name = serializers.CharField(source="location.name", read_only=True)
    camera_id = serializers.IntegerField(read_only=True, allow_null=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    resolved_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "location_id",
            "location_name",
            "camera_id",
            "kind",
            "severity",
            "status",
            "message",
            "count",
            "occupancy_percentage",
            "triggered_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "note",
            "updated_at",
        ]
        read_only_fields = fields


class AlertActionSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class AlertFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Alert.Status.choices, required=False)
    kind = serializers.ChoiceField(choices=Alert._meta.get_field("kind").choices, required=False)
    location = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)  # a 64-bit id
    since = ZonedDateTimeField(
        required=False, naive_is_utc=True, help_text="Alerts triggered at or after this time (ISO-8601)."
    )
    until = ZonedDateTimeField(
        required=False, naive_is_utc=True, help_text="Alerts triggered at or before this time (ISO-8601)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"since": "Must not be after until."})
        return attrs
