#!/usr/bin/env python
"""Latency from record_reading to a WebSocket client receiving the crowd_update, through channels-redis.

A real server process (uvicorn serving crowd_monitor.asgi, with REDIS_URL) and a real WebSocket client (the
`websockets` library, signed in with a session cookie, on /ws/crowd/<id>/). This process records --readings
readings, one at a time at --rate per second, through the one write path; each reading's latency is from the
call of record_reading (so it includes the database transaction) to the client holding the decoded message.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crowd_monitor_bench REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/ws_latency.py --readings 1000 --rate 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime

import _common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="readings per second")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        print("Set REDIS_URL: this measures delivery through channels-redis.", file=sys.stderr)
        return 2

    _common.setup_django()
    from django.conf import settings
    from websockets.asyncio.client import connect

    from locations.models import CrowdLog, Location
    from locations.services import record_reading

    _common.delete_locations(name__startswith="bench latency")
    # A large capacity and a steady count: no alert fires, every reading is a plain crowd_update.
    location = Location.objects.create(name="bench latency", capacity_limit=1_000_000)
    cookie = _common.session_cookies(1)[0]
    port = _common.free_port()
    server = _common.start_asgi_server(port)
    received: dict[str, float] = {}
    arrived = threading.Condition()
    ready = threading.Event()
    stop = threading.Event()

    async def client() -> None:
        headers = {"Origin": f"http://127.0.0.1:{port}", "Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"}
        async with connect(f"ws://127.0.0.1:{port}/ws/crowd/{location.pk}/", additional_headers=headers) as ws:
            await ws.recv()  # the snapshot: current state
            ready.set()
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                message = json.loads(raw)
                now = time.perf_counter()
                if message.get("type") == "crowd_update":
                    with arrived:
                        received[message["timestamp"]] = now
                        arrived.notify_all()

    thread = threading.Thread(target=lambda: asyncio.run(client()), daemon=True)
    thread.start()
    latencies, writes, lost = [], [], 0
    try:
        if not ready.wait(30):
            raise RuntimeError("the WebSocket client did not connect")
        print(_common.machine())
        print(
            f"database {_common.database()}; channel layer {settings.CHANNEL_LAYERS['default']['BACKEND']} at "
            f"{settings.REDIS_URL}; server: uvicorn (1 process); {args.readings} readings at {args.rate:g}/s"
        )
        period = 1 / args.rate
        for _ in range(args.readings):
            started = time.perf_counter()
            at = datetime.now(UTC)
            record_reading(location, 100, source=CrowdLog.Source.API, at=at)
            written = time.perf_counter()
            stamp = at.isoformat().replace("+00:00", "Z")
            with arrived:
                if not arrived.wait_for(lambda s=stamp: s in received, timeout=5):
                    lost += 1
                    continue
                latencies.append((received[stamp] - started) * 1000)
            writes.append((written - started) * 1000)
            time.sleep(max(0.0, period - (time.perf_counter() - started)))
    finally:
        stop.set()
        thread.join(5)
        server.terminate()
        server.wait(10)
        _common.delete_locations(pk=location.pk)
    p = _common.percentile
    print(
        f"record_reading -> WebSocket client: p50 {p(latencies, 0.5):.1f} ms, p95 {p(latencies, 0.95):.1f} ms, "
        f"p99 {p(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms over {len(latencies)} readings; "
        f"{lost} not received (target p95 <= 50 ms)"
    )
    print(
        f"of which record_reading itself (transaction + publish): p50 {p(writes, 0.5):.1f} ms, "
        f"p95 {p(writes, 0.95):.1f} ms"
    )
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
