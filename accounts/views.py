"""Sign-in: the dashboard's login page, Django admin's, and the API's token endpoint, all with lockout."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import authenticate
from django.contrib.auth import views as auth_views
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import lockout
from .forms import LoginForm
from .models import ApiToken
from .throttling import TokenEndpointThrottle


def _locked_response(form: Form, response: HttpResponse) -> HttpResponse:
    """429 (with Retry-After) when the form was refused because the username is locked out."""
    if form.has_error("__all__", "locked"):
        response.status_code = 429
        response["Retry-After"] = str(getattr(form, "locked_seconds", 0) or settings.LOGIN_LOCKOUT_SECONDS)
    return response


class LoginView(auth_views.LoginView):
    authentication_form = LoginForm

    def form_invalid(self, form: Form) -> HttpResponse:
        return _locked_response(form, super().form_invalid(form))


def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """Django admin's login page (with AdminLoginForm, see accounts.admin), answering 429 while locked out."""
    response = admin.site.login(request, extra_context)
    form = (getattr(response, "context_data", None) or {}).get("form")
    return _locked_response(form, response) if isinstance(form, Form) else response


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    name = serializers.CharField(
        max_length=100, required=False, allow_blank=True, help_text="What will use the token (shown in admin)."
    )
    expires_in = serializers.IntegerField(
        required=False,
        min_value=60,
        max_value=10 * 365 * 24 * 3600,
        help_text="Lifetime in seconds. Default: API_TOKEN_LIFETIME (server setting; 0 there means no expiry).",
    )


class TokenResponseSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>`. Shown only this once.")
    prefix = serializers.CharField(help_text="The token's first characters, as admin lists it.")
    name = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ObtainTokenView(APIView):
    """Exchange a username and password for a new API token (a new one on every call)."""

    authentication_classes: list = []  # the credentials are in the body
    permission_classes = [AllowAny]
    throttle_classes = [TokenEndpointThrottle]

    @extend_schema(
        operation_id="auth_token_create",
        request=TokenRequestSerializer,
        responses={
            200: TokenResponseSerializer,
            400: OpenApiResponse(description="Missing fields or wrong credentials."),
            429: OpenApiResponse(ErrorSerializer, description="Too many attempts: locked out or throttled."),
        },
        auth=[],
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        body = TokenRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        wait = lockout.locked_for(request._request, data["username"])
        if wait:
            return Response(
                {"detail": lockout.lockout_message(wait)},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(wait)},
            )
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            raise serializers.ValidationError(
                {"non_field_errors": ["Unable to sign in with the provided credentials."]}, code="authorization"
            )
        lockout.reset(request._request, data["username"])
        request.user = user  # the request is now the user's own (the audit log records them as the actor)
        lifetime = data.get("expires_in") or settings.API_TOKEN_LIFETIME
        expires_at = timezone.now() + timedelta(seconds=lifetime) if lifetime else None
        token, key = ApiToken.issue(user, name=data.get("name", ""), expires_at=expires_at, created_by=user)
        issued = {"token": key, "prefix": token.prefix, "name": token.name, "expires_at": expires_at}
        return Response(TokenResponseSerializer(issued).data, headers={"Cache-Control": "no-store"})
