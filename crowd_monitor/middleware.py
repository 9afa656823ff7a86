import contextlib
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, JsonResponse


class HealthCheckMiddleware:
    """Answers `/healthz` and `/readyz` before host validation and HTTPS redirects.

    Load balancers and orchestrators probe with internal host names over plain HTTP; liveness
    means only "the process answers", so it needs neither the database nor ALLOWED_HOSTS. Readiness
    checks the database and the channel layer, and answers the same probes whatever Host they send.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/healthz":
            return JsonResponse({"status": "ok"})
        if request.path == "/readyz":
            from .api import readyz  # not at import time: the API plumbing needs the apps loaded

            return readyz(request)
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """Content-Security-Policy and Permissions-Policy on every response (Django 5.2 has no CSP of its own).

    The pages load nothing but this site's own files: no inline scripts or styles, no eval, no remote
    hosts except a map tile server when one is configured (settings.CSP_IMG_SRC). WebSockets go to this same
    host. With CSP_REPORT_ONLY the policy is sent as Content-Security-Policy-Report-Only (to try a change).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.header = "Content-Security-Policy-Report-Only" if settings.CSP_REPORT_ONLY else "Content-Security-Policy"

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response and "Content-Security-Policy-Report-Only" not in response:
            response[self.header] = self.policy(request)
        if "Permissions-Policy" not in response:
            response["Permissions-Policy"] = settings.PERMISSIONS_POLICY
        return response

    @staticmethod
    def policy(request: HttpRequest) -> str:
        connect = ["'self'"]
        with contextlib.suppress(DisallowedHost):  # answered with 400 anyway; 'self' covers the WebSocket
            connect.append(f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}")
        directives = {
            "default-src": ["'self'"],
            "script-src": ["'self'"],
            "style-src": ["'self'"],
            "img-src": ["'self'", "data:", "blob:", *settings.CSP_IMG_SRC],
            "font-src": ["'self'"],
            "connect-src": connect,
            "object-src": ["'none'"],
            "base-uri": ["'self'"],
            "form-action": ["'self'"],
            "frame-ancestors": ["'none'"],
        }
        return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())
