"""The real-time contract end to end: the real ASGI app under uvicorn, real HTTP and real WebSocket clients.

Runs on whatever the environment configures: SQLite and the in-memory channel layer by default,
PostgreSQL and channels-redis with DATABASE_URL / REDIS_URL. The tests are synchronous (the ORM stays in
the test's thread); each WebSocket scenario runs in its own event loop via `asyncio.run`, with blocking
HTTP calls moved to a worker thread so the socket keeps being read meanwhile.
"""

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import requests
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from locations.models import CrowdLog, Location
from locations.services import record_reading

from .conftest import LiveAsgiServer

pytestmark = pytest.mark.django_db(transaction=True)

# Correctness timeouts, not benchmarks: a push normally arrives within tens of milliseconds. The contract's
# headline delivery must take under DELIVERY_TIMEOUT; any other expected message gets RECEIVE_TIMEOUT, which
# leaves room for a loaded CI machine.
DELIVERY_TIMEOUT = 2.0
RECEIVE_TIMEOUT = 5.0
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


# --- helpers --------------------------------------------------------------------------------------------------------


@pytest.fixture
def operator(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("duty-officer", "duty@example.com", password=None)


@pytest.fixture
def integrator(django_user_model: Any) -> Any:
    """A device account that may push readings and nothing else."""
    user = django_user_model.objects.create_user("counter-device", password=None)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="locations", codename="add_crowdlog"))
    return user


def ws_connect(server: LiveAsgiServer, path: str, sessionid: str | None, origin: str | None = None) -> Any:
    return connect(
        server.ws_url + path,
        additional_headers=server.ws_headers(sessionid, origin),
        proxy=None,
        open_timeout=5,
        close_timeout=2,
    )


