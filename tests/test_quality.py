"""Honest uncertainty over the API: a camera reading's quality (interval, mode, dense / saturated flags) as
integrators read it, from readings stored through the one write path."""

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from locations.models import Camera, CameraFrame, CrowdLog, Location
from locations.services import record_reading

pytestmark = pytest.mark.django_db

# What the counting engine stores (detection/detectors.py CountResult.details()); `estimates` and `notes` are
# internals the API leaves out.
SATURATED = {
    "mode_used": "detect",
    "low": 36.0,
    "high": None,
    "dense": False,
    "saturated": True,
    "estimates": {"detect": 40.0},
    "notes": ["crowd, no density model: lower bound"],
}
DENSE = {
    "mode_used": "density",
    "low": 212.5,
    "high": 301.0,
    "dense": True,
    "saturated": False,
    "estimates": {"detect": 61.0, "density": 250.3},
    "notes": [],
}
QUALITY_KEYS = {"mode_used", "low", "high", "dense", "saturated"}


@pytest.fixture
def viewer() -> APIClient:
    user = User.objects.create_user("viewer")
    user.groups.add(Group.objects.get(name="viewer"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(user)[1]}")
    return client


@pytest.fixture
def plaza() -> Location:
    return Location.objects.create(name="Plaza", capacity_limit=500)


@pytest.fixture
def camera(plaza: Location) -> Camera:
    camera = Camera.objects.create(location=plaza, name="Plaza north", source="/dev/null")
    CameraFrame.objects.create(
        camera=camera, jpeg=b"\xff\xd8\xff\xd9", width=4, height=3, count=40, boxes=[], captured_at=timezone.now()
    )
    return camera


def camera_reading(location: Location, camera: Camera, count: int, quality: dict[str, Any] | None) -> CrowdLog:
    details: dict[str, Any] = {"frame_size": [4, 3], "boxes": []}
    if quality is not None:
        details["quality"] = quality
    return record_reading(location, count, source=CrowdLog.Source.CAMERA, camera_id=camera.pk, details=details)


def test_readings_carry_the_quality_subset_or_null(viewer: APIClient, plaza: Location, camera: Camera) -> None:
    camera_reading(plaza, camera, 250, DENSE)
    camera_reading(plaza, camera, 40, SATURATED)
    record_reading(plaza, 45, source=CrowdLog.Source.API)

    response = viewer.get(f"/api/locations/{plaza.pk}/readings/")

    assert response.status_code == 200
    pushed, saturated, dense = response.json()["results"]  # newest first
    assert pushed["count"] == 45 and pushed["quality"] is None
    assert saturated["count"] == 40
    assert saturated["quality"] == {"mode_used": "detect", "low": 36.0, "high": None, "dense": False, "saturated": True}
    assert dense["quality"] == {"mode_used": "density", "low": 212.5, "high": 301.0, "dense": True, "saturated": False}


def test_latest_frame_carries_the_newest_readings_quality(viewer: APIClient, plaza: Location, camera: Camera) -> None:
    url = f"/api/cameras/{camera.pk}/latest/"
    assert viewer.get(url).json()["quality"] is None  # no reading yet

    camera_reading(plaza, camera, 250, DENSE)
    camera_reading(plaza, camera, 40, SATURATED)
    # Another camera's newer reading at the same place says nothing about this one.
    other = Camera.objects.create(location=plaza, name="Plaza south", source="/dev/null")
    camera_reading(plaza, other, 12, {**DENSE, "dense": False})

    body = viewer.get(url).json()
    assert body["count"] == 40 and body["camera_id"] == camera.pk
    assert body["quality"] == {"mode_used": "detect", "low": 36.0, "high": None, "dense": False, "saturated": True}

    camera_reading(plaza, camera, 38, None)  # a counter that judges nothing (plain YOLO, HOG)
    assert viewer.get(url).json()["quality"] is None


def test_schema_documents_quality_as_returned(viewer: APIClient) -> None:
    schema = viewer.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]
    quality = schema["Quality"]
    assert set(quality["properties"]) == QUALITY_KEYS
    assert set(quality["required"]) == QUALITY_KEYS
    assert quality["properties"]["high"]["nullable"] is True
    for response in ("CrowdLog", "LatestFrame"):
        field = schema[response]["properties"]["quality"]
        assert field["nullable"] is True and field["allOf"] == [{"$ref": "#/components/schemas/Quality"}]
        assert "quality" in schema[response]["required"]
