"""Request rates per API token (or signed-in user) and per anonymous client address (rates: settings.REST_FRAMEWORK).

Counters live in the default cache: Redis when REDIS_URL is set, so every web process shares them. With the cache
unreachable (Redis restarting), requests are let through and the failure is logged: the API of a safety system
stays up rather than answering 500 to everyone.
"""

import logging
import time
from typing import TYPE_CHECKING, Any

from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle

if TYPE_CHECKING:  # DRF imports this module while defining APIView
    from rest_framework.views import APIView
else:
    APIView = Any


logger = logging.getLogger(__name__)
_last_warning = 0.0


class FailOpen:
    def allow_request(self, request: Request, view: APIView) -> bool:
        global _last_warning
        try:
            return super().allow_request(request, view)  # type: ignore[misc]
        except Exception:
            if time.monotonic() - _last_warning > 60:  # once a minute, not once a request
                _last_warning = time.monotonic()
                logger.exception("Request rate limits are not enforced: the cache is unreachable")
            return True


class TokenOrUserRateThrottle(FailOpen, SimpleRateThrottle):
    """One budget per API token; a signed-in browser session uses its user's budget."""

    scope = "user"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None  # AnonymousRateThrottle's
        from .models import ApiToken

        ident = f"token-{request.auth.pk}" if isinstance(request.auth, ApiToken) else f"user-{request.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ReadingsRateThrottle(TokenOrUserRateThrottle):
    """Pushed readings, per token: a sensor gone haywire cannot flood the write path and the dashboards."""

    scope = "readings"


class AnonymousRateThrottle(FailOpen, AnonRateThrottle):
    """Per client address (NUM_PROXIES decides which address that is)."""

    scope = "anon"


class TokenEndpointThrottle(FailOpen, AnonRateThrottle):
    """POST /api/auth/token/, per client address, on top of the per-account lockout."""

    scope = "auth"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class InvalidTokenThrottle(FailOpen, AnonRateThrottle):
    """Failed token authentications per client address, at the anonymous rate (see ApiTokenAuthentication).

    DRF checks throttles after permissions, so a request with a bad token is refused (401) before the anonymous
    rate applies; the authentication class counts those failures itself.
    """

    scope = "anon"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": "invalid-token", "ident": self.get_ident(request)}
