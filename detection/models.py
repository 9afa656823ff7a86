from django.db import models


class Worker(models.Model):
    """A running detection worker process, as its heartbeat last reported it (written only by detection.leases).

    Workers find each other here to share the cameras fairly; a worker whose heartbeat stops is forgotten after a
    few lease periods, and its cameras' leases expire for the others to take over.
    """

    name = models.CharField(max_length=200, unique=True, help_text="host:pid:random, as in Camera.leased_by")
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(help_text="Database time of the last heartbeat.")
    cameras = models.PositiveIntegerField(default=0, help_text="Cameras leased at the last heartbeat.")
    # Figures since start: frames, readings, spooled, errors, inference and lag percentiles, spool depth.
    stats = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "detection worker"

    def __str__(self) -> str:
        return self.name