async def receive(ws: ClientConnection, timeout: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def receive_many(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    return [await receive(ws) for _ in range(n)]


def post(server: LiveAsgiServer, path: str, token: str, body: dict[str, Any] | None = None) -> requests.Response:
    with requests.Session() as http:
        http.trust_env = False  # never through a proxy
        return http.post(server.url + path, json=body or {}, headers={"Authorization": f"Token {token}"}, timeout=10)


async def post_async(server: LiveAsgiServer, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
    """POST from a worker thread, so this event loop keeps reading the sockets meanwhile."""
    return await asyncio.to_thread(post, server, path, token, body)


def no_data_state(location: Location) -> dict[str, Any]:
    return {
        "type": "crowd_update",
        "location_id": location.pk,
        "current_count": None,
        "capacity_limit": location.capacity_limit,
        "occupancy_percentage": None,
        "density_level": None,
        "alert": False,
        "timestamp": None,
    }


def assert_timestamp_of(message: dict[str, Any], log: CrowdLog) -> None:
    assert isinstance(message["timestamp"], str) and ISO_UTC.match(message["timestamp"]), message["timestamp"]
    assert datetime.fromisoformat(message["timestamp"]) == log.timestamp


# --- the headline: one HTTP reading, one exact push -----------------------------------------------------------------


def test_reading_posted_over_http_is_pushed_exactly_and_matches_the_response(
    live_asgi_server: LiveAsgiServer,
    operator: Any,
    integrator: Any,
    session_cookie_for: Callable[[Any], str],
    api_token_for: Callable[[Any], str],
) -> None:
    gate = Location.objects.create(name="Gate A", capacity_limit=200)
    hall = Location.objects.create(name="Hall B", capacity_limit=50)
    Location.objects.create(name="Old Annex", capacity_limit=10, is_active=False)
    hall_log = record_reading(hall, 10, source=CrowdLog.Source.MANUAL)
    sessionid, token = session_cookie_for(operator), api_token_for(integrator)

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], float, requests.Response]:
        async with ws_connect(live_asgi_server, "/ws/crowd/", sessionid) as ws:
            snapshot = await receive_many(ws, 2)
            started = time.perf_counter()
            response = asyncio.create_task(
                post_async(live_asgi_server, f"/api/locations/{gate.pk}/readings/", token, {"count": 145})
            )
            pushed = await receive(ws, timeout=DELIVERY_TIMEOUT)
            latency = time.perf_counter() - started
            return snapshot, pushed, latency, await response

    snapshot, pushed, latency, response = asyncio.run(scenario())

    # The snapshot: every active location (by name), the one without readings as "no data".
    assert snapshot[0] == no_data_state(gate)
    assert snapshot[1] == {
        "type": "crowd_update",
        "location_id": hall.pk,
        "current_count": 10,
        "capacity_limit": 50,
        "occupancy_percentage": 20.0,
        "density_level": "LOW",
        "alert": False,
        "timestamp": snapshot[1]["timestamp"],
    }
    assert_timestamp_of(snapshot[1], hall_log)

    # The push, the very next message after the snapshot: exactly the contract's payload.
    log = CrowdLog.objects.get(location=gate)
    assert_timestamp_of(pushed, log)
    assert pushed == {
        "type": "crowd_update",
        "location_id": gate.pk,
        "current_count": 145,
        "capacity_limit": 200,
        "occupancy_percentage": 72.5,
        "density_level": "HIGH",
        "alert": False,
        "timestamp": pushed["timestamp"],
    }
    assert response.status_code == 201, response.text
    assert response.json() == pushed
    assert latency < DELIVERY_TIMEOUT
    print(f"crowd_update delivered {latency * 1000:.1f} ms after the POST was sent")


# --- alerts ---------------------------------------------------------------------------------------------------------


def test_overcrowding_alert_and_its_resolution_are_pushed(
    live_asgi_server: LiveAsgiServer,
    operator: Any,
    integrator: Any,
    session_cookie_for: Callable[[Any], str],
    api_token_for: Callable[[Any], str],
) -> None:
    plaza = Location.objects.create(name="Plaza", capacity_limit=200)
    sessionid = session_cookie_for(operator)
    device_token, operator_token = api_token_for(integrator), api_token_for(operator)

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with ws_connect(live_asgi_server, "/ws/crowd/", sessionid) as ws:
            assert await receive(ws) == no_data_state(plaza)

            response = await post_async(
                live_asgi_server, f"/api/locations/{plaza.pk}/readings/", device_token, {"count": 170}
            )
            assert response.status_code == 201, response.text
            seen["raised"] = {m["type"]: m for m in await receive_many(ws, 2)}
            seen["reading_response"] = response.json()

            # A client connecting now gets the open alert in its snapshot.
            async with ws_connect(live_asgi_server, f"/ws/crowd/{plaza.pk}/", sessionid) as late:
                seen["late_snapshot"] = await receive_many(late, 2)

            alert_id = seen["raised"]["alert_update"]["id"]
            response = await post_async(live_asgi_server, f"/api/alerts/{alert_id}/resolve/", operator_token)
            assert response.status_code == 200, response.text
            seen["resolved"] = {m["type"]: m for m in await receive_many(ws, 2)}
            seen["resolve_response"] = response.json()
        return seen

    seen = asyncio.run(scenario())

    raised = seen["raised"]
    assert set(raised) == {"alert_update", "crowd_update"}
    alert = raised["alert_update"]
    assert alert["location_id"] == plaza.pk
    assert (alert["status"], alert["kind"], alert["severity"]) == ("ACTIVE", "OVERCROWDING", "WARNING")
    assert alert["count"] == 170 and alert["occupancy_percentage"] == 85.0
    assert alert["resolved_by"] is None
    state = raised["crowd_update"]
    assert state == seen["reading_response"]
    assert (state["current_count"], state["occupancy_percentage"], state["density_level"]) == (170, 85.0, "HIGH")
    assert state["alert"] is True
    assert seen["late_snapshot"] == [state, alert]

    resolved = seen["resolved"]
    assert set(resolved) == {"alert_update", "crowd_update"}
    assert resolved["alert_update"]["id"] == alert["id"]
    assert resolved["alert_update"]["status"] == "RESOLVED"
    assert resolved["alert_update"]["resolved_by"] == operator.username
    assert resolved["alert_update"] == {"type": "alert_update", **seen["resolve_response"]}
    assert resolved["crowd_update"] == {**state, "alert": False}


# --- scope of the per-location route --------------------------------------------------------------------------------


def test_location_route_receives_only_its_own_location(
    live_asgi_server: LiveAsgiServer,
    operator: Any,
    integrator: Any,
    session_cookie_for: Callable[[Any], str],
    api_token_for: Callable[[Any], str],
) -> None:
    north = Location.objects.create(name="North Gate", capacity_limit=100)
    south = Location.objects.create(name="South Gate", capacity_limit=100)
    sessionid, token = session_cookie_for(operator), api_token_for(integrator)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with (
            ws_connect(live_asgi_server, f"/ws/crowd/{north.pk}/", sessionid) as north_ws,
            ws_connect(live_asgi_server, "/ws/crowd/", sessionid) as all_ws,
        ):
            north_messages = [await receive(north_ws)]
            all_messages = await receive_many(all_ws, 2)
            for location, count in ((south, 20), (north, 40)):
                response = await post_async(
                    live_asgi_server, f"/api/locations/{location.pk}/readings/", token, {"count": count}
                )
                assert response.status_code == 201, response.text
            north_messages.append(await receive(north_ws))
            all_messages += await receive_many(all_ws, 2)
        return north_messages, all_messages

    north_messages, all_messages = asyncio.run(scenario())

    assert north_messages[0] == no_data_state(north)  # the snapshot holds this location only
    assert (north_messages[1]["location_id"], north_messages[1]["current_count"]) == (north.pk, 40)
    # The other reading was published: the all-locations socket got both, in order.
    assert [(m["location_id"], m["current_count"]) for m in all_messages] == [
        (north.pk, None),
        (south.pk, None),
        (south.pk, 20),
        (north.pk, 40),
    ]


# --- who may connect ------------------------------------------------------------------------------------------------


def test_handshakes_refused_for_anonymous_foreign_origin_and_unknown_location(
    live_asgi_server: LiveAsgiServer, operator: Any, session_cookie_for: Callable[[Any], str]
) -> None:
    gate = Location.objects.create(name="Gate", capacity_limit=100)
    sessionid = session_cookie_for(operator)
    refused = [
        ("/ws/crowd/", None, None),  # anonymous
        (f"/ws/crowd/{gate.pk}/", None, None),  # anonymous
        ("/ws/crowd/", "not-a-valid-session", None),  # a forged / expired cookie is anonymous too
        ("/ws/crowd/", sessionid, "http://evil.example"),  # cross-site
        (f"/ws/crowd/{gate.pk}/", sessionid, "http://evil.example"),
        (f"/ws/crowd/{gate.pk + 1000}/", sessionid, None),  # no such location
    ]

    async def attempt(path: str, cookie: str | None, origin: str | None) -> Any:
        try:
            async with ws_connect(live_asgi_server, path, cookie, origin) as ws:
                return await asyncio.wait_for(ws.recv(), DELIVERY_TIMEOUT)  # accepted: should not happen
        except InvalidStatus as exc:
            return exc.response.status_code
        except ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else None}"

    async def scenario() -> tuple[list[Any], dict[str, Any]]:
        outcomes = [await attempt(*case) for case in refused]
        # The same session, from the site's own origin, is let in: the refusals are about the case, not the setup.
        async with ws_connect(live_asgi_server, f"/ws/crowd/{gate.pk}/", sessionid) as ws:
            return outcomes, await receive(ws)

    outcomes, accepted = asyncio.run(scenario())

    assert outcomes == [403] * len(refused), list(zip(refused, outcomes, strict=True))
    assert accepted == no_data_state(gate)


