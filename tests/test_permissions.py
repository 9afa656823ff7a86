"""Who may do what: every HTTP endpoint and both WebSocket routes, for anonymous visitors and every role.

One table, one parametrized test: each row is an endpoint, each column a role, each cell the status that role
gets. The API is called with the role's API token (as integrators do); pages, admin and WebSockets with the
role's signed-in browser session (as people do). Roles are the groups accounts' migration creates
(accounts/roles.py); "norole" is a signed-in account that no administrator has given a role yet: a viewer.

WebSocket cells: "ok" means the socket is accepted and the current state arrives first; 403 means the handshake
is refused.
"""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from accounts.models import ApiToken
from alerts.models import Alert
from locations.models import Camera, CameraFrame, Location

ROLES = ["anonymous", "norole", "viewer", "operator", "admin", "integrator"]
PASSWORD = "a-long-test-password-123"

# fmt: off
# name                  kind    method    path                                     anonymous, norole, viewer,
#                                                                                  operator, admin, integrator
MATRIX = [
    ("api root",             "api",  "get",    "/api/",                                 "401 200 200 200 200 200"),
    ("locations list",       "api",  "get",    "/api/locations/",                       "401 200 200 200 200 200"),
    ("location create",      "api",  "post",   "/api/locations/",                       "401 403 403 403 201 403"),
    ("location detail",      "api",  "get",    "/api/locations/{loc}/",                 "401 200 200 200 200 200"),
    ("location patch",       "api",  "patch",  "/api/locations/{loc}/",                 "401 403 403 403 200 403"),
    ("location put",         "api",  "put",    "/api/locations/{loc}/",                 "401 403 403 403 200 403"),
    ("location delete",      "api",  "delete", "/api/locations/{loc}/",                 "401 403 403 403 405 403"),
    ("readings list",        "api",  "get",    "/api/locations/{loc}/readings/",        "401 200 200 200 200 200"),
    ("reading push",         "api",  "post",   "/api/locations/{loc}/readings/",        "401 403 403 403 201 201"),
    ("location history",     "api",  "get",    "/api/locations/{loc}/history/",         "401 200 200 200 200 200"),
    ("alerts list",          "api",  "get",    "/api/alerts/",                          "401 200 200 200 200 200"),
    ("alert detail",         "api",  "get",    "/api/alerts/{alert}/",                  "401 200 200 200 200 200"),
    ("alert acknowledge",    "api",  "post",   "/api/alerts/{alert}/acknowledge/",      "401 403 403 200 200 403"),
    ("alert resolve",        "api",  "post",   "/api/alerts/{alert}/resolve/",          "401 403 403 200 200 403"),
    ("cameras list",         "api",  "get",    "/api/cameras/",                         "401 200 200 200 200 200"),
    ("camera detail",        "api",  "get",    "/api/cameras/{cam}/",                   "401 200 200 200 200 200"),
    ("camera latest",        "api",  "get",    "/api/cameras/{cam}/latest/",            "401 200 200 200 200 200"),
    ("camera frame",         "api",  "get",    "/api/cameras/{cam}/frame/",             "401 200 200 200 200 200"),
    ("camera heatmap",       "api",  "get",    "/api/cameras/{cam}/heatmap/",           "401 200 200 200 200 200"),
    ("token (own password)", "api",  "post",   "/api/auth/token/",                      "400 200 200 200 200 200"),
    ("openapi schema",       "api",  "get",    "/api/schema/",                          "200 200 200 200 200 200"),
    ("overview page",        "page", "get",    "/",                                     "302 200 200 200 200 302"),
    ("location page",        "page", "get",    "/locations/{loc}/",                     "302 200 200 200 200 302"),
    ("alert log page",       "page", "get",    "/alerts/",                              "302 200 200 200 200 302"),
    ("login page",           "page", "get",    "/login/",                               "200 200 200 200 200 200"),
    ("admin index",          "page", "get",    "/admin/",                               "302 302 302 302 200 302"),
    ("admin locations",      "page", "get",    "/admin/locations/location/",            "302 302 302 302 200 302"),
    ("admin camera",         "page", "get",    "/admin/locations/camera/{cam}/change/", "302 302 302 302 200 302"),
    ("admin users",          "page", "get",    "/admin/auth/user/",                     "302 302 302 302 200 302"),
    ("admin api tokens",     "page", "get",    "/admin/accounts/apitoken/",             "302 302 302 302 200 302"),
    ("admin audit log",      "page", "get",    "/admin/accounts/auditlog/",             "302 302 302 302 200 302"),
    ("liveness",             "page", "get",    "/healthz",                              "200 200 200 200 200 200"),
    ("readiness",            "page", "get",    "/readyz",                               "200 200 200 200 200 200"),
    ("ws all locations",     "ws",   "get",    "/ws/crowd/",                            "403 ok ok ok ok 403"),
    ("ws one location",      "ws",   "get",    "/ws/crowd/{loc}/",                      "403 ok ok ok ok 403"),
]
# fmt: on

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/locations/"): {"name": "New place", "capacity_limit": 10},
    ("patch", "/api/locations/{loc}/"): {"capacity_limit": 300},
    ("put", "/api/locations/{loc}/"): {"name": "Gate A", "capacity_limit": 300},
    ("post", "/api/locations/{loc}/readings/"): {"count": 12},
    ("post", "/api/alerts/{alert}/acknowledge/"): {"note": "on it"},
    ("post", "/api/alerts/{alert}/resolve/"): {},
}


