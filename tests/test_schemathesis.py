"""Property-based API testing with schemathesis: every operation of /api/schema/, as every role.

Generated requests (valid ones, and invalid ones from the schema's negation) go through the real Django
application (WSGI, in this process, on the test database). Each response must conform to the schema (status code
documented, content type, body), invalid input must be refused with a 4xx, nothing may answer 5xx, and operations
that need authentication must refuse the request without it. Path ids point at real objects (a location, an alert,
a camera with a frame), so the handlers run, not only their 404s.

`positive_data_acceptance` is left out: some valid-by-schema requests are rightly refused by rules the schema
cannot state (a reading dated in the future, a medium threshold above the high one, an inactive location).
Examples per operation (each with a role drawn from all five): SCHEMATHESIS_MAX_EXAMPLES (default 25), to keep
the suite quick; set it higher for a deeper run.
"""

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings, strategies
from schemathesis.core.parameters import ParameterLocation

from accounts.models import ApiToken
from alerts.models import Alert
from locations.models import Camera, CameraFrame, CrowdLog, Location
from locations.services import record_reading

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
ROLES = ["anonymous", "viewer", "operator", "admin", "integrator"]

CONFIG = schemathesis.Config.from_dict(
    {
        # Fuzzing only (the coverage phase's exhaustive boundary cases would take minutes per operation), with
        # the role drawn per example, so MAX_EXAMPLES requests per operation cover every role.
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        # Unknown query parameters are ignored, as by most APIs (the dashboard adds ?t= to frame URLs): not a fault.
        "generation": {"max-examples": MAX_EXAMPLES, "allow-extra-parameters": False},
        "checks": {"positive_data_acceptance": {"enabled": False}},
    }
)


def _document() -> dict[str, Any]:
    """The document GET /api/schema/?format=json serves, made by the same generator."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


class DjangoWsgi:
    """The project's WSGI application, made on the first request rather than at import: a Django handler made
    while tests are collected would capture settings (the static files storage) before the session's fixtures set
    them, and break the browser tests of the same run."""

    handler: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.handler is None:
            self.handler = get_wsgi_application()
        return self.handler(environ, start_response)


schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)
schema.app = DjangoWsgi()


@pytest.fixture
def in_process_requests() -> Iterator[None]:
    """Requests through the WSGI handler must not close the test's database connection (as Django's test client
    arranges too): its transaction holds this test's data, and on PostgreSQL closing it loses everything."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(in_process_requests: None) -> dict[str, Any]:
    gate = Location.objects.create(name="Gate A", capacity_limit=200, latitude=21.4, longitude=39.8)
    record_reading(gate, 170, source=CrowdLog.Source.API)  # an open OVERCROWDING alert, a snapshot, history
    camera = Camera.objects.create(location=gate, name="North", source="rtsp://u:pw@127.0.0.1:1/x")
    CameraFrame.objects.create(
        camera=camera, jpeg=b"\xff\xd8\xff\xd9", width=4, height=3, count=1, boxes=[[0, 0, 2, 3, 0.9]],
        captured_at=timezone.now(),
    )  # fmt: skip
    headers = {"anonymous": {}}
    for role in ROLES[1:]:
        user = User.objects.create_user(f"{role}-user", is_staff=role == "admin")
        user.groups.add(Group.objects.get(name=role))
        _token, key = ApiToken.issue(user)
        headers[role] = {"Authorization": f"Token {key}"}
    return {
        "headers": headers,
        "ids": {"locations": gate.pk, "alerts": Alert.objects.get().pk, "cameras": camera.pk},
    }


@pytest.mark.django_db
@schema.parametrize()
@schema.given(role=strategies.sampled_from(ROLES))
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case: Any, role: str, world: dict[str, Any]) -> None:
    if "id" in (case.path_parameters or {}) and not (case.meta and case.meta.is_negative_at(ParameterLocation.PATH)):
        resource = case.path.split("/")[2]  # /api/<resource>/{id}/...
        case.path_parameters = {**case.path_parameters, "id": world["ids"][resource]}
    case.call_and_validate(headers=world["headers"][role])