def test_a_signed_in_client_that_sends_no_origin_is_let_in(
    live_asgi_server: LiveAsgiServer, operator: Any, session_cookie_for: Callable[[Any], str]
) -> None:
    """Browsers always send Origin with a WebSocket handshake, so cross-site hijacking comes with a foreign one (refused
    above). A client that sends none is a program holding the session itself (a script, the websockets or Channels
    test client): the contract lets any signed-in user watch, so it is let in; without a session it is not."""
    gate = Location.objects.create(name="Gate", capacity_limit=100)
    sessionid = session_cookie_for(operator)

    async def attempt(path: str, headers: dict[str, str]) -> Any:
        try:
            async with connect(live_asgi_server.ws_url + path, additional_headers=headers, proxy=None) as ws:
                return await receive(ws)
        except InvalidStatus as exc:
            return exc.response.status_code

    async def scenario() -> list[Any]:
        cookie = {"Cookie": f"sessionid={sessionid}"}
        return [
            await attempt(f"/ws/crowd/{gate.pk}/", cookie),
            await attempt("/ws/crowd/", cookie),
            await attempt("/ws/crowd/", {}),  # anonymous
            await attempt("/ws/crowd/", {**cookie, "Origin": "null"}),  # a sandboxed page: an origin, not ours
        ]

    assert asyncio.run(scenario()) == [no_data_state(gate), no_data_state(gate), 403, 403]