def cells() -> list[Any]:
    params = []
    for name, kind, method, path, statuses in MATRIX:
        expected = statuses.split()
        assert len(expected) == len(ROLES), name
        for role, status in zip(ROLES, expected, strict=True):
            # WebSocket cells need the live server, hence committed data.
            mark = pytest.mark.django_db(transaction=kind == "ws")
            params.append(pytest.param(kind, method, path, role, status, id=f"{name}-{role}", marks=mark))
    return params


@pytest.fixture
def world(settings: Any) -> dict[str, Any]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only
    gate = Location.objects.create(name="Gate A", capacity_limit=200, latitude=21.4, longitude=39.8)
    camera = Camera.objects.create(location=gate, name="North", source="rtsp://cam:S3cr3t-pw@127.0.0.1:1/x")
    CameraFrame.objects.create(
        camera=camera, jpeg=b"\xff\xd8\xff\xd9", width=4, height=3, count=0, boxes=[], captured_at=timezone.now()
    )
    alert = Alert.objects.create(
        location=gate, kind="OVERCROWDING", key="OVERCROWDING", severity="WARNING", message="m"
    )
    return {"loc": gate.pk, "cam": camera.pk, "alert": alert.pk}


def make_user(role: str) -> User | None:
    if role == "anonymous":
        return None
    user = User.objects.create_user(f"{role}-user", password=PASSWORD, is_staff=role == "admin")
    if role != "norole":
        user.groups.add(Group.objects.get(name=role))
    return user


def http_status(kind: str, method: str, path: str, user: User | None, ids: dict[str, Any]) -> int:
    if kind == "api":
        client = APIClient()
        body = BODIES.get((method, path), {})
        if path == "/api/auth/token/":
            name = user.username if user else "nobody"
            body = {"username": name, "password": PASSWORD}
        elif user is not None:
            _token, key = ApiToken.issue(user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return getattr(client, method)(path.format(**ids), body, format="json").status_code
    client = Client()
    if user is not None:
        client.force_login(user)
    return client.get(path.format(**ids)).status_code


def ws_outcome(server: Any, path: str, sessionid: str | None, ids: dict[str, Any]) -> str:
    async def attempt() -> str:
        try:
            async with connect(
                server.ws_url + path.format(**ids),
                additional_headers=server.ws_headers(sessionid),
                proxy=None,
                open_timeout=5,
                close_timeout=2,
            ) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), 5))
                return "ok" if first["type"] == "crowd_update" else f"unexpected {first}"
        except InvalidStatus as exc:
            return str(exc.response.status_code)

    return asyncio.run(attempt())


@pytest.mark.parametrize(("kind", "method", "path", "role", "expected"), cells())
def test_permission_matrix(
    request: pytest.FixtureRequest,
    world: dict[str, Any],
    session_cookie_for: Callable[[Any], str],
    kind: str,
    method: str,
    path: str,
    role: str,
    expected: str,
) -> None:
    user = make_user(role)
    if kind == "ws":
        server = request.getfixturevalue("live_asgi_server")
        outcome = ws_outcome(server, path, session_cookie_for(user) if user else None, world)
    else:
        outcome = str(http_status(kind, method, path, user, world))
    assert outcome == expected, f"{method.upper()} {path} as {role}: {outcome}, expected {expected}"


@pytest.mark.django_db
def test_matrix_covers_every_api_operation_and_route() -> None:
    """A new endpoint must get a row: every path of the OpenAPI schema and both WebSocket routes are in the table."""
    schema = json.loads(APIClient().get("/api/schema/", {"format": "json"}).content)
    documented = {
        (method, path.replace("{id}", "{x}"))
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    covered = {
        (method, path.replace("{loc}", "{x}").replace("{alert}", "{x}").replace("{cam}", "{x}"))
        for _name, kind, method, path, _ in MATRIX
        if kind == "api"
    }
    assert documented - covered == set()
    from dashboard.consumers import NoRouteConsumer
    from dashboard.routing import websocket_urlpatterns

    *routes, refused = websocket_urlpatterns
    assert len(routes) == 2  # both in the matrix; every other path is refused by the last one
    assert refused.callback.consumer_class is NoRouteConsumer
