"""Delivering queued notifications (email, webhook, SMS) with retries and back-off.

Notifications are outbox rows written in the alert's own transaction, so an alert can't be lost
between "stored" and "sent". Right after commit they are tried once in a background thread; the
`run_alerts` worker retries what failed. A row is claimed with a conditional UPDATE that pushes
its `next_attempt_at` into the future, so two processes never send the same notification at once.
"""

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection
from django.db.models import F
from django.utils import timezone
from requests.adapters import HTTPAdapter

from crowd_monitor.clock import site_time

from .models import Notification, NotificationChannel
from .sms import get_sms_backend

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
RETRY_BASE = timedelta(seconds=30)  # 30 s, 1 min, 2 min, ... about an hour in all
CLAIM_LEASE = timedelta(seconds=120)  # longer than any single send may take

_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="notify")


def _subject(n: Notification) -> str:
    alert = n.alert
    verb = "escalated" if n.event == "escalated" else "alert"
    subject = f"[Crowd Monitor] {alert.severity} {alert.get_kind_display()} {verb} at {alert.location.name}"
    # One line: a location name may hold line breaks, and Django refuses (BadHeaderError) a header with
    # one, so the email would fail on every retry and never be sent.
    return " ".join(subject.split())


def _text(n: Notification) -> str:
    alert = n.alert
    lines = [
        f"{alert.get_kind_display()} at {alert.location.name} ({alert.severity}).",
        alert.message,
        f"Triggered at {site_time(alert.triggered_at)}.",
    ]
    if n.event == "escalated":  # the alert's own time is when it was first raised, maybe long before
        lines.append(f"Escalated to {alert.severity} at {site_time(n.created_at)}.")
    if alert.count is not None:
        capacity = alert.location.capacity_limit
        lines.append(f"Count {alert.count}, occupancy {alert.occupancy_percentage}% of capacity {capacity}.")
    lines.append(f"Dashboard: {settings.SITE_URL.rstrip('/')}/")
    return "\n".join(lines)


class WebhookError(Exception):
    """A webhook delivery failed; recorded and retried like any failure. Its message never quotes the URL."""


def send_email(n: Notification) -> None:
    send_mail(_subject(n), _text(n), settings.DEFAULT_FROM_EMAIL, [n.channel.target], fail_silently=False)


def send_webhook(n: Notification) -> None:
    from .services import alert_update

    body = {"event": n.event, "alert": alert_update(n.alert)}
    # Only the status line matters. The body is never read: a receiver that trickles it (each byte within
    # the read timeout) would hold this worker, and every notification queued behind it, for as long as it
    # likes, and one that streams gigabytes would fill the worker's memory.
    # Redirects are not followed: the receiver could bounce the alert on to any address, an internal
    # service included. A 3xx is an error (raise_for_status lets it pass) until the admin fixes the URL.
    target = n.channel.target
    seconds = settings.WEBHOOK_TIMEOUT
    adapter = _DeadlineAdapter()
    # requests' timeout bounds each read, not the exchange: a receiver trickling its headers a byte at a
    # time would hold this thread past the claim lease (another worker then sends it again) and block every
    # notification behind it. At the deadline the socket is shut down, which ends the blocked read.
    watchdog = threading.Timer(seconds, adapter.cut_off)
    watchdog.daemon = True
    try:
        with requests.Session() as session:
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            watchdog.start()
            with session.post(target, json=body, timeout=seconds, stream=True, allow_redirects=False) as response:
                if adapter.cut:  # the headers ended because the socket was shut down: not an answer
                    raise WebhookError(f"no answer within {seconds:g} s")
                response.raise_for_status()
                if response.status_code >= 300:
                    raise WebhookError(f"{response.status_code} redirect from the webhook URL, not followed")
    except requests.RequestException as exc:
        if adapter.cut:
            raise WebhookError(f"no answer within {seconds:g} s") from None
        # requests quotes the URL (or its path and query) in its messages, and webhook URLs carry their
        # token there: the error is stored in last_error, shown in admin and logged, so the URL goes.
        raise WebhookError(_without_url(f"{type(exc).__name__}: {exc}", target)) from None
    finally:
        watchdog.cancel()


