"""/metrics for Prometheus: the whole detection fleet as the database knows it, from any web process.

Every detection worker writes its figures into its heartbeat row (detection.Worker.stats) and keeps its
cameras' status and leases current, so one scrape of any web process (they all read the same database) shows
every worker and camera, however many processes and machines run them. Each worker also serves its own live
metrics on `run_detection --metrics-port` (detection/metrics.py) for finer detail.

Labels are ids and worker names only, never camera sources or counts of people. With METRICS_TOKEN set, a
scrape must send `Authorization: Bearer <token>`.
"""

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# Worker figures (detection.metrics.WorkerMetrics.stats) exposed as counters and gauges.
WORKER_COUNTERS = {
    "frames": "Frames counted",
    "stored": "Readings written",
    "spooled": "Readings spooled while the database was unreachable",
    "flushed": "Spooled readings written once the database was back",
    "errors": "Source, frozen, counting and storing failures",
    "cycles": "Passes over the worker's cameras",
}
WORKER_GAUGES = {
    "spool_depth": "Readings waiting in the worker's spool",
    "spool_dropped": "Readings dropped because the spool was full",
    "inference_ms_p50": "Counting time per frame, median of recent frames (ms)",
    "inference_ms_p95": "Counting time per frame, 95th percentile of recent frames (ms)",
    "lag_ms_p50": "From the start of a pass to the reading written, median (ms)",
    "lag_ms_p95": "From the start of a pass to the reading written, 95th percentile (ms)",
    "cycle_ms_p95": "Duration of a pass over all cameras, 95th percentile (ms)",
}


class FleetCollector:
    def collect(self) -> Iterator[Metric]:
        from detection.models import Worker  # imported late: this module is imported by the URLconf
        from locations.models import Camera, Location

        now = timezone.now()
        online = GaugeMetricFamily("crowd_camera_online", "1 while the camera sends frames", labels=["camera"])
        seen = GaugeMetricFamily(
            "crowd_camera_last_seen_age_seconds", "Seconds since the camera's last frame", labels=["camera"]
        )
        leased = GaugeMetricFamily(
            "crowd_camera_leased", "1 while a live worker holds the camera's lease", labels=["camera", "worker"]
        )
        for camera in Camera.objects.filter(enabled=True).values(
            "pk", "status", "last_seen_at", "leased_by", "lease_expires_at"
        ):
            label = str(camera["pk"])
            online.add_metric([label], 1 if camera["status"] == Camera.Status.ONLINE else 0)
            if camera["last_seen_at"] is not None:
                seen.add_metric([label], (now - camera["last_seen_at"]).total_seconds())
            live = camera["leased_by"] and camera["lease_expires_at"] and camera["lease_expires_at"] > now
            leased.add_metric([label, camera["leased_by"] if live else ""], 1 if live else 0)
        yield from (online, seen, leased)

        heartbeat = GaugeMetricFamily(
            "crowd_worker_heartbeat_age_seconds", "Seconds since the worker's last heartbeat", labels=["worker"]
        )
        cameras = GaugeMetricFamily("crowd_worker_cameras", "Cameras the worker holds", labels=["worker"])
        counters = {
            name: CounterMetricFamily(f"crowd_worker_{name}", help_text, labels=["worker"])
            for name, help_text in WORKER_COUNTERS.items()
        }
        gauges = {
            name: GaugeMetricFamily(f"crowd_worker_{name}", help_text, labels=["worker"])
            for name, help_text in WORKER_GAUGES.items()
        }
        for worker in Worker.objects.all():
            heartbeat.add_metric([worker.name], (now - worker.heartbeat_at).total_seconds())
            cameras.add_metric([worker.name], worker.cameras)
            stats = worker.stats or {}
            for name, family in [*counters.items(), *gauges.items()]:
                if isinstance(stats.get(name), int | float):
                    family.add_metric([worker.name], stats[name])
        yield from (heartbeat, cameras, *counters.values(), *gauges.values())

        age = GaugeMetricFamily(
            "crowd_location_reading_age_seconds", "Seconds since the location's newest reading", labels=["location"]
        )
        for location in (
            Location.objects.filter(is_active=True).exclude(last_reading_at=None).values("pk", "last_reading_at")
        ):
            age.add_metric([str(location["pk"])], (now - location["last_reading_at"]).total_seconds())
        yield age


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return HttpResponse(
                "A valid METRICS_TOKEN bearer token is required.\n", status=401, content_type="text/plain"
            )
    registry = CollectorRegistry()
    registry.register(FleetCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
