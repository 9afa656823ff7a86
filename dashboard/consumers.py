"""Live crowd and alert updates over WebSockets.

`/ws/crowd/` streams every location, `/ws/crowd/<id>/` one. Only signed-in users connect. On
connect the client first receives the current state of every location in scope (and the open
alerts), then live messages as `crowd_monitor.realtime.publish` sends them.

A socket can stay open for a whole shift, so the right to watch is checked again whenever the client pings (the
dashboard does every 20 s), and by the server itself at least every WS_ACCESS_RECHECK_SECONDS, so a client that
never pings (a script with a copied session cookie) is no exception: a user who signed out elsewhere, whose session
expired, who was deactivated or lost the dashboard permission stops receiving within one interval. A password change
signs a session out, as on every page.
"""

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user

from accounts.roles import DASHBOARD
from alerts.models import Alert
from alerts.services import alert_update
from crowd_monitor.realtime import ALL_LOCATIONS_GROUP, location_group
from locations.models import Location
from locations.state import crowd_update, with_alert_flag

# Close codes in the 4000-4999 range are ours to define.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNKNOWN_LOCATION = 4404


async def dispatch_serially(
    sources: list[Callable[[], Awaitable[Any]]], dispatch: Callable[[Any], Awaitable[None]]
) -> None:
    """Channels' `await_many_dispatch` without its per-message cost: messages from several sources (the client's
    socket, the channel layer) are handed to `dispatch` one at a time, in arrival order.

    Channels creates a task and runs `asyncio.wait` over both sources for every message; with 1,000 watching
    clients that was a fifth of the server's CPU (py-spy, bench/ws_fanout.py). Here one reader task per source
    feeds a queue for the whole connection.
    """
    arrived: asyncio.Queue[tuple[Any, Exception | None]] = asyncio.Queue()

    async def read(source: Callable[[], Awaitable[Any]]) -> None:
        try:
            while True:
                arrived.put_nowait((await source(), None))
        except Exception as exc:  # noqa: BLE001 -- handed to the dispatching loop, which raises it
            arrived.put_nowait((None, exc))

    readers = [asyncio.ensure_future(read(source)) for source in sources]
    try:
        while True:
            message, error = await arrived.get()
            if error is not None:
                raise error
            await dispatch(message)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


class CrowdConsumer(AsyncJsonWebsocketConsumer):
    checked_at = 0.0  # time.monotonic() of the last access check
    cut_off = False  # closed because the user may no longer watch: nothing more is sent

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # AsyncConsumer.__call__, with dispatch_serially for Channels' await_many_dispatch, and a timer of our own.
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources = [receive, self._recheck_due]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await dispatch_serially(sources, self.dispatch)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await self._may_watch(user):  # integrators: API only
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.checked_at = time.monotonic()
        location_id: int | None = self.scope["url_route"]["kwargs"].get("location_id")
        if location_id is not None and not await self._location_exists(location_id):
            await self.close(code=CLOSE_UNKNOWN_LOCATION)
            return
        self.group = ALL_LOCATIONS_GROUP if location_id is None else location_group(location_id)
        # Join before reading the snapshot, so nothing committed in between is missed.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        for message in await self._snapshot(location_id):
            await self.send_json(message)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        # Clients only ever need to ping; anything else (binary, malformed JSON) gets an error
        # message instead of killing the socket.
        try:
            content = await self.decode_json(text_data) if text_data is not None else None
        except ValueError:
            content = None
        if self.cut_off:
            return
        if isinstance(content, dict) and content.get("type") == "ping":
            if await self._still_allowed():
                await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "detail": 'Unsupported message; only {"type": "ping"} is accepted.'})

    # Pushed updates (crowd_monitor.realtime.publish: already encoded as JSON text, once for every client) need no
    # database. Channels' default dispatch first runs close_old_connections in the one sync thread for every
    # message, so 1,000 watching clients queue 10,000 thread hops a second behind each other and updates arrive
    # seconds late (docs/PERFORMANCE.md, bench/ws_fanout.py): send them straight away.
    PUSHED = frozenset({"crowd_update", "alert_update"})

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") in self.PUSHED:
            if not self.cut_off:
                await self.send(text_data=message["text"])
        else:
            await super().dispatch(message)

    async def _recheck_due(self) -> dict[str, str]:
        await asyncio.sleep(settings.WS_ACCESS_RECHECK_SECONDS)
        return {"type": "access.recheck"}

    async def access_recheck(self, message: dict[str, str]) -> None:
        if not hasattr(self, "group") or self.cut_off:  # not accepted (yet), or already closed
            return
        # A pinging dashboard was checked moments ago: no second query per interval for it.
        if time.monotonic() - self.checked_at >= settings.WS_ACCESS_RECHECK_SECONDS:
            await self._still_allowed()

    async def _still_allowed(self) -> bool:
        """Check the user's right to watch afresh; close the socket (and send nothing more) if it is gone."""
        self.checked_at = time.monotonic()
        refusal = await self._refusal()
        if refusal is None:
            return True
        self.cut_off = True
        await self.close(code=refusal)
        return False

    @database_sync_to_async
    def _may_watch(self, user: Any) -> bool:
        return user.is_active and user.has_perm(DASHBOARD)

    @database_sync_to_async
    def _refusal(self) -> int | None:
        """The close code if the socket's user may no longer watch, read afresh from the database; else None."""
        key = getattr(self.scope.get("session"), "session_key", None)
        if not key:
            return CLOSE_UNAUTHENTICATED
        # A new store reads the session again: signed out (deleted) or expired sessions come back empty. Django's
        # own get_user then does what it does for every page: a session whose password hash no longer matches (the
        # password was changed, e.g. after a compromise) or whose user is inactive or gone gives AnonymousUser.
        session = import_module(settings.SESSION_ENGINE).SessionStore(key)
        user = get_user(SimpleNamespace(session=session))
        if not user.is_authenticated or user.pk != self.scope["user"].pk:
            return CLOSE_UNAUTHENTICATED
        return None if user.has_perm(DASHBOARD) else CLOSE_FORBIDDEN

    @database_sync_to_async
    def _location_exists(self, location_id: int) -> bool:
        return Location.objects.filter(pk=location_id).exists()

    @database_sync_to_async
    def _snapshot(self, location_id: int | None) -> list[dict[str, Any]]:
        locations = Location.objects.filter(is_active=True)
        alerts = Alert.objects.filter(status__in=Alert.OPEN_STATUSES).select_related(
            "location", "acknowledged_by", "resolved_by"
        )
        if location_id is not None:
            locations = Location.objects.filter(pk=location_id)
            alerts = alerts.filter(location_id=location_id)
        states = [crowd_update(location) for location in with_alert_flag(locations).order_by("name")]
        return states + [alert_update(alert) for alert in alerts.order_by("triggered_at")]


class NoRouteConsumer(AsyncJsonWebsocketConsumer):
    """Any socket path without a route (a mistyped URL, `/ws/crowd/abc/`): refused before the handshake completes,
    which the server answers 403, as it does an unknown location. Without it Channels' router raised ValueError ("No
    route found for path") and the server answered 500 with a traceback for what is bad input."""

    async def connect(self) -> None:
        await self.close()