def test_a_path_with_no_websocket_route_is_refused_not_a_server_error(
    live_asgi_server: LiveAsgiServer, operator: Any, session_cookie_for: Callable[[Any], str]
) -> None:
    """A mistyped socket URL (a location id that is not a number, a path that does not exist) is bad input: refused
    like an unknown location, not answered 500 with a traceback in the server log ("No route found for path")."""
    sessionid = session_cookie_for(operator)
    paths = ["/ws/crowd/abc/", "/ws/crowd/1/extra/", "/ws/nothing-here/", "/ws/crowd"]

    async def attempt(path: str, cookie: str | None) -> Any:
        try:
            async with ws_connect(live_asgi_server, path, cookie) as ws:
                return await asyncio.wait_for(ws.recv(), DELIVERY_TIMEOUT)  # accepted: should not happen
        except InvalidStatus as exc:
            return exc.response.status_code

    async def scenario() -> list[Any]:
        return [await attempt(path, cookie) for path in paths for cookie in (sessionid, None)]

    outcomes = asyncio.run(scenario())
    cases = [(path, cookie) for path in paths for cookie in ("session", None)]
    assert outcomes == [403] * len(cases), list(zip(cases, outcomes, strict=True))


# --- robustness -----------------------------------------------------------------------------------------------------


def test_malformed_frames_get_an_error_and_the_socket_stays_usable(
    live_asgi_server: LiveAsgiServer, operator: Any, session_cookie_for: Callable[[Any], str]
) -> None:
    gate = Location.objects.create(name="Gate", capacity_limit=100)
    sessionid = session_cookie_for(operator)

    async def scenario() -> list[dict[str, Any]]:
        replies = []
        async with ws_connect(live_asgi_server, "/ws/crowd/", sessionid) as ws:
            assert await receive(ws) == no_data_state(gate)
            for frame in (
                "this is not json",
                b"\x00\x01binary",
                '["ping"]',
                '{"type": "subscribe"}',
                '{"type": "ping"}',
            ):
                await ws.send(frame)
                replies.append(await receive(ws))
        return replies

    replies = asyncio.run(scenario())

    *errors, pong = replies
    for error in errors:
        assert error["type"] == "error"
        assert isinstance(error.get("detail"), str) and error["detail"]
    assert pong == {"type": "pong"}


@pytest.mark.parametrize("change", ["sign out", "deactivate", "make integrator", "password changed"])
def test_a_user_who_may_no_longer_watch_is_cut_off_at_the_next_ping(
    live_asgi_server: LiveAsgiServer, django_user_model: Any, session_cookie_for: Callable[[Any], str], change: str
) -> None:
    from django.contrib.auth.models import Group
    from django.contrib.sessions.models import Session

    gate = Location.objects.create(name="Gate", capacity_limit=100)
    watcher = django_user_model.objects.create_user("watcher", password=None)
    watcher.groups.add(Group.objects.get(name="viewer"))
    sessionid = session_cookie_for(watcher)

    def apply_change() -> None:
        if change == "sign out":
            Session.objects.filter(session_key=sessionid).delete()
        elif change == "deactivate":
            django_user_model.objects.filter(pk=watcher.pk).update(is_active=False)
        elif change == "password changed":
            # As after an administrator resets a compromised account's password: its other sessions end.
            watcher.set_password("a new passphrase for the watcher")
            watcher.save(update_fields=["password"])
        else:
            watcher.groups.set([Group.objects.get(name="integrator")])

    async def scenario() -> tuple[dict[str, Any], int | None]:
        async with ws_connect(live_asgi_server, "/ws/crowd/", sessionid) as ws:
            assert await receive(ws) == no_data_state(gate)
            await ws.send('{"type": "ping"}')
            pong = await receive(ws)
            await asyncio.to_thread(apply_change)
            await ws.send('{"type": "ping"}')
            with pytest.raises(ConnectionClosed):
                await receive(ws)
            return pong, ws.close_code

    pong, code = asyncio.run(scenario())

    assert pong == {"type": "pong"}
    assert code == (4403 if change == "make integrator" else 4401)


