"""Alerts leave the building: email (locmem backend), SMS (locmem backend) and webhooks (a real local HTTP server)."""

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from alerts import notifiers
from alerts.models import Alert, Notification, NotificationChannel
from alerts.sms import LocmemSmsBackend
from locations.models import CrowdLog, Location
from locations.services import record_reading

pytestmark = pytest.mark.django_db


@pytest.fixture
def gate() -> Location:
    return Location.objects.create(name="Gate A", capacity_limit=200)


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks: Callable[..., Any]) -> Callable[[], Any]:
    """`with on_commit(): ...` runs what the code under test deferred to after commit, as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture(autouse=True)
def empty_sms_outbox() -> Iterator[None]:
    LocmemSmsBackend.outbox.clear()
    yield
    LocmemSmsBackend.outbox.clear()


def channel(kind: str, target: str, *, min_severity: str = "WARNING", **extra: Any) -> NotificationChannel:
    return NotificationChannel.objects.create(
        name=f"{kind} {target}", kind=kind, target=target, min_severity=min_severity, **extra
    )


def overcrowd(location: Location, count: int = 170) -> None:
    record_reading(location, count, source=CrowdLog.Source.CAMERA)


# --- a real webhook receiver ---------------------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    status: int = 200
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.bodies)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.bodies.append(body)
                status = state.status
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/crowd"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# --- email ---------------------------------------------------------------------------------------------------------


def test_alert_is_emailed(gate: Location, on_commit: Callable[[], Any]) -> None:
    channel("EMAIL", "ops@example.com")
    with on_commit():
        overcrowd(gate)

    (message,) = mail.outbox
    assert message.to == ["ops@example.com"]
    assert "Gate A" in message.subject
    assert "Overcrowding" in message.subject
    assert "WARNING" in message.subject
    assert "85.0%" in message.body
    assert "Count 170" in message.body
    (notification,) = Notification.objects.all()
    assert (notification.status, notification.event, notification.attempts) == ("SENT", "triggered", 1)
    assert notification.sent_at is not None
    assert notification.alert == Alert.objects.get()


def test_a_location_name_with_a_line_break_is_emailed_on_one_subject_line(on_commit: Callable[[], Any]) -> None:
    """Names may hold line breaks (the API trims only the ends); a header can't, and Django refuses the whole email."""
    location = Location.objects.create(name="Gate A\r\nBcc: attacker@example.com", capacity_limit=200)
    channel("EMAIL", "ops@example.com")
    with on_commit():
        overcrowd(location)

    (message,) = mail.outbox
    assert message.subject == "[Crowd Monitor] WARNING Overcrowding alert at Gate A Bcc: attacker@example.com"
    assert message.recipients() == ["ops@example.com"]
    assert "Bcc" not in message.message()
    assert Notification.objects.get().status == "SENT"


def test_nothing_is_sent_before_commit(gate: Location, django_capture_on_commit_callbacks: Any) -> None:
    channel("EMAIL", "ops@example.com")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        overcrowd(gate)
    assert callbacks  # delivery is deferred...
    assert mail.outbox == []  # ...so a rolled-back alert is never announced
    assert Notification.objects.get().status == "PENDING"


def test_min_severity_and_location_filters(gate: Location, on_commit: Callable[[], Any]) -> None:
    other = Location.objects.create(name="Gate B", capacity_limit=10)
    channel("EMAIL", "info@example.com", min_severity="INFO")
    channel("EMAIL", "warning@example.com", min_severity="WARNING")
    channel("EMAIL", "critical@example.com", min_severity="CRITICAL")
    channel("EMAIL", "disabled@example.com", min_severity="INFO", enabled=False)
    channel("EMAIL", "gate-a@example.com", min_severity="INFO").locations.set([gate])
    channel("EMAIL", "gate-b@example.com", min_severity="INFO").locations.set([other])
    channel("EMAIL", "both@example.com", min_severity="INFO").locations.set([gate, other])

    with on_commit():
        overcrowd(gate, 170)  # WARNING
    assert sorted(m.to[0] for m in mail.outbox) == [
        "both@example.com",
        "gate-a@example.com",
        "info@example.com",
        "warning@example.com",
    ]

    mail.outbox.clear()
    with on_commit():
        overcrowd(gate, 200)  # escalated to CRITICAL
    assert sorted(m.to[0] for m in mail.outbox) == [
        "both@example.com",
        "critical@example.com",
        "gate-a@example.com",
        "info@example.com",
        "warning@example.com",
    ]
    assert all("CRITICAL" in m.subject and "escalated" in m.subject for m in mail.outbox)

    mail.outbox.clear()
    with on_commit():
        overcrowd(gate, 190)  # the open alert neither changes nor notifies
    assert mail.outbox == []

    with on_commit():
        overcrowd(other, 9)
    assert sorted(m.to[0] for m in mail.outbox) == [
        "both@example.com",
        "gate-b@example.com",
        "info@example.com",
        "warning@example.com",
    ]
    assert all("Gate B" in m.subject for m in mail.outbox)


