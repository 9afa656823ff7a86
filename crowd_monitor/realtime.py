"""The one way anything is pushed to live clients.

Imports no app on purpose: the write path and the alert services publish through here without
depending on `dashboard`. Publishing is best effort: a channel layer that is down (Redis restarting)
must never fail a reading that is already stored, so errors are logged and swallowed.
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

ALL_LOCATIONS_GROUP = "crowd"


def location_group(location_id: int) -> str:
    return f"crowd.location.{location_id}"


def publish(location_id: int, message: dict[str, Any]) -> bool:
    """Send `message` to everyone watching all locations and to those watching this one.

    `message["type"]` names the consumer handler (e.g. "crowd_update"), and the message is sent to
    clients as it is. Returns False when the channel layer could not be reached.
    """
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        for group in (ALL_LOCATIONS_GROUP, location_group(location_id)):
            async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.warning("Could not publish %s for location %s", message.get("type"), location_id, exc_info=True)
        return False
    return True
