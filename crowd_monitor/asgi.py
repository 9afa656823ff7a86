"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crowd_monitor.settings")
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from asgiref.sync import SyncToAsync  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.signals import request_finished  # noqa: E402
from django.db import connections  # noqa: E402

from dashboard.routing import websocket_urlpatterns  # noqa: E402


def close_request_thread_connections(**kwargs: object) -> None:
    """Close the finished HTTP request's database connections: under ASGI nobody else will use them.

    Django runs each request's synchronous code (views, middleware, DRF) in a thread of its own (its
    ThreadSensitiveContext), and a database connection belongs to the thread that opened it. One kept for reuse
    (DB_CONN_MAX_AGE) is never reused: it stays open, unused, until the garbage collector finds it. In a surge of
    30 readings a second the web process held up to 91 of PostgreSQL's 100 connections, all under 10 s old, and
    readings were answered 500 ("too many clients"). Outside a request's context (WebSocket consumers, whose
    worker threads do reuse their connections; the test client; management commands) nothing is closed.
    """
    if SyncToAsync.thread_sensitive_context.get(None) is not None:  # set by Django's ASGIHandler for each request
        connections.close_all()


class SiteOriginValidator(OriginValidator):
    """Channels' AllowedHostsOriginValidator, except that a handshake without an Origin header is let through to
    the consumer, which still requires a signed-in user.

    Cross-site WebSocket hijacking needs a browser, and browsers always send Origin with a WebSocket handshake: a
    foreign one (or "null") is refused here. A client that sends none is a program that holds the session cookie
    itself (a script, the websockets or Channels test client), for which Origin proves nothing.
    """

    def valid_origin(self, parsed_origin: object) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)


def site_origin_validator(application: object) -> SiteOriginValidator:
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:  # as Django and Channels do
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return SiteOriginValidator(application, allowed_hosts)


request_finished.connect(close_request_thread_connections, dispatch_uid="crowd_monitor.asgi.close_connections")

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": site_origin_validator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
