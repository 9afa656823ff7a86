"""Brute-force protection for every password check: the login page, Django admin and the token endpoint.

Failures are counted in the cache (Redis when REDIS_URL is set, so all web processes share them) per
(username, client address) and per client address. After LOGIN_MAX_FAILURES failures for one username from one
address, or LOGIN_MAX_FAILURES_PER_IP from one address for any usernames, further attempts are refused without
checking the password for LOGIN_LOCKOUT_SECONDS, with HTTP 429 and a message that says so.

Counting happens in a `user_login_failed` receiver, so every caller of `django.contrib.auth.authenticate` that
passes the request is covered. A cache that is down never locks anyone out of a safety system: it is logged and
the attempt goes ahead.
"""

import hashlib
import logging
import math
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest

from .net import client_ip

logger = logging.getLogger(__name__)


def _key(kind: str, *parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"login-{kind}:{digest}"


def _subjects(request: HttpRequest | None, username: str) -> list[tuple[str, str, int]]:
    """(counter key, lock key, limit) for the username at this address, and for the address alone."""
    ip = (client_ip(request) if request is not None else None) or "unknown"
    name = (username or "").strip().lower()
    return [
        (_key("fail", name, ip), _key("lock", name, ip), settings.LOGIN_MAX_FAILURES),
        (_key("fail-ip", ip), _key("lock-ip", ip), settings.LOGIN_MAX_FAILURES_PER_IP),
    ]


def locked_for(request: HttpRequest | None, username: str) -> int:
    """Seconds until this username may be tried again from this address (0: not locked)."""
    try:
        until = [cache.get(lock) for _, lock, _ in _subjects(request, username)]
    except Exception:  # see the module docstring
        logger.exception("Login lockout: cache unavailable, not enforcing")
        return 0
    remaining = max((u - time.time() for u in until if u), default=0)
    return math.ceil(remaining) if remaining > 0 else 0


def lockout_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (
        f"Too many failed sign-in attempts. Sign-in is locked for this account from your address; "
        f"try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )


def record_failure(request: HttpRequest | None, username: str) -> None:
    window = settings.LOGIN_LOCKOUT_SECONDS
    try:
        for counter, lock, limit in _subjects(request, username):
            cache.add(counter, 0, timeout=window)
            failures = cache.incr(counter)
            if failures >= limit:
                cache.set(lock, time.time() + window, timeout=window)
                cache.delete(counter)
                logger.warning("Sign-in locked for %s s after %s failed attempts (%s)", window, failures, lock)
    except Exception:
        logger.exception("Login lockout: cache unavailable, failure not counted")


def reset(request: HttpRequest | None, username: str) -> None:
    """A successful sign-in clears that username's failures at that address (not the address's own count)."""
    counter, _lock, _limit = _subjects(request, username)[0]
    try:
        cache.delete(counter)
    except Exception:
        logger.exception("Login lockout: cache unavailable")


@receiver(user_login_failed)
def _count_failure(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    if request is None:
        return  # not a web sign-in (e.g. a management command)
    from django.contrib.auth import get_user_model

    record_failure(request, str(credentials.get(get_user_model().USERNAME_FIELD, "")))


@receiver(user_logged_in)
def _clear_failures(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None:
        reset(request, user.get_username())