def test_no_channels_no_notifications(gate: Location, on_commit: Callable[[], Any]) -> None:
    with on_commit():
        overcrowd(gate)
    assert Alert.objects.count() == 1
    assert not Notification.objects.exists()
    assert mail.outbox == []


# --- SMS -----------------------------------------------------------------------------------------------------------


def test_alert_is_sent_by_sms(gate: Location, on_commit: Callable[[], Any]) -> None:
    channel("SMS", "+15550100")
    channel("SMS", "+15550199", min_severity="CRITICAL")
    with on_commit():
        overcrowd(gate)

    ((to, text),) = LocmemSmsBackend.outbox
    assert to == "+15550100"
    assert "Gate A" in text and "Overcrowding" in text and "WARNING" in text
    assert "85.0%" in text
    assert Notification.objects.get().status == "SENT"


def test_an_escalation_says_when_it_escalated_not_only_when_the_alert_was_raised(
    gate: Location, on_commit: Callable[[], Any]
) -> None:
    """Escalation emails and texts gave only the alert's first trigger time: a place over capacity for minutes read
    as if it had escalated when the first warning came, maybe half an hour before."""
    channel("EMAIL", "duty@example.com")
    channel("SMS", "+15550100")
    with on_commit():
        overcrowd(gate, 170)  # WARNING
    Alert.objects.update(triggered_at=timezone.now() - timedelta(minutes=25))  # raised 25 minutes ago
    with on_commit():
        overcrowd(gate, 205)  # over capacity now: CRITICAL
    escalated = Notification.objects.filter(event="escalated", channel__kind="EMAIL").get()
    raised, escalated_at = (
        notifiers.site_time(at, "%d %b %H:%M") for at in (Alert.objects.get().triggered_at, escalated.created_at)
    )
    assert raised != escalated_at
    email = mail.outbox[-1]
    assert "escalated" in email.subject
    assert f"Escalated to CRITICAL at {notifiers.site_time(escalated.created_at)}." in email.body
    (_, _first), (_, second) = LocmemSmsBackend.outbox
    assert escalated_at in second and raised not in second


# --- webhooks ------------------------------------------------------------------------------------------------------


def test_failing_webhook_keeps_the_reading_and_the_alert_and_retries(
    gate: Location, receiver: Receiver, on_commit: Callable[[], Any]
) -> None:
    receiver.status = 500
    channel("WEBHOOK", receiver.url)
    before = timezone.now()
    with on_commit():
        overcrowd(gate)  # must not raise

    assert CrowdLog.objects.count() == 1
    alert = Alert.objects.get()
    assert (alert.kind, alert.status) == ("OVERCROWDING", "ACTIVE")
    assert len(receiver.received()) == 1
    notification = Notification.objects.get()
    assert (notification.status, notification.attempts) == ("PENDING", 1)
    assert "500" in notification.last_error
    assert notification.next_attempt_at > before + timedelta(seconds=20)  # backing off, not retrying at once
    assert notifiers.deliver_due(now=notification.next_attempt_at - timedelta(seconds=1)) == 0
    assert len(receiver.received()) == 1

    receiver.status = 200
    assert notifiers.deliver_due(now=notification.next_attempt_at + timedelta(seconds=1)) == 1

    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.last_error) == ("SENT", 2, "")
    assert notification.sent_at is not None
    body = receiver.received()[-1]
    assert body["event"] == "triggered"
    assert body["alert"]["type"] == "alert_update"
    assert body["alert"]["id"] == alert.pk
    assert body["alert"]["kind"] == "OVERCROWDING"
    assert body["alert"]["location_id"] == gate.pk
    assert body["alert"]["location_name"] == "Gate A"
    assert body["alert"]["severity"] == "WARNING"
    assert notifiers.deliver_due(now=timezone.now() + timedelta(days=1)) == 0  # sent once, never again


