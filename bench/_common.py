"""Shared set-up for the benchmarks: Django on the configured database, machine facts, percentiles.

Benchmarks use DATABASE_URL / REDIS_URL like the product (use a database of your own, e.g.
postgres://postgres@127.0.0.1:5432/crowd_monitor_bench: they create and delete rows named "bench ..."). Without
DATABASE_URL a temporary SQLite file is created and migrated.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DEFAULT_MODEL = SHARED / "models" / "yolov8n_int8_openvino_model"

# What the live test servers use too: plain HTTP on 127.0.0.1, production settings otherwise.
BENCH_ENV = {
    "SECRET_KEY": "bench-only-secret-key-not-for-production",
    "SECURE_SSL_REDIRECT": "False",
    "SESSION_COOKIE_SECURE": "False",
    "CSRF_COOKIE_SECURE": "False",
    "NOTIFICATIONS_ASYNC": "False",
    "LOG_LEVEL": "WARNING",
}


def setup_django() -> None:
    for name, value in BENCH_ENV.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("DETECTION_MODEL", str(DEFAULT_MODEL))
    if not os.environ.get("DATABASE_URL"):
        path = Path(tempfile.mkdtemp(prefix="crowd-bench-")) / "bench.sqlite3"
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
        subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "-v0"], check=True, cwd=REPO)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crowd_monitor.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def machine() -> str:
    load = os.getloadavg()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {socket.gethostname()}: {os.cpu_count()} x {cpu}, "
        f"{memory:.0f} GiB, Python {platform.python_version()}, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    )


def database() -> str:
    from django.db import connection

    return f"{connection.vendor} ({connection.settings_dict['NAME']})"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_asgi_server(port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """uvicorn serving crowd_monitor.asgi in a process of its own (as in production), ready when it returns."""
    import time
    import urllib.request

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "crowd_monitor.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--ws-per-message-deflate",  # as in production (crowd_monitor/asgi_worker.py)
            "false",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("the ASGI server did not become ready")
        time.sleep(0.2)


def session_cookies(count: int, users: int = 10) -> list[str]:
    """`count` signed-in sessions (cookie values) spread over `users` operator accounts."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    accounts = []
    for i in range(users):
        user, _ = get_user_model().objects.get_or_create(
            username=f"bench-operator-{i}", defaults={"is_staff": True, "is_superuser": True}
        )
        accounts.append(user)
    cookies = []
    for i in range(count):
        client = Client()
        client.force_login(accounts[i % users])
        cookies.append(client.cookies[settings.SESSION_COOKIE_NAME].value)
    return cookies


def delete_locations(**filters: object) -> None:
    """Remove benchmark locations and everything recorded for them (readings are otherwise protected)."""
    from alerts.models import Alert
    from locations.models import CameraFrame, CrowdLog, DensitySnapshot, Location

    locations = Location.objects.filter(**filters)
    Alert.objects.filter(location__in=locations).delete()
    CrowdLog.objects.filter(location__in=locations).delete()
    DensitySnapshot.objects.filter(location__in=locations).delete()
    CameraFrame.objects.filter(camera__location__in=locations).delete()
    locations.delete()