def test_a_signed_out_session_is_cut_off_even_if_its_client_never_pings(
    live_asgi_server: LiveAsgiServer,
    operator: Any,
    integrator: Any,
    session_cookie_for: Callable[[Any], str],
    api_token_for: Callable[[Any], str],
    settings: Any,
) -> None:
    """A copied session cookie in a script that never pings must not keep streaming after the user signs out."""
    from django.contrib.sessions.models import Session

    settings.WS_ACCESS_RECHECK_SECONDS = 1.0
    gate = Location.objects.create(name="Gate", capacity_limit=100)
    sessionid, token = session_cookie_for(operator), api_token_for(integrator)

    async def scenario() -> tuple[list[dict[str, Any]], int | None]:
        async with ws_connect(live_asgi_server, "/ws/crowd/", sessionid) as ws:
            assert await receive(ws) == no_data_state(gate)
            await asyncio.to_thread(Session.objects.filter(session_key=sessionid).delete)
            await asyncio.sleep(3 * settings.WS_ACCESS_RECHECK_SECONDS)
            response = await post_async(live_asgi_server, f"/api/locations/{gate.pk}/readings/", token, {"count": 7})
            assert response.status_code == 201, response.text
            received = []
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                while True:
                    received.append(await receive(ws))
            return received, ws.close_code

    received, code = asyncio.run(scenario())

    assert received == []
    assert code == 4401


def test_idle_socket_outlives_the_channel_layer_poll(
    live_asgi_server: LiveAsgiServer,
    operator: Any,
    integrator: Any,
    session_cookie_for: Callable[[Any], str],
    api_token_for: Callable[[Any], str],
) -> None:
    """A dashboard left open with nothing happening still gets the next update.

    channels-redis polls Redis with a blocking pop of `brpop_timeout` (5 s); a Redis client read timeout as
    short as that poll once crashed every consumer that had been idle that long.
    """
    gate = Location.objects.create(name="Gate", capacity_limit=100)
    sessionid, token = session_cookie_for(operator), api_token_for(integrator)
    # Read from the class: the pub/sub layer proxies instance attributes to a per-event-loop layer.
    idle_seconds = getattr(type(get_channel_layer()), "brpop_timeout", 0) + 1

    async def scenario() -> dict[str, Any]:
        async with ws_connect(live_asgi_server, "/ws/crowd/", sessionid) as ws:
            assert await receive(ws) == no_data_state(gate)
            await asyncio.sleep(idle_seconds)
            response = await post_async(live_asgi_server, f"/api/locations/{gate.pk}/readings/", token, {"count": 7})
            assert response.status_code == 201, response.text
            return await receive(ws)

    pushed = asyncio.run(scenario())

    assert (pushed["type"], pushed["location_id"], pushed["current_count"]) == ("crowd_update", gate.pk, 7)