def test_retry_delays_grow(gate: Location, receiver: Receiver, on_commit: Callable[[], Any]) -> None:
    receiver.status = 503
    channel("WEBHOOK", receiver.url)
    with on_commit():
        overcrowd(gate)
    notification = Notification.objects.get()
    delays = []
    for _ in range(3):
        now = notification.next_attempt_at
        notifiers.deliver(notification.pk, now=now)
        notification.refresh_from_db()
        delays.append(notification.next_attempt_at - now)
    assert delays == [timedelta(seconds=60), timedelta(seconds=120), timedelta(seconds=240)]


def test_gives_up_after_max_attempts(gate: Location, receiver: Receiver, on_commit: Callable[[], Any]) -> None:
    receiver.status = 500
    channel("WEBHOOK", receiver.url)
    with on_commit():
        overcrowd(gate)
    notification = Notification.objects.get()
    while notification.status == "PENDING":
        assert notification.attempts < notifiers.MAX_ATTEMPTS
        assert notifiers.deliver(notification.pk, now=notification.next_attempt_at) is False
        notification.refresh_from_db()

    assert (notification.status, notification.attempts) == ("FAILED", notifiers.MAX_ATTEMPTS)
    assert "500" in notification.last_error
    assert len(receiver.received()) == notifiers.MAX_ATTEMPTS
    receiver.status = 200
    assert notifiers.deliver_due(now=timezone.now() + timedelta(days=30)) == 0
    assert len(receiver.received()) == notifiers.MAX_ATTEMPTS
    assert Alert.objects.get().status == "ACTIVE"  # giving up on a notifier never touches the alert


def test_disabling_a_channel_stops_its_pending_retries(
    gate: Location, receiver: Receiver, on_commit: Callable[[], Any]
) -> None:
    """An admin switches off a channel that misbehaves (or points at the wrong place): nothing more goes to it."""
    receiver.status = 500
    hook = channel("WEBHOOK", receiver.url)
    with on_commit():
        overcrowd(gate)
    assert len(receiver.received()) == 1
    hook.enabled = False
    hook.save()

    receiver.status = 200
    assert notifiers.deliver_due(now=timezone.now() + timedelta(days=1)) == 0
    assert len(receiver.received()) == 1
    notification = Notification.objects.get()
    assert (notification.status, notification.attempts) == ("FAILED", 1)
    assert "disabled" in notification.last_error


@pytest.mark.parametrize("target", ["closed port", "not a url"])
def test_unreachable_webhook_never_fails_the_reading(gate: Location, target: str, on_commit: Callable[[], Any]) -> None:
    channel("WEBHOOK", closed_port_url() if target == "closed port" else target)
    channel("EMAIL", "ops@example.com")
    with on_commit():
        overcrowd(gate)

    assert CrowdLog.objects.count() == 1
    assert Location.objects.get(pk=gate.pk).current_count == 170
    assert Alert.objects.count() == 1
    webhook = Notification.objects.get(channel__kind="WEBHOOK")
    assert (webhook.status, webhook.attempts) == ("PENDING", 1)
    assert webhook.last_error
    # The other channel is not held up by the broken one.
    assert Notification.objects.get(channel__kind="EMAIL").status == "SENT"
    assert len(mail.outbox) == 1


def test_escalation_is_a_separate_webhook_event(
    gate: Location, receiver: Receiver, on_commit: Callable[[], Any]
) -> None:
    channel("WEBHOOK", receiver.url)
    with on_commit():
        overcrowd(gate, 170)
    with on_commit():
        overcrowd(gate, 200)
    events = [(b["event"], b["alert"]["severity"]) for b in receiver.received()]
    assert events == [("triggered", "WARNING"), ("escalated", "CRITICAL")]
    assert len({b["alert"]["id"] for b in receiver.received()}) == 1


