#!/usr/bin/env python
"""Frames per second through the whole detection pipeline versus plain ultralytics `predict`, in one run.

Pipeline: the real DetectionWorker sampling --cameras cameras (image-folder sources: every frame is read from disk
and decoded), counting with the same YOLO model (`--mode yolo`, one pass per frame, or the default `auto`
engine), storing every reading through record_reading (CrowdLog, state, snapshot, alert rules, latest frame) and
broadcasting it on the configured channel layer (REDIS_URL: channels-redis), with --interval 0 (as fast as it
goes). Baseline: `YOLO(model).predict(frame)` on the same frames, already decoded in memory. The two are run
alternately (baseline, pipeline, baseline, pipeline, ...) so that other load on the machine hits both alike.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crowd_monitor_bench REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/worker_throughput.py --cameras 4 --passes 30 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import _common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--passes", type=int, default=30, help="passes over all cameras per pipeline run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", default=str(_common.SHARED / "data" / "pets09_s2l1" / "images"))
    parser.add_argument("--mode", default="yolo", help="yolo (same model, one pass: the comparison) or auto")
    parser.add_argument("--fetch-threads", type=int, default=4)
    parser.add_argument(
        "--without-store",
        action="store_true",
        help="diagnosis: the pipeline without storing or broadcasting (decode + count only), to see what the write "
        "path costs",
    )
    args = parser.parse_args()

    _common.setup_django()
    import cv2
    from django.conf import settings

    from detection.detectors import load_counter
    from detection.worker import DetectionWorker, camera_feeds
    from locations.models import Camera, CrowdLog, Location

    if args.without_store:
        # Counted readings are dropped where the writer thread would store them.
        DetectionWorker._store = lambda self, items: setattr(self, "recorded", self.recorded + len(items))

    # CPU of the worker's own threads (OpenVINO's inference threads excluded): sampling (read, decode, pre- and
    # post-processing) and the writer (storing and broadcasting).
    thread_cpu: dict[str, float] = {}
    sample, write_loop = DetectionWorker._sample, DetectionWorker._write_loop

    def timed_sample(self: DetectionWorker, feed: object) -> object:
        started = time.thread_time()
        try:
            return sample(self, feed)
        finally:
            thread_cpu["sampling"] = thread_cpu.get("sampling", 0.0) + time.thread_time() - started

    def timed_write_loop(self: DetectionWorker) -> None:
        try:
            write_loop(self)
        finally:
            thread_cpu["writer"] = time.thread_time()

    DetectionWorker._sample = timed_sample
    DetectionWorker._write_loop = timed_write_loop

    model = settings.DETECTION_MODEL
    if not Path(model).exists():
        print(f"DETECTION_MODEL {model} not found", file=sys.stderr)
        return 2
    images = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".jpg", ".png"))
    counter = load_counter(args.mode, model, 0.25, "cpu")
    counter.forced = True
    from ultralytics import YOLO

    yolo = YOLO(model, task="detect")
    total = args.cameras * args.passes
    # The frames the cameras will read, in the order they read them (each camera cycles through the folder).
    frames = [cv2.imread(str(images[i % len(images)])) for i in range(args.passes) for _ in range(args.cameras)]
    yolo.predict(frames[0], verbose=False)

    _common.delete_locations(name__startswith="bench throughput")
    location = Location.objects.create(name="bench throughput", capacity_limit=1000)
    for i in range(args.cameras):
        Camera.objects.create(location=location, name=f"bench cam {i}", source=str(args.images))

    def baseline() -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        for frame in frames:
            yolo.predict(frame, classes=[0], conf=0.25, imgsz=640, verbose=False)
        return total / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / total

    def pipeline() -> tuple[float, float, dict]:
        CrowdLog.objects.filter(location=location).delete()
        worker = DetectionWorker(
            counter,
            lambda: camera_feeds(location.pk),
            0.0,
            threading.Event(),
            report=lambda line: None,
            fetch_threads=args.fetch_threads,
        )
        thread_cpu.clear()
        started, cpu = time.perf_counter(), time.process_time()
        recorded = worker.run(cycles=args.passes)
        elapsed = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu) * 1000 / total
        stored = total if args.without_store else CrowdLog.objects.filter(location=location).count()
        assert recorded == stored == total, (recorded, stored, total)
        stats = {**worker.metrics.stats(), **{f"{k}_cpu_ms": v * 1000 / total for k, v in thread_cpu.items()}}
        return total / elapsed, cpu_ms, stats

    try:
        print(_common.machine())
        print(
            f"database {_common.database()}; channel layer {settings.CHANNEL_LAYERS['default']['BACKEND']}; "
            f"model {model}; mode {args.mode}{' (without store)' if args.without_store else ''}; {args.cameras} "
            f"cameras x {args.passes} passes = {total} frames "
            f"{frames[0].shape[1]}x{frames[0].shape[0]} from {args.images}"
        )
        base_runs, pipe_runs, base_cpu, pipe_cpu = [], [], [], []
        for _ in range(args.repeats):
            rate, cpu_ms = baseline()
            base_runs.append(rate)
            base_cpu.append(cpu_ms)
            rate, cpu_ms, stats = pipeline()
            pipe_runs.append(rate)
            pipe_cpu.append(cpu_ms)
            print(
                f"  predict {base_runs[-1]:6.1f} frames/s ({base_cpu[-1]:5.1f} CPU-ms/frame) | pipeline {rate:6.1f} "
                f"frames/s ({cpu_ms:5.1f} CPU-ms/frame; inference p50 {stats['inference_ms_p50']} ms, "
                f"lag p95 {stats['lag_ms_p95']} ms)"
            )
            print(
                f"    pipeline threads, CPU ms per frame: sampling {stats.get('sampling_cpu_ms', 0):.1f}, "
                f"writer {stats.get('writer_cpu_ms', 0):.1f} (OpenVINO's inference threads not included)"
            )
        base, pipe = statistics.median(base_runs), statistics.median(pipe_runs)
        print(
            f"median: predict {base:.1f} frames/s ({1000 / base:.1f} ms/frame), pipeline {pipe:.1f} frames/s "
            f"({1000 / pipe:.1f} ms/frame): pipeline / predict = {pipe / base:.2f}x (target >= 0.90)"
        )
        print(
            f"CPU of this process per frame (all threads; the database server's own CPU is not included): predict "
            f"{statistics.median(base_cpu):.1f} ms, pipeline {statistics.median(pipe_cpu):.1f} ms"
        )
    finally:
        _common.delete_locations(pk=location.pk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
