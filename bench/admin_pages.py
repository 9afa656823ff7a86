#!/usr/bin/env python
"""How long Django admin's lists of stored readings and of chart history take to open when the tables are full.

8 cameras at a 5 s interval store about 140,000 readings a day, 12.6 million over the default 90 days of
READING_RETENTION_DAYS; 20 locations keep 11.5 million per-minute history rows over HISTORY_RETENTION_DAYS' 400
days. This seeds --readings readings and a history row per location and minute over the same span (plain SQL,
generate_series: PostgreSQL only), then opens each admin list page as a superuser (Django's test client, in
process: the page's queries and rendering, no network) and prints the median of --repeats loads.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crowd_monitor_bench \\
        .venv/bin/python bench/admin_pages.py --readings 3000000

The seeded locations ("bench admin ...") and everything recorded for them are deleted at the end (--keep: left in
place, for a second run with --reuse).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import _common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=3_000_000)
    parser.add_argument("--locations", type=int, default=20)
    parser.add_argument("--seconds-between", type=float, default=1.5, help="seconds between seeded readings")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the seeded rows for another run")
    parser.add_argument("--reuse", action="store_true", help="use rows a run with --keep left")
    args = parser.parse_args()
    # Admin pages link their CSS through the static files manifest, which only `collectstatic` writes; in DEBUG
    # the files are served as they are. The queries, which this measures, are the same.
    os.environ.setdefault("DEBUG", "True")
    _common.setup_django()
    from django.db import connection

    if connection.vendor != "postgresql":
        parser.error("PostgreSQL only (the seeding uses generate_series): set DATABASE_URL")
    from locations.models import Location

    print(_common.machine(), "|", _common.database())
    if not args.reuse:
        _common.delete_locations(name__startswith="bench admin ")
        started = time.perf_counter()
        seed(args.readings, args.locations, args.seconds_between)
        print(f"seeded {args.readings:,} readings in {time.perf_counter() - started:.0f} s")
    first = Location.objects.filter(name__startswith="bench admin ").order_by("pk").first()
    if first is None:
        parser.error("no seeded locations: run without --reuse first")
    with connection.cursor() as cursor:
        for table in ("locations_crowdlog", "locations_densitysnapshot"):
            cursor.execute(f"SELECT count(*), pg_size_pretty(pg_total_relation_size('{table}')) FROM {table}")
            rows, size = cursor.fetchone()
            print(f"{table}: {rows:,} rows, {size}")

    pages = [
        ("readings", "/admin/locations/crowdlog/"),
        ("readings, page 50", "/admin/locations/crowdlog/?p=50"),
        ("readings of one location", f"/admin/locations/crowdlog/?location__id__exact={first.pk}"),
        ("readings, past 7 days", f"/admin/locations/crowdlog/?{past_week('timestamp')}"),
        ("history", "/admin/locations/densitysnapshot/"),
        ("history of one location", f"/admin/locations/densitysnapshot/?location__id__exact={first.pk}"),
    ]
    client = admin_client()
    print(f"{'page':<28} {'median':>8} {'worst':>8}  queries  status")
    for name, url in pages:
        times, status, queries = load(client, url, args.repeats)
        print(f"{name:<28} {statistics.median(times):7.2f}s {max(times):7.2f}s  {queries:7d}  {status}")
    if not args.keep:
        _common.delete_locations(name__startswith="bench admin ")
    return 0


def seed(readings: int, locations: int, seconds_between: float) -> None:
    from django.db import connection

    from locations.models import Location

    ids = [Location.objects.create(name=f"bench admin {i}", capacity_limit=500).pk for i in range(locations)]
    span_minutes = int(readings * seconds_between / 60) + 1
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO locations_crowdlog (location_id, source, count, capacity_limit, occupancy_percentage,
                                            density_level, timestamp, recorded_at, details)
            SELECT (%(ids)s::int[])[1 + g %% %(n)s], 'camera', g %% 400, 500, (g %% 400) / 5.0, 'LOW',
                   now() - g * %(step)s * interval '1 second', now() - g * %(step)s * interval '1 second',
                   '{"quality": {"mode_used": "detect", "low": 10, "high": 12, "dense": false, "saturated": false}}'
            FROM generate_series(%(readings)s, 1, -1) g  -- oldest first: ids grow with time, as when stored
            """,
            {"ids": ids, "n": locations, "step": seconds_between, "readings": readings},
        )
        cursor.execute(
            """
            INSERT INTO locations_densitysnapshot (location_id, bucket_start, bucket_seconds, readings, min_count,
                                                   avg_count, max_count, min_occupancy, avg_occupancy, max_occupancy)
            SELECT l, date_trunc('minute', now()) - m * interval '1 minute', 60, 40, 10, 20, 30, 2, 4, 6
            FROM generate_series(%(minutes)s, 1, -1) m, unnest(%(ids)s::int[]) l
            """,
            {"ids": ids, "minutes": span_minutes},
        )
        cursor.execute("ANALYZE locations_crowdlog")
        cursor.execute("ANALYZE locations_densitysnapshot")


def past_week(field: str) -> str:
    """The query string of admin's "Past 7 days" date filter."""
    from datetime import timedelta

    from django.utils import timezone

    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    since, until = today - timedelta(days=7), today + timedelta(days=1)
    return f"{field}__gte={since.date()}+00:00:00%2B00:00&{field}__lt={until.date()}+00:00:00%2B00:00"


def admin_client():  # a django.test.Client, imported after set-up
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def load(client, url: str, repeats: int) -> tuple[list[float], int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url, HTTP_HOST="127.0.0.1")
            times.append(time.perf_counter() - started)
    return times, response.status_code, len(queries.captured_queries)


if __name__ == "__main__":
    sys.exit(main())
