"""A detection worker's figures: Prometheus metrics (served by `run_detection --metrics-port`), the per-pass
summary logged at INFO, and the figures each worker reports in its heartbeat (detection.Worker.stats, which
the web process exposes on /metrics for every worker at once).

Metric names (labels in brackets; `camera` is the camera id, or `location-<id>` for an ad-hoc --source):

    crowd_worker_frames_total[camera]                frames taken from the camera and counted
    crowd_worker_readings_total[camera, outcome]     readings written (stored) or kept for later (spooled)
    crowd_worker_errors_total[camera, kind]          source / frozen / count / store failures
    crowd_worker_inference_seconds[camera]           counting time per frame, waits for an inference request included
    crowd_worker_lag_seconds[camera]                 from the start of the pass to the reading written (histogram)
    crowd_worker_cycle_seconds                       duration of a pass over all cameras (histogram)
    crowd_worker_camera_online[camera]               1 while the camera sends frames
    crowd_worker_cameras                             cameras this worker holds (leases)
    crowd_worker_spool_depth / _spool_dropped_total  readings waiting for the database / dropped when full
    crowd_worker_spool_flushed_total                 spooled readings written once the database was back
    crowd_worker_database_up                         1 while the database answers
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
RECENT = 500  # samples kept for the percentiles in logs and heartbeats


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class WorkerMetrics:
    def __init__(self, worker: str = "worker") -> None:
        self.worker = worker
        self.registry = CollectorRegistry()
        r = self.registry
        self._frames = Counter("crowd_worker_frames", "Frames counted", ["camera"], registry=r)
        self._readings = Counter(
            "crowd_worker_readings", "Readings written or spooled", ["camera", "outcome"], registry=r
        )
        self._errors = Counter("crowd_worker_errors", "Failures by kind", ["camera", "kind"], registry=r)
        self._inference = Histogram(
            "crowd_worker_inference_seconds", "Counting time per frame", ["camera"], buckets=LATENCY_BUCKETS, registry=r
        )
        self._lag = Histogram(
            "crowd_worker_lag_seconds",
            "From the start of the pass to the reading written or spooled",
            ["camera"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._cycle = Histogram("crowd_worker_cycle_seconds", "Duration of a pass", buckets=LATENCY_BUCKETS, registry=r)
        self._online = Gauge("crowd_worker_camera_online", "1 while the camera sends frames", ["camera"], registry=r)
        self._cameras = Gauge("crowd_worker_cameras", "Cameras held (leased) by this worker", registry=r)
        self._spool_depth = Gauge("crowd_worker_spool_depth", "Readings waiting for the database", registry=r)
        self._spool_dropped = Gauge("crowd_worker_spool_dropped", "Spooled readings dropped (spool full)", registry=r)
        self._flushed = Counter("crowd_worker_spool_flushed", "Spooled readings written later", registry=r)
        self._db_up = Gauge("crowd_worker_database_up", "1 while the database answers", registry=r)
        self._db_up.set(1)
        self._lock = threading.Lock()
        self.totals = {"frames": 0, "stored": 0, "spooled": 0, "errors": 0, "flushed": 0, "cycles": 0}
        self._window_inference: list[float] = []
        self._window_lag: list[float] = []
        self._window_outcomes = {"stored": 0, "spooled": 0}
        self._recent_inference: deque[float] = deque(maxlen=RECENT)
        self._recent_lag: deque[float] = deque(maxlen=RECENT)
        self._recent_cycle: deque[float] = deque(maxlen=50)
        self.spool_depth = 0
        self.spool_dropped = 0

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    # --- recording (main and writer threads) ---------------------------------------------------------------------

    def frame(self, camera: str) -> None:
        self._frames.labels(camera).inc()
        with self._lock:
            self.totals["frames"] += 1

    def inference(self, camera: str, seconds: float) -> None:
        self._inference.labels(camera).observe(seconds)
        with self._lock:
            self._window_inference.append(seconds * 1000)
            self._recent_inference.append(seconds * 1000)

    def reading(self, camera: str, outcome: str, lag: float) -> None:
        self._readings.labels(camera, outcome).inc()
        self._lag.labels(camera).observe(lag)
        with self._lock:
            self.totals[outcome] += 1
            self._window_outcomes[outcome] += 1
            self._window_lag.append(lag * 1000)
            self._recent_lag.append(lag * 1000)

    def error(self, camera: str, kind: str) -> None:
        self._errors.labels(camera, kind).inc()
        with self._lock:
            self.totals["errors"] += 1

    def online(self, camera: str, online: bool) -> None:
        self._online.labels(camera).set(1 if online else 0)

    def cameras(self, held: int) -> None:
        self._cameras.set(held)

    def spool(self, depth: int, dropped: int) -> None:
        self._spool_depth.set(depth)
        self._spool_dropped.set(dropped)
        self.spool_depth, self.spool_dropped = depth, dropped

    def flushed(self, written: int) -> None:
        self._flushed.inc(written)
        with self._lock:
            self.totals["flushed"] += written

    def database(self, up: bool) -> None:
        self._db_up.set(1 if up else 0)

    # --- summaries ---------------------------------------------------------------------------------------------------

    def cycle(self, seconds: float) -> dict[str, float]:
        """Close a pass: its figures for the summary line (inference of this pass, lags written since the last)."""
        self._cycle.observe(seconds)
        with self._lock:
            self.totals["cycles"] += 1
            self._recent_cycle.append(seconds * 1000)
            inference, lag = self._window_inference, self._window_lag
            outcomes = dict(self._window_outcomes)
            self._window_inference, self._window_lag = [], []
            self._window_outcomes = {"stored": 0, "spooled": 0}
        return {
            "duration_ms": seconds * 1000,
            "infer_ms_p50": statistics.median(inference) if inference else 0.0,
            "infer_ms_max": max(inference, default=0.0),
            "lag_ms_p95": _percentile(lag, 0.95),
            "lag_ms_max": max(lag, default=0.0),
            **outcomes,
        }

    def stats(self) -> dict[str, Any]:
        """Figures since start, for the heartbeat (detection.Worker.stats) and the web process's /metrics."""
        with self._lock:
            inference, lag, cycle = list(self._recent_inference), list(self._recent_lag), list(self._recent_cycle)
            totals = dict(self.totals)
        return {
            **totals,
            "spool_depth": self.spool_depth,
            "spool_dropped": self.spool_dropped,
            "inference_ms_p50": round(_percentile(inference, 0.5), 1),
            "inference_ms_p95": round(_percentile(inference, 0.95), 1),
            "lag_ms_p50": round(_percentile(lag, 0.5), 1),
            "lag_ms_p95": round(_percentile(lag, 0.95), 1),
            "cycle_ms_p95": round(_percentile(cycle, 0.95), 1),
        }
