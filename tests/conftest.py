import copy
import http.client
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.test import Client, override_settings


@pytest.fixture(scope="session", autouse=True)
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Pages are rendered with the production (manifest) static storage, as deployed.

    Collected into a directory of this test session's own, so parallel runs in one checkout don't
    rewrite files another run's WhiteNoise is serving.
    """
    settings.STATIC_ROOT = tmp_path_factory.mktemp("staticfiles")
    call_command("collectstatic", "--noinput", verbosity=0)


# --- Live ASGI server ----------------------------------------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LiveAsgiServer:
    """The project's real ASGI application (HTTP and WebSocket) served by uvicorn in a background thread.

    `url` / `ws_url` stay the same across `stop()` / `start()` / `restart()`: the port is kept, so a client
    that reconnects finds the restarted server where the old one was. `stop()` is uvicorn's graceful
    shutdown: open WebSockets are closed with code 1012 (service restart), in-flight requests finish.
    """

    host = "127.0.0.1"

    def __init__(self, app: Any, port: int | None = None, start_timeout: float = 10.0) -> None:
        self.app = app
        self.port = port or _free_port(self.host)
        self.start_timeout = start_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ws_headers(self, sessionid: str | None = None, origin: str | None = None) -> dict[str, str]:
        """Headers a browser on this site sends with a WebSocket handshake (session cookie, own Origin)."""
        headers = {"Origin": origin or self.url}
        if sessionid is not None:
            headers["Cookie"] = f"{settings.SESSION_COOKIE_NAME}={sessionid}"
        return headers

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """A plain GET straight to this server (no proxy, no redirects): (status, body)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def start(self) -> None:
        if self.is_running:
            raise RuntimeError(f"The live server at {self.url} is already running.")
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            lifespan="off",
            log_level="warning",
            log_config=None,  # keep the test process's logging as Django configured it
            timeout_graceful_shutdown=5,
            ws_per_message_deflate=False,  # as in production (crowd_monitor/asgi_worker.py)
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"live-asgi-server-{self.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not server.started:
            if not thread.is_alive():  # uvicorn exits its thread when it cannot bind
                raise RuntimeError(f"uvicorn did not start on {self.url}; see the log above.")
            if time.monotonic() > deadline:
                server.should_exit = True
                thread.join(5)
                raise RuntimeError(f"uvicorn did not start on {self.url} within {self.start_timeout} s.")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self, timeout: float = 10.0) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        if thread.is_alive():
            raise RuntimeError(f"The live server at {self.url} did not stop.")

    def restart(self) -> None:
        self.stop()
        self.start()


def _isolated_channel_layers() -> dict[str, Any]:
    """The configured channel layers, with a Redis key prefix of this test's own.

    A fresh layer per test (the override resets channels' layer cache), and with Redis, keys that neither
    earlier tests nor other test runs sharing the Redis server can see.
    """
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    for layer in layers.values():
        if layer["BACKEND"].startswith("channels_redis."):
            layer.setdefault("CONFIG", {})["prefix"] = f"asgi-test-{uuid.uuid4().hex[:12]}:"
    return layers


@pytest.fixture
def live_asgi_server(transactional_db: None) -> Iterator[LiveAsgiServer]:
    """`crowd_monitor.asgi.application` under uvicorn on 127.0.0.1 and a free port, on the test database.

    Depends on `transactional_db`, so tests using it must be marked
    `@pytest.mark.django_db(transaction=True)`: what the test writes is committed and visible to the server's
    threads, and what the server writes is visible to the test. (On SQLite the test database is pytest-django's
    shared-cache in-memory database, which every thread of this process opens and shares.)

    Yields a `LiveAsgiServer`: `.url` ("http://127.0.0.1:PORT"), `.ws_url` ("ws://127.0.0.1:PORT"),
    `.ws_headers(sessionid=None, origin=None)`, `.get(path)`, `.stop()`, `.start()`, `.restart()` (same port),
    `.is_running`. Each test gets a fresh channel layer (with Redis, under a key prefix of its own, flushed
    afterwards), so nothing published in one test reaches another.
    """
    if not {"127.0.0.1", "*"} & set(settings.ALLOWED_HOSTS):
        pytest.fail("ALLOWED_HOSTS must contain 127.0.0.1 for the live server (and its WebSocket Origin check).")
    from crowd_monitor.asgi import application

    # Server threads must not keep database connections open past their request: the test database is
    # flushed after the test and dropped after the session. (Closing in-memory SQLite is a no-op, as it must.)
    db_settings = list(connections.settings.values())
    max_ages = [db["CONN_MAX_AGE"] for db in db_settings]
    for db in db_settings:
        db["CONN_MAX_AGE"] = 0
    try:
        with override_settings(CHANNEL_LAYERS=_isolated_channel_layers()):
            server = LiveAsgiServer(application)
            server.start()
            try:
                # Ready means the server reaches the test database and the channel layer. This first request
                # also has Django import the URLconf (views, DRF, ...), a one-time cost tests should not time.
                status, body = server.get("/readyz")
                assert status == 200, f"The live server is not ready: {status} {body!r}"
                yield server
            finally:
                server.stop()
                _flush_channel_layer()
    finally:
        for db, max_age in zip(db_settings, max_ages, strict=True):
            db["CONN_MAX_AGE"] = max_age


def _flush_channel_layer() -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is not None and hasattr(layer, "flush"):
        async_to_sync(layer.flush)()


@pytest.fixture
def session_cookie_for() -> Callable[[Any], str]:
    """`session_cookie_for(user)`: the value of a fresh, signed-in session cookie for `user`."""

    def make(user: Any) -> str:
        client = Client()
        client.force_login(user)
        return client.cookies[settings.SESSION_COOKIE_NAME].value

    return make


@pytest.fixture
def api_token_for() -> Callable[[Any], str]:
    """`api_token_for(user)`: a new REST API key for `user` (for `Authorization: Token <key>`)."""
    from accounts.models import ApiToken

    def make(user: Any) -> str:
        _token, key = ApiToken.issue(user, name="test")
        return key

    return make


@pytest.fixture
def user_with_role(django_user_model: Any) -> Callable[..., Any]:
    """`user_with_role(username, role, **fields)`: a user in one of the role groups (accounts/roles.py).

    Roles: "viewer", "operator", "admin" (also made staff, as admins are), "integrator"; None for no role.
    """
    from django.contrib.auth.models import Group

    def make(username: str, role: str | None, **fields: Any) -> Any:
        if role == "admin":
            fields.setdefault("is_staff", True)
        user = django_user_model.objects.create_user(username, **fields)
        if role is not None:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


# Debian's headless Chromium (or CHROMIUM_PATH): `playwright install` cannot download browsers on these machines.
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def launch_chromium(playwright: Any) -> Any:
    """The browser tests' Chromium, started through Playwright; a clear failure when it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"No Chromium at {CHROMIUM}: install Debian's chromium or set CHROMIUM_PATH.")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll `condition` until it returns something truthy (returned), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(autouse=True)
def _isolated_cache() -> Iterator[None]:
    """A cache key prefix of this test's own: request-rate and sign-in failure counters start at zero in every test,
    and never mix with those of other test runs sharing the Redis server (nothing is flushed)."""
    caches = copy.deepcopy(settings.CACHES)
    for cache in caches.values():
        cache["KEY_PREFIX"] = f"test-{uuid.uuid4().hex[:12]}"
    with override_settings(CACHES=caches):
        yield