class _DeadlineAdapter(HTTPAdapter):
    """An adapter for one exchange that keeps the sockets its connections open, so they can be cut off."""

    def __init__(self) -> None:
        super().__init__()
        self.cut = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        pool = super().get_connection_with_tls_context(*args, **kwargs)
        adapter, base = self, pool.ConnectionCls

        class Connection(base):
            def connect(self) -> None:
                super().connect()
                adapter._opened(self.sock)

        pool.ConnectionCls = Connection  # this adapter's pools serve this exchange only
        return pool

    def _opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.cut:  # connected just after the deadline
                _shut_down(sock)

    def cut_off(self) -> None:
        with self._lock:
            self.cut = True
            for sock in self._sockets:
                _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would drop its TLS state under the
    # reading thread.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _without_url(text: str, url: str) -> str:
    """The text with the URL, and its path and query (which urllib3 quotes alone), replaced."""
    text = text.replace(url, "<webhook URL>")
    parts = urlsplit(url)
    path = urlunsplit(("", "", parts.path, parts.query, ""))
    if len(path) > 1:  # "" and "/" hold no secret, and replacing them would mangle the message
        text = text.replace(path, "<webhook URL>")
    return text


def send_sms(n: Notification) -> None:
    # With its time: a retried SMS may arrive up to an hour late (MAX_ATTEMPTS), and must not read as news. An
    # escalation's time is when it escalated (its notification was written then), not when the alert was first raised.
    raised = site_time(n.created_at if n.event == "escalated" else n.alert.triggered_at, "%d %b %H:%M")
    get_sms_backend().send(n.channel.target, f"{_subject(n)}, {raised}: {n.alert.message}")


SENDERS: dict[str, Callable[[Notification], None]] = {
    NotificationChannel.Kind.EMAIL: send_email,
    NotificationChannel.Kind.WEBHOOK: send_webhook,
    NotificationChannel.Kind.SMS: send_sms,
}


def retry_delay(attempts: int) -> timedelta:
    return RETRY_BASE * 2 ** (attempts - 1)


def deliver(notification_id: int, now: datetime | None = None) -> bool:
    """Try one due notification once. Returns True when it was sent by this call."""
    now = now or timezone.now()
    # A channel switched off since the notification was queued (it misbehaves, or points at the wrong place)
    # gets nothing more: the pending row is given up rather than retried for the next hour.
    dropped = Notification.objects.filter(
        pk=notification_id, status=Notification.Status.PENDING, channel__enabled=False
    ).update(status=Notification.Status.FAILED, last_error="Not sent: the channel was disabled.")
    if dropped:
        logger.info("Notification %s dropped: its channel was disabled", notification_id)
        return False
    claimed = Notification.objects.filter(
        pk=notification_id, status=Notification.Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=now + CLAIM_LEASE, attempts=F("attempts") + 1)
    if not claimed:
        return False
    n = Notification.objects.select_related("alert__location", "channel").get(pk=notification_id)
    try:
        SENDERS[n.channel.kind](n)
    except Exception as exc:  # noqa: BLE001 - a failing notifier is recorded and retried, never raised
        n.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if n.attempts >= MAX_ATTEMPTS:
            n.status = Notification.Status.FAILED
            logger.error("Giving up on notification %s via %s: %s", n.pk, n.channel, n.last_error)
        else:
            n.next_attempt_at = now + retry_delay(n.attempts)
            logger.warning("Notification %s via %s failed (attempt %s): %s", n.pk, n.channel, n.attempts, n.last_error)
        n.save(update_fields=["status", "last_error", "next_attempt_at"])
        return False
    n.status = Notification.Status.SENT
    n.sent_at = timezone.now()
    n.last_error = ""
    n.save(update_fields=["status", "sent_at", "last_error"])
    return True


def deliver_due(now: datetime | None = None, limit: int = 200) -> int:
    """Try every notification whose time has come; returns how many were sent."""
    now = now or timezone.now()
    due = Notification.objects.filter(status=Notification.Status.PENDING, next_attempt_at__lte=now)
    rows = list(due.order_by("next_attempt_at").values_list("pk", "channel_id")[:limit])
    # Sends run one after another, between run_alerts' STALE checks. A channel whose notification was not sent
    # (it failed: a receiver that never answers costs the whole timeout; or another worker holds it) is not
    # tried again in this pass: its other notifications wait for the next pass instead of holding up every
    # other channel, and the STALE check, one timeout each.
    failing: set[int] = set()
    sent = 0
    for pk, channel_id in rows:
        if channel_id in failing:
            continue
        if deliver(pk, now):
            sent += 1
        else:
            failing.add(channel_id)
    return sent


def _deliver_in_thread(ids: Iterable[int]) -> None:
    try:
        for pk in ids:
            deliver(pk)
    except Exception:
        logger.exception("Background delivery failed")
    finally:
        connection.close()


def dispatch(ids: list[int]) -> None:
    """First delivery attempt for freshly committed notifications."""
    if settings.NOTIFICATIONS_ASYNC:
        _executor.submit(_deliver_in_thread, ids)
    else:
        for pk in ids:
            deliver(pk)