# --- claims: one notification is sent once -------------------------------------------------------------------------


def queued_notification(location: Location, kind: str, target: str, capture: Any) -> Notification:
    """An alert whose notification is queued but not yet tried (the commit hook is captured, not run)."""
    channel(kind, target)
    with capture(execute=False):
        overcrowd(location)
    notification = Notification.objects.get()
    assert (notification.status, notification.attempts) == ("PENDING", 0)
    return notification


class ReentrantSmsBackend:
    """An SMS gateway during whose (first) send a second worker tries to deliver the same notification."""

    notification_id = 0
    at = None
    second_try: list[bool] = []

    def send(self, to: str, text: str) -> None:
        LocmemSmsBackend.outbox.append((to, text))
        if len(LocmemSmsBackend.outbox) == 1:  # only the first send re-enters
            self.second_try.append(notifiers.deliver(self.notification_id, now=self.at))


def test_a_notification_being_sent_is_not_sent_again_meanwhile(
    gate: Location, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.SMS_BACKEND = f"{__name__}.ReentrantSmsBackend"
    notification = queued_notification(gate, "SMS", "+15550100", django_capture_on_commit_callbacks)
    now = timezone.now()
    ReentrantSmsBackend.notification_id, ReentrantSmsBackend.at = notification.pk, now
    ReentrantSmsBackend.second_try.clear()

    assert notifiers.deliver(notification.pk, now=now) is True

    assert ReentrantSmsBackend.second_try == [False]
    assert len(LocmemSmsBackend.outbox) == 1
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("SENT", 1)


def test_two_deliveries_with_the_same_clock_send_once(
    gate: Location, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    receiver.status = 500  # stays PENDING after the first try: only the claim can stop the second
    notification = queued_notification(gate, "WEBHOOK", receiver.url, django_capture_on_commit_callbacks)
    now = timezone.now()

    assert notifiers.deliver(notification.pk, now=now) is False
    assert notifiers.deliver(notification.pk, now=now) is False

    assert len(receiver.received()) == 1
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("PENDING", 1)
    assert notification.next_attempt_at > now


def test_deliver_due_sends_each_queued_notification_once(
    gate: Location, django_capture_on_commit_callbacks: Any
) -> None:
    notification = queued_notification(gate, "EMAIL", "ops@example.com", django_capture_on_commit_callbacks)
    now = timezone.now() + timedelta(seconds=1)
    assert notifiers.deliver_due(now=now) == 1
    assert notifiers.deliver_due(now=now) == 0
    assert len(mail.outbox) == 1
    notification.refresh_from_db()
    assert notification.status == "SENT"


# --- hostile or broken webhook receivers ---------------------------------------------------------------------------


@pytest.fixture
def misbehaving() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], str]]:
    """`misbehaving(respond)` starts a local server whose POST handler is `respond`; returns its URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(respond: Callable[[BaseHTTPRequestHandler], None]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with contextlib.suppress(OSError):  # the client hung up, as it should
                    respond(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/hook"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def drip(handler: BaseHTTPRequestHandler, count: int) -> None:
    """`count` bytes, one every 0.2 s: each well within a read timeout, all of them far beyond it."""
    for _ in range(count):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.2)


def test_a_webhook_that_trickles_its_answer_does_not_hold_up_delivery(
    gate: Location, settings: Any, misbehaving: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Each byte arrives within the read timeout, so reading the body would hang the worker for 20 s."""
    settings.WEBHOOK_TIMEOUT = 0.5

    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        drip(handler, 100)

    notification = queued_notification(gate, "WEBHOOK", misbehaving(trickle), django_capture_on_commit_callbacks)
    started = time.monotonic()
    assert notifiers.deliver(notification.pk) is True  # the status line said 200: delivered
    assert time.monotonic() - started < 3
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("SENT", 1)


