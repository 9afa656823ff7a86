"""The client's address, as the throttles, the login lockout and the audit log see it."""

import ipaddress

from django.http import HttpRequest
from rest_framework.settings import api_settings


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the address NUM_PROXIES trusted proxies in front of us put in X-Forwarded-For.

    The same rule as DRF's throttles use (its NUM_PROXIES setting): with NUM_PROXIES=0 the header is ignored,
    so a client cannot pick its own address by sending one.
    """
    meta = getattr(request, "META", {})
    address = meta.get("REMOTE_ADDR", "")
    proxies = api_settings.NUM_PROXIES
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        address = hops[-min(proxies, len(hops))]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None
