"""API plumbing shared by every app: pagination, error format, health checks."""

import logging
import re
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.defaults import page_not_found
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class StandardPagination(PageNumberPagination):
    """Page numbers; a page_size that is not a whole number from 1 to max_page_size is refused (400), not ignored."""

    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request: Request) -> int:
        value = request.query_params.get(self.page_size_query_param)
        if value in (None, ""):
            return self.page_size
        if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= self.max_page_size:
            message = f"Must be a whole number from 1 to {self.max_page_size}."
            raise ValidationError({self.page_size_query_param: message})
        return int(value)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            elif parameter["name"] == self.page_query_param:
                parameter["schema"].update(minimum=1)
        return parameters


# How the API's time parameters are described in its schema.
ZONED = "ISO-8601 with a time zone (Z or an offset such as +05:30, its + written %2B); without one, UTC"


class ZonedDateTimeField(serializers.DateTimeField):
    """An ISO-8601 time that says its time zone (`Z` or an offset), as an aware datetime in UTC.

    Every time the API takes, a reading's timestamp as well as the `since` / `until` filters, is one of these. A
    reading's timestamp without a zone is refused rather than guessed: DRF would read it in the server's TIME_ZONE,
    which the client does not know (a device reporting local time, an integrator in another country), and on a DST
    change day a wall-clock time can occur twice or not at all; a stored reading must say when it was counted. A
    filter's time without a zone (`naive_is_utc`) is read as UTC, as it always was on a site in UTC: it only chooses
    what to show, and clients that send `datetime.utcnow().isoformat()` keep working wherever the server is. Values
    come back in UTC, whatever TIME_ZONE is: a time near the ends of the calendar that exists in UTC must not
    overflow (a 500, or a 400 in one zone and not in another) for being converted to the site's zone.
    """

    default_error_messages = {
        "naive": "Give the time zone, e.g. 2026-11-24T10:00:00Z or 2026-11-24T15:30:00+05:30.",
        "plus": "A + in a URL stands for a space: write the offset's + as %2B, e.g. 2026-11-24T15:30:00%2B05:30.",
    }
    # 2026-11-24T15:30:00+05:30 in a query string the client did not encode: what arrives has a space for the "+".
    # DRF's answer, that the format is YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z], is what the client sent.
    PLUS_AS_SPACE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}(:?\d{2})?")

    def __init__(self, *, naive_is_utc: bool = False, **kwargs: Any) -> None:
        self.naive_is_utc = naive_is_utc
        kwargs.setdefault("default_timezone", UTC)
        super().__init__(**kwargs)

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, str) and self.PLUS_AS_SPACE.fullmatch(value.strip()):
            self.fail("plus")
        return super().to_internal_value(value)

    def enforce_timezone(self, value: datetime) -> datetime:
        if timezone.is_naive(value):
            if not self.naive_is_utc:
                self.fail("naive")
            value = value.replace(tzinfo=UTC)
        return super().enforce_timezone(value)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus a JSON 413 for bodies over DATA_UPLOAD_MAX_MEMORY_SIZE."""
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": "Request body is too large."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    return drf_exception_handler(exc, context)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """JSON for API clients, Django's page for browsers."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and the channel layer are reachable."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        logger.warning("Readiness: database unreachable: %s", exc)
        checks["database"] = "unreachable"
    try:
        layer = get_channel_layer()
        async_to_sync(layer.group_send)("readyz", {"type": "readyz.ping"})
        checks["channel_layer"] = "ok"
    except Exception as exc:  # noqa: BLE001
        logger.warning("Readiness: channel layer unreachable: %s", exc)
        checks["channel_layer"] = "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