def test_server_restart_sockets_close_and_reconnect_to_fresh_state(
    live_asgi_server: LiveAsgiServer,
    operator: Any,
    integrator: Any,
    session_cookie_for: Callable[[Any], str],
    api_token_for: Callable[[Any], str],
) -> None:
    gate = Location.objects.create(name="Gate", capacity_limit=100)
    sessionid, token = session_cookie_for(operator), api_token_for(integrator)
    server = live_asgi_server

    async def connected_through_shutdown() -> Any:
        async with ws_connect(server, "/ws/crowd/", sessionid) as ws:
            assert await receive(ws) == no_data_state(gate)
            stopping = asyncio.create_task(asyncio.to_thread(server.stop))
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as exc:
                closed = exc.rcvd.code if exc.rcvd else None
            else:
                closed = "still open"
            await stopping
            return closed

    assert asyncio.run(connected_through_shutdown()) == 1012  # "service restart": clients should reconnect
    with pytest.raises(requests.ConnectionError):
        post(server, f"/api/locations/{gate.pk}/readings/", token, {"count": 1})

    # Counted while the server is down (the detection worker keeps writing through the write path).
    log = record_reading(gate, 42, source=CrowdLog.Source.MANUAL)
    server.start()

    async def reconnected() -> tuple[dict[str, Any], dict[str, Any]]:
        async with ws_connect(server, "/ws/crowd/", sessionid) as ws:
            snapshot = await receive(ws)
            response = await post_async(server, f"/api/locations/{gate.pk}/readings/", token, {"count": 43})
            assert response.status_code == 201, response.text
            return snapshot, await receive(ws)

    snapshot, live = asyncio.run(reconnected())

    assert_timestamp_of(snapshot, log)
    assert snapshot == {
        "type": "crowd_update",
        "location_id": gate.pk,
        "current_count": 42,
        "capacity_limit": 100,
        "occupancy_percentage": 42.0,
        "density_level": "MEDIUM",
        "alert": False,
        "timestamp": snapshot["timestamp"],
    }
    # Live pushes work again after the restart.
    assert (live["location_id"], live["current_count"]) == (gate.pk, 43)


def test_messages_from_the_socket_and_the_layer_are_dispatched_one_at_a_time_in_arrival_order() -> None:
    from dashboard.consumers import dispatch_serially

    async def scenario() -> tuple[list[str], list[str]]:
        socket: asyncio.Queue[str] = asyncio.Queue()
        layer: asyncio.Queue[str] = asyncio.Queue()
        seen: list[str] = []
        running: list[str] = []

        async def dispatch(message: str) -> None:
            assert not running, f"{message} dispatched while {running} still running"
            running.append(message)
            await asyncio.sleep(0.01)  # a slow handler: nothing else may start meanwhile
            running.pop()
            seen.append(message)
            if message == "disconnect":
                raise RuntimeError("stop")

        async def feed() -> None:
            for source, message in [(socket, "connect"), (layer, "update 1"), (layer, "update 2"), (socket, "ping")]:
                source.put_nowait(message)
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.1)
            socket.put_nowait("disconnect")

        feeder = asyncio.ensure_future(feed())
        with pytest.raises(RuntimeError, match="stop"):
            await dispatch_serially([socket.get, layer.get], dispatch)
        await feeder
        return seen, running

    seen, running = asyncio.run(scenario())
    assert seen == ["connect", "update 1", "update 2", "ping", "disconnect"]
    assert running == []


def test_a_failing_source_ends_the_connection_with_its_error() -> None:
    from dashboard.consumers import dispatch_serially

    async def broken() -> str:
        raise ConnectionError("layer gone")

    async def idle() -> str:
        await asyncio.sleep(60)
        return "never"

    async def dispatch(message: str) -> None:
        raise AssertionError(f"nothing to dispatch, got {message}")

    with pytest.raises(ConnectionError, match="layer gone"):
        asyncio.run(asyncio.wait_for(dispatch_serially([idle, broken], dispatch), 5))