def test_a_webhook_that_trickles_its_headers_is_cut_off_at_the_timeout(
    gate: Location, settings: Any, misbehaving: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Each header byte arrives within the read timeout: without a deadline for the whole exchange the sender would
    wait for as long as the receiver likes, past the claim lease (so another worker sends it again)."""
    settings.WEBHOOK_TIMEOUT = 0.5

    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        drip(handler, 100)

    notification = queued_notification(gate, "WEBHOOK", misbehaving(trickle), django_capture_on_commit_callbacks)
    started = time.monotonic()
    assert notifiers.deliver(notification.pk) is False
    assert time.monotonic() - started < 2
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("PENDING", 1)
    assert "no answer within 0.5 s" in notification.last_error


def test_a_huge_webhook_response_is_not_read_into_memory(
    gate: Location, misbehaving: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The answer's body means nothing to us: a receiver streaming gigabytes must not fill the worker's memory."""
    written: list[int] = []

    def flood(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(2**40))
        handler.end_headers()
        chunk = b"x" * 2**20
        for _ in range(200):
            handler.wfile.write(chunk)
            written.append(len(chunk))

    notification = queued_notification(gate, "WEBHOOK", misbehaving(flood), django_capture_on_commit_callbacks)
    assert notifiers.deliver(notification.pk) is True
    time.sleep(0.2)
    assert sum(written) < 100 * 2**20  # the worker hung up long before the receiver was done


@pytest.mark.parametrize("status", [302, 307])
def test_a_webhook_redirect_is_not_followed(
    gate: Location, status: int, receiver: Receiver, misbehaving: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A receiver must not be able to bounce the alert on to another address, such as an internal service."""

    def redirect(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", receiver.url)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    notification = queued_notification(gate, "WEBHOOK", misbehaving(redirect), django_capture_on_commit_callbacks)
    assert notifiers.deliver(notification.pk) is False

    assert receiver.received() == []
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("PENDING", 1)
    assert str(status) in notification.last_error


@pytest.mark.parametrize("target", ["answers 500", "closed port"])
def test_a_webhook_token_does_not_leak_into_errors_or_logs(
    gate: Location,
    target: str,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Webhook URLs carry their credential (in the query or, like Slack's, in the path); the error is stored, shown
    in admin to anyone who may view notifications, and logged: it must say what went wrong without the URL."""
    receiver.status = 500
    base = receiver.url if target == "answers 500" else closed_port_url()
    NotificationChannel.objects.create(name="Ops hook", kind="WEBHOOK", target=f"{base}/s3cr3t-path?token=s3cr3t-t0ken")
    with django_capture_on_commit_callbacks(execute=False):
        overcrowd(gate)
    notification = Notification.objects.get()

    assert notifiers.deliver(notification.pk) is False

    notification.refresh_from_db()
    assert notification.last_error
    assert "s3cr3t" not in notification.last_error
    assert "s3cr3t" not in caplog.text
    if target == "answers 500":
        assert "500" in notification.last_error


def test_a_webhook_that_never_answers_costs_one_timeout_per_pass_not_one_per_notification(
    settings: Any, misbehaving: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """run_alerts delivers one notification after another, between its STALE checks: a dead receiver with many
    queued notifications must not hold up the other channels and the next STALE check for minutes."""
    settings.WEBHOOK_TIMEOUT = 0.3
    channel("WEBHOOK", misbehaving(lambda handler: time.sleep(5)))
    channel("EMAIL", "ops@example.com")
    with django_capture_on_commit_callbacks(execute=False):
        for i in range(12):
            overcrowd(Location.objects.create(name=f"Gate {i}", capacity_limit=200))
    assert Notification.objects.filter(status="PENDING").count() == 24

    started = time.monotonic()
    assert notifiers.deliver_due(now=timezone.now() + timedelta(seconds=1)) == 12
    assert time.monotonic() - started < 2  # twelve timeouts in a row would take 3.6 s

    assert len(mail.outbox) == 12
    webhook = Notification.objects.filter(channel__kind="WEBHOOK")
    assert sorted(webhook.values_list("attempts", flat=True)) == [0] * 11 + [1]
    assert set(webhook.values_list("status", flat=True)) == {"PENDING"}  # the rest wait for the next pass
