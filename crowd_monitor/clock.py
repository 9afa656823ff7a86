"""Times written out for people (notification texts): on the site's wall clock, TIME_ZONE, with the zone named.

The zone is named by its offset from UTC, after its abbreviation where it has one: "IST" alone could be India's,
Ireland's or Israel's, Riyadh's and São Paulo's zones have no abbreviation (Python gives "+03" and "-03"), and on the
night the clocks go back 02:30 CEST and 02:30 CET are an hour apart. API payloads carry ISO-8601 instead.
"""

from datetime import datetime

from django.utils import timezone


def zone_label(local: datetime) -> str:
    """'IST (UTC+05:30)', 'CEST (UTC+02:00)', 'UTC+03:00' (no abbreviation), 'UTC'."""
    offset = local.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    utc = f"UTC{sign}{hours:02d}:{minutes:02d}"
    name = local.tzname() or ""
    if name == "UTC" and offset is not None and not offset:
        return "UTC"
    if name.isalpha():
        return f"{name} ({utc})"
    return utc


def site_time(value: datetime, format: str = "%Y-%m-%d %H:%M:%S") -> str:
    """`value` on the site's wall clock, with the zone named: '2026-11-24 15:30:00 IST (UTC+05:30)'."""
    local = timezone.localtime(value)
    return f"{local.strftime(format)} {zone_label(local)}"
