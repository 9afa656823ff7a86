"""The one way anything is pushed to live clients.

Imports no app on purpose: the write path and the alert services publish through here without
depending on `dashboard`. Publishing is best effort: a channel layer that is down (Redis restarting)
must never fail a reading that is already stored, so errors are logged and swallowed, and a publish
never waits longer than PUBLISH_TIMEOUT seconds (a Redis that accepts connections but does not answer
must not stall the detection worker or a request).

With channels-redis, messages are sent from one long-lived event loop in a background thread, through a
layer instance of its own (built from the same settings), so its Redis connections are pooled and reused and
belong to that loop alone; `async_to_sync` from a thread without a loop would start a new event loop, and with
it a new Redis connection, for every message. The in-memory layer (one process, development) keeps
`async_to_sync`, which hands the send to the loop its consumers run on.
"""

import asyncio
import json
import logging
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, InMemoryChannelLayer, channel_layers, get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

ALL_LOCATIONS_GROUP = "crowd"


def location_group(location_id: int) -> str:
    return f"crowd.location.{location_id}"


class _PublisherLoop:
    """A daemon thread running an event loop that outlives every message sent through it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._for: Any = None  # the configured layer our own instance was built for
        self._layer: Any = None

    def layer_for(self, configured: Any) -> Any:
        """Our own instance of the configured layer (rebuilt when the configuration changes, as in tests)."""
        with self._lock:
            if self._for is not configured:
                old = self._layer
                self._layer, self._for = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER), configured
                if old is not None and self._loop is not None:
                    asyncio.run_coroutine_threadsafe(_dispose(old), self._loop)
            return self._layer

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                threading.Thread(target=run, name="realtime-publisher", daemon=True).start()
                started.wait(5)
                self._loop = loop
            return self._loop

    def run(self, coroutine: Any, timeout: float) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        try:
            future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"no answer from the channel layer within {timeout:g} s") from None


async def _dispose(layer: Any) -> None:
    """Close a replaced layer's connections of the publisher loop (on that loop; keys in Redis stay)."""
    try:
        if getattr(type(layer), "close_pools", None) is not None:  # channels_redis.core: pools per event loop
            await layer.close_pools()
        elif getattr(type(layer), "__getattr__", None) is not None:  # channels_redis.pubsub: flush = disconnect
            await layer.flush()
    except Exception:
        logger.debug("closing a replaced channel layer failed", exc_info=True)


_publisher = _PublisherLoop()


async def _send(layer: Any, groups: tuple[str, ...], message: dict[str, Any]) -> None:
    for group in groups:
        await layer.group_send(group, message)


def publish(location_id: int, message: dict[str, Any]) -> bool:
    """Send `message` to everyone watching all locations and to those watching this one.

    `message["type"]` names the kind of update (e.g. "crowd_update"); clients receive the message as it is, as JSON.
    It is encoded once here, not once per watching client. Returns False when the channel layer could not be
    reached in time.
    """
    layer = get_channel_layer()
    if layer is None:
        return False
    groups = (ALL_LOCATIONS_GROUP, location_group(location_id))
    event = {"type": message["type"], "text": json.dumps(message)}
    try:
        if isinstance(layer, InMemoryChannelLayer):
            async_to_sync(_send)(layer, groups, event)
        else:
            _publisher.run(_send(_publisher.layer_for(layer), groups, event), settings.PUBLISH_TIMEOUT)
    except Exception:
        logger.warning("Could not publish %s for location %s", message.get("type"), location_id, exc_info=True)
        return False
    return True
