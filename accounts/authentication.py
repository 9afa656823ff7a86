"""`Authorization: Token <key>` against hashed ApiTokens, and session auth for the dashboard's own pages."""

from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.request import Request

from .models import ApiToken, hash_key
from .net import client_ip
from .roles import DASHBOARD
from .throttling import InvalidTokenThrottle

# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(seconds=60)
# Keys are "cm_" + 43 characters; anything much longer is not one of ours (and is not worth hashing).
MAX_KEY_LENGTH = 100


class ApiTokenAuthentication(TokenAuthentication):
    """DRF's token header, checked against SHA-256 hashes; revoked and expired tokens are refused."""

    keyword = "Token"
    model = ApiToken

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        try:
            result = super().authenticate(request)
        except exceptions.AuthenticationFailed:
            # Guessing keys is hopeless (256 random bits) but costs a query each: limit failures per address.
            limit = InvalidTokenThrottle()
            if not limit.allow_request(request, None):
                raise exceptions.Throttled(limit.wait()) from None
            raise
        if result is not None:
            _user, token = result
            now = timezone.now()
            if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
                ip = client_ip(request._request)
                ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_ip=ip)
                token.last_used_at, token.last_used_ip = now, ip
        return result

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        invalid = exceptions.AuthenticationFailed("Invalid token.")
        if len(key) > MAX_KEY_LENGTH:
            raise invalid
        try:
            token = ApiToken.objects.select_related("user").get(key_hash=hash_key(key))
        except ApiToken.DoesNotExist:
            raise invalid from None
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This token has been revoked.")
        if token.is_expired:
            raise exceptions.AuthenticationFailed("This token has expired.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token


class DashboardSessionAuthentication(SessionAuthentication):
    """Session (cookie) auth for users of the dashboard only.

    Integrator accounts use the API with a token: signed in through a browser they are not let into the API.
    """

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        result = super().authenticate(request)
        if result is not None and not result[0].has_perm(DASHBOARD):
            return None
        return result