def _channel_prefix_for(redis_url: str) -> str:
    """The channel layer's prefix as the settings make it for this REDIS_URL (in a fresh interpreter)."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    env = {**os.environ, "REDIS_URL": redis_url, "DEBUG": "True", "DJANGO_SETTINGS_MODULE": "crowd_monitor.settings"}
    env.pop("CHANNEL_LAYER_PREFIX", None)
    script = "from django.conf import settings as s; print(s.CHANNEL_LAYERS['default']['CONFIG'].get('prefix', 'asgi'))"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_deployments_on_different_redis_databases_do_not_hear_each_others_updates() -> None:
    """Redis Pub/Sub channels are the whole server's, whatever the database number: a dashboard of the deployment on
    redis://host/5 showed (and counted) the alerts another deployment on redis://host/6 published."""
    import copy
    import os
    from urllib.parse import urlsplit

    from django.conf import settings

    server = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    base = f"{server.scheme}://{server.netloc}"
    ours, theirs = _channel_prefix_for(base + "/5"), _channel_prefix_for(base + "/6")
    assert ours != theirs, (ours, theirs)
    assert _channel_prefix_for(base + "/0") == "asgi"  # unchanged on database 0
    if not os.environ.get("REDIS_URL"):
        return  # no Redis server to try it on

    from channels.layers import channel_layers

    def layer(db: int, prefix: str) -> Any:
        config = copy.deepcopy(settings.CHANNEL_LAYERS["default"])
        config["CONFIG"]["hosts"][0]["address"] = f"{base}/{db}"
        config["CONFIG"]["prefix"] = prefix
        return channel_layers._make_backend("default", config["CONFIG"])

    async def scenario() -> None:
        ours_layer, theirs_layer = layer(5, ours), layer(6, theirs)
        try:
            channel = await ours_layer.new_channel()
            await ours_layer.group_add("crowd", channel)
            await asyncio.sleep(0.2)  # the subscription is in place
            await theirs_layer.group_send("crowd", {"type": "alert_update", "text": "theirs"})
            await asyncio.sleep(0.5)
            await ours_layer.group_send("crowd", {"type": "alert_update", "text": "ours"})
            # Its own updates arrive, and only those. (A receive that times out unsubscribes the channel: one wait.)
            assert (await asyncio.wait_for(ours_layer.receive(channel), RECEIVE_TIMEOUT))["text"] == "ours"
        finally:
            for each in (ours_layer, theirs_layer):
                await each.flush()

    asyncio.run(scenario())


def test_the_channel_prefix_names_the_database_redis_py_connects_to() -> None:
    """The prefix follows the database redis-py itself reads from REDIS_URL: deployments on one Redis socket
    (unix:///run/redis.sock?db=3 and ?db=4) got the same prefix from the socket's path, and heard each other's
    updates; a URL whose ?db= overrides its path got the path's prefix, not the database's."""
    three, four = _channel_prefix_for("unix:///run/redis.sock?db=3"), _channel_prefix_for("unix:///run/redis.sock?db=4")
    assert (three, four) == ("asgi-db3", "asgi-db4")
    assert _channel_prefix_for("unix:///run/redis.sock") == "asgi"  # database 0
    assert _channel_prefix_for("redis://127.0.0.1:6379/0?db=3") == "asgi-db3"  # redis-py connects to database 3


def test_http_requests_leave_no_database_connection_open(live_asgi_server: LiveAsgiServer) -> None:
    """Under ASGI each request runs in a thread of its own, and a connection kept for reuse (DB_CONN_MAX_AGE, 60 s by
    default) was never reused: in a surge of 30 readings a second the web process held up to 91 of PostgreSQL's 100
    connections, and readings were answered 500 ("too many clients already")."""
    from django.db import connections
    from django.db.backends.signals import connection_created

    if connections["default"].vendor != "postgresql":
        pytest.skip("an in-memory SQLite test database is never closed; the leak is PostgreSQL's (and MySQL's)")
    db = connections.settings["default"]
    max_age = db["CONN_MAX_AGE"]
    opened: list[Any] = []

    def track(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(connection)

    db["CONN_MAX_AGE"] = 60  # as deployed (the live server fixture sets 0)
    connection_created.connect(track)
    try:
        for _ in range(10):
            status, _body = live_asgi_server.get("/readyz")
            assert status == 200
    finally:
        connection_created.disconnect(track)
        db["CONN_MAX_AGE"] = max_age
    assert len(opened) >= 10, "each request opens a connection of its own thread"
    # The server closes a request's connections when the response is closed, just after its last byte went out:
    # the last request's may still be closing when the client has its answer.
    deadline = time.monotonic() + 5
    while (
        still_open := [wrapper for wrapper in opened if wrapper.connection is not None]
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not still_open, f"{len(still_open)} of {len(opened)} connections opened by requests are still open"
