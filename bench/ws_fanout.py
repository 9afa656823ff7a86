#!/usr/bin/env python
"""1,000 signed-in WebSocket clients on one ASGI server process while 10 locations update every second.

A real server process (uvicorn serving crowd_monitor.asgi, with REDIS_URL: channels-redis), --clients real
WebSocket clients (each with a session of its own, on /ws/crowd/: every location), run in --client-processes
processes. This process records a reading for each of --locations locations every second (spread evenly over
the second, or all at once with --burst) for --seconds seconds, through the one write path. Every client
counts every message it receives: a message missing at any client is a drop (channels-redis drops silently
when a channel is over its capacity, CHANNEL_CAPACITY). Delivery latency is from the reading's timestamp (taken
just before record_reading) to the client holding the decoded message. The server's CPU and memory are
sampled every second (psutil).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crowd_monitor_bench REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/ws_fanout.py --clients 1000 --locations 10 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import threading
import time
from datetime import UTC, datetime

import _common


def run_clients(port: int, cookies: list[str], cookie_name: str, location_ids: list[int], results, ready, stop) -> None:
    """One client process: connect all its clients, count every crowd_update, report (received, latencies)."""

    async def main() -> None:
        from websockets.asyncio.client import connect

        received: list[set[tuple[int, str]]] = [set() for _ in cookies]
        latencies: list[float] = []
        duplicates = 0
        closed = 0
        gate = asyncio.Semaphore(50)  # connect 50 at a time, as browsers trickle in

        async def client(i: int, cookie: str) -> None:
            nonlocal duplicates, closed
            headers = {"Origin": f"http://127.0.0.1:{port}", "Cookie": f"{cookie_name}={cookie}"}
            async with gate:
                ws = await connect(
                    f"ws://127.0.0.1:{port}/ws/crowd/", additional_headers=headers, open_timeout=60, max_queue=None
                )
                for _ in location_ids:  # the snapshot: one crowd_update per location (no alerts are open)
                    await ws.recv()
            connected.append(i)
            try:
                async for raw in ws:
                    now = time.time()
                    message = json.loads(raw)
                    if message.get("type") != "crowd_update":
                        continue
                    key = (message["location_id"], message["timestamp"])
                    if key in received[i]:
                        duplicates += 1
                    received[i].add(key)
                    latencies.append((now - datetime.fromisoformat(message["timestamp"]).timestamp()) * 1000)
            except Exception:  # noqa: BLE001 - a dropped connection is reported, not fatal
                closed += 1

        connected: list[int] = []
        tasks = [asyncio.create_task(client(i, c)) for i, c in enumerate(cookies)]
        while len(connected) < len(cookies):
            failed = [t for t in tasks if t.done() and t.exception()]
            if failed:
                raise failed[0].exception()
            await asyncio.sleep(0.1)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        results.put(([sorted(r) for r in received], latencies, duplicates, closed))

    asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--locations", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--burst", action="store_true", help="all locations update at the same instant each second")
    parser.add_argument("--capacity", type=int, help="CHANNEL_CAPACITY for the server (default: the configured one)")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        print("Set REDIS_URL: this measures fan-out through channels-redis.", file=sys.stderr)
        return 2

    _common.setup_django()
    import psutil
    from django.conf import settings

    from locations.models import CrowdLog, Location
    from locations.services import record_reading

    _common.delete_locations(name__startswith="bench fanout")
    locations = [
        Location.objects.create(name=f"bench fanout {i:02d}", capacity_limit=1_000_000) for i in range(args.locations)
    ]
    # Only the bench's locations are active, so each client's snapshot is exactly one message per location.
    others = list(Location.objects.filter(is_active=True).exclude(pk__in=[x.pk for x in locations]).values_list("pk"))
    Location.objects.filter(pk__in=[pk for (pk,) in others]).update(is_active=False)
    print(f"signing in {args.clients} sessions...", flush=True)
    cookies = _common.session_cookies(args.clients)
    port = _common.free_port()
    env = {"CHANNEL_CAPACITY": str(args.capacity)} if args.capacity else {}
    server = _common.start_asgi_server(port, env)
    capacity = args.capacity or settings.CHANNEL_LAYERS["default"]["CONFIG"].get("capacity")
    process = psutil.Process(server.pid)
    samples: list[tuple[float, float]] = []
    client_cpu: list[float] = []
    sampling = threading.Event()

    def sample() -> None:
        clients = [psutil.Process(w.pid) for w in workers]
        process.cpu_percent()
        for c in clients:
            c.cpu_percent()
        while not sampling.wait(1.0):
            samples.append((process.cpu_percent(), process.memory_info().rss / 2**20))
            client_cpu.append(sum(c.cpu_percent() for c in clients))

    context = multiprocessing.get_context("spawn")
    results, stop = context.Queue(), context.Event()
    share = -(-args.clients // args.client_processes)
    groups = [cookies[i : i + share] for i in range(0, args.clients, share)]
    readies = [context.Event() for _ in groups]
    ids = [x.pk for x in locations]
    workers = [
        context.Process(
            target=run_clients, args=(port, group, settings.SESSION_COOKIE_NAME, ids, results, readies[i], stop)
        )
        for i, group in enumerate(groups)
    ]
    sent: set[tuple[int, str]] = set()
    try:
        connect_started = time.perf_counter()
        for worker in workers:
            worker.start()
        for ready in readies:
            if not ready.wait(300):
                raise RuntimeError("the clients did not all connect")
        connect_s = time.perf_counter() - connect_started
        rss_idle = process.memory_info().rss / 2**20
        print(_common.machine())
        print(
            f"database {_common.database()}; channel layer {settings.CHANNEL_LAYERS['default']['BACKEND']} "
            f"(capacity {capacity}); server: uvicorn, 1 process (pid {server.pid}); {args.clients} clients in "
            f"{len(workers)} processes connected in {connect_s:.1f} s; server RSS {rss_idle:.0f} MiB with them"
        )
        threading.Thread(target=sample, daemon=True).start()
        started = time.perf_counter()
        for second in range(args.seconds):
            for i, location in enumerate(locations):
                offset = 0.0 if args.burst else i / len(locations)
                time.sleep(max(0.0, started + second + offset - time.perf_counter()))
                at = datetime.now(UTC)
                record_reading(location, 100, source=CrowdLog.Source.API, at=at)
                sent.add((location.pk, at.isoformat().replace("+00:00", "Z")))
        time.sleep(5)  # let the last messages arrive
        sampling.set()
        stop.set()
        reports = [results.get(timeout=120) for _ in workers]
        for worker in workers:
            worker.join(30)
    finally:
        stop.set()
        server.terminate()
        server.wait(20)
        Location.objects.filter(pk__in=[pk for (pk,) in others]).update(is_active=True)
        _common.delete_locations(pk__in=[x.pk for x in locations])

    latencies = [latency for _, lat, _, _ in reports for latency in lat]
    received = [set(map(tuple, r)) for report in reports for r in report[0]]
    missing = [len(sent - r) for r in received]
    duplicates = sum(report[2] for report in reports)
    closed = sum(report[3] for report in reports)
    p = _common.percentile
    cpu = [c for c, _ in samples]
    print(
        f"{len(sent)} updates x {len(received)} clients = {len(sent) * len(received)} deliveries expected, "
        f"{len(latencies)} received; missing: {sum(missing)} (clients missing any: {sum(1 for m in missing if m)}), "
        f"duplicates {duplicates}, connections dropped {closed}"
    )
    print(
        f"delivery latency: p50 {p(latencies, 0.5):.0f} ms, p95 {p(latencies, 0.95):.0f} ms, "
        f"p99 {p(latencies, 0.99):.0f} ms, max {max(latencies):.0f} ms (target p99 <= 500 ms, none dropped)"
    )
    print(
        f"server process: CPU {sum(cpu) / max(len(cpu), 1):.0f} % average, {max(cpu, default=0):.0f} % peak "
        f"(100 % = one core); RSS {max((m for _, m in samples), default=0):.0f} MiB peak; client processes together "
        f"{sum(client_cpu) / max(len(client_cpu), 1):.0f} % CPU average"
    )
    return 0 if sum(missing) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
