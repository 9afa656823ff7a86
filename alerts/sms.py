"""SMS backends, chosen like Django's email backends with the SMS_BACKEND setting.

A real gateway (Twilio, an SMPP bridge, ...) is a class with the same `send` method, named by
dotted path in SMS_BACKEND; it should raise on failure so the notification is retried.
"""

import logging

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class ConsoleSmsBackend:
    """Logs messages instead of sending them: the default until a gateway is configured."""

    def send(self, to: str, text: str) -> None:
        logger.warning("SMS to %s (no SMS gateway configured, SMS_BACKEND logs only): %s", to, text)


class LocmemSmsBackend:
    """Keeps messages in `outbox`, for tests."""

    outbox: list[tuple[str, str]] = []

    def send(self, to: str, text: str) -> None:
        self.outbox.append((to, text))


def get_sms_backend() -> ConsoleSmsBackend | LocmemSmsBackend:
    return import_string(settings.SMS_BACKEND)()
