#!/usr/bin/env python
"""How many cameras one worker process keeps at a given interval, with the default counting settings.

A camera is kept when every pass over all cameras finishes within the interval (so each camera is sampled once
per interval, none drifting behind). The benchmark measures the pipeline's cost per frame, tries the number of
cameras that cost predicts, then one step more and fewer, each for --passes passes at --interval, and prints
for each trial the pass durations and the lag distribution (from the start of a pass to a camera's reading
written: how stale a reading is when the dashboard gets it, beyond the camera's own delay).

Counting: the default engine (DETECTION_MODE, `auto`; DENSITY_MODEL as configured, empty by default) on real
frames from public CCTV datasets (PETS09 and Mall, the cameras alternating), stored through record_reading and
broadcast as in production.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crowd_monitor_bench REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/cameras_per_core.py --interval 5 --passes 6
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time

import _common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--passes", type=int, default=6, help="passes per trial")
    parser.add_argument("--headroom", type=float, default=0.85, help="fraction of the interval a pass may use")
    parser.add_argument(
        "--datasets", default="pets09_s2l1,mall", help="folders under ../shared/data/ the cameras cycle through"
    )
    parser.add_argument("--cameras", type=int, help="skip the search: one trial with this many cameras")
    args = parser.parse_args()

    _common.setup_django()
    from django.conf import settings

    from detection.detectors import load_counter
    from detection.worker import DetectionWorker, camera_feeds
    from locations.models import Camera, CrowdLog, Location

    folders = [_common.SHARED / "data" / name / "images" for name in args.datasets.split(",")]
    counter = load_counter(settings.DETECTION_MODE, settings.DETECTION_MODEL, settings.DETECTION_CONFIDENCE, "cpu")
    _common.delete_locations(name__startswith="bench cameras")
    location = Location.objects.create(name="bench cameras", capacity_limit=100_000, expected_interval_seconds=5)

    def cameras(n: int) -> None:
        CrowdLog.objects.filter(location=location).delete()
        Camera.objects.filter(location=location).delete()
        for i in range(n):
            Camera.objects.create(location=location, name=f"bench cam {i}", source=str(folders[i % len(folders)]))

    def trial(n: int, interval: float, passes: int) -> dict:
        cameras(n)
        durations: list[float] = []
        worker = DetectionWorker(
            counter, lambda: camera_feeds(location.pk), interval, threading.Event(), lambda _: None
        )
        original = worker.metrics.cycle

        def cycle(seconds: float) -> dict:
            durations.append(seconds)
            return original(seconds)

        worker.metrics.cycle = cycle
        lags: list[float] = []
        original_reading = worker.metrics.reading

        def reading(camera: str, outcome: str, lag: float) -> None:
            lags.append(lag * 1000)
            original_reading(camera, outcome, lag)

        worker.metrics.reading = reading
        started = time.perf_counter()
        worker.run(cycles=passes)
        elapsed = time.perf_counter() - started
        stats = worker.metrics.stats()
        return {
            "cameras": n,
            "frames_per_s": n * passes / elapsed,
            "pass_s": durations,
            "lag_ms": lags,
            "inference_ms_p50": stats["inference_ms_p50"],
            "kept": max(durations[1:] or durations) <= interval,
        }

    def show(result: dict) -> None:
        lags, passes = result["lag_ms"], result["pass_s"]
        print(
            f"  {result['cameras']:3d} cameras: passes {min(passes):.2f}-{max(passes):.2f} s "
            f"(p50 {statistics.median(passes):.2f} s) {'KEPT' if result['kept'] else 'OVERRUN'} | "
            f"lag p50 {_common.percentile(lags, 0.5):.0f} ms, p95 {_common.percentile(lags, 0.95):.0f} ms, "
            f"p99 {_common.percentile(lags, 0.99):.0f} ms, max {max(lags):.0f} ms | "
            f"counting p50 {result['inference_ms_p50']} ms/frame"
        )

    try:
        print(_common.machine())
        print(
            f"database {_common.database()}; channel layer {settings.CHANNEL_LAYERS['default']['BACKEND']}; "
            f"mode {settings.DETECTION_MODE}; density model {settings.DENSITY_MODEL or 'none'}; "
            f"model {settings.DETECTION_MODEL}; frames from {', '.join(f.parent.name for f in folders)}"
        )
        if args.cameras:
            result = trial(args.cameras, args.interval, args.passes)
            show(result)
            return 0
        probe = trial(4, 0.0, 8)
        per_frame = 1 / probe["frames_per_s"]
        estimate = max(1, math.floor(args.interval * args.headroom / per_frame))
        print(f"pipeline cost {per_frame * 1000:.0f} ms/frame (4 cameras, back to back) -> try {estimate} cameras")
        results = {}

        def run(n: int) -> bool:
            results[n] = trial(n, args.interval, args.passes)
            show(results[n])
            return results[n]["kept"]

        if run(estimate):
            run(math.ceil(estimate * 1.15))  # one step up: the figure is at least the estimate
        else:
            n = estimate  # step down until a trial keeps its cadence
            while n > 1 and not results[n]["kept"]:
                n = max(1, min(n - 1, math.floor(n * 0.85)))
                run(n)
        kept = [n for n, r in results.items() if r["kept"]]
        best = max(kept) if kept else 0
        print(
            f"result: {best} cameras per worker process at a {args.interval:g} s interval on {os.cpu_count()} "
            f"cores ({best / (os.cpu_count() or 1):.1f} per core)"
        )
    finally:
        _common.delete_locations(pk=location.pk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
