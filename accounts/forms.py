"""Sign-in forms that refuse locked-out usernames before checking the password."""

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from .lockout import locked_for, lockout_message
from .roles import DASHBOARD


class LockoutMixin:
    locked_seconds = 0

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")  # type: ignore[attr-defined]
        if username:
            self.locked_seconds = locked_for(self.request, username)  # type: ignore[attr-defined]
            if self.locked_seconds:
                raise forms.ValidationError(lockout_message(self.locked_seconds), code="locked")
        return super().clean()  # type: ignore[misc]


class LoginForm(LockoutMixin, AuthenticationForm):
    """The dashboard's sign-in: only accounts with the dashboard permission (integrators use API tokens)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "no_dashboard": "This account has no access to the dashboard (API tokens only). Ask an administrator.",
    }

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if not user.has_perm(DASHBOARD):
            raise forms.ValidationError(self.error_messages["no_dashboard"], code="no_dashboard")


class AdminLoginForm(LockoutMixin, AdminAuthenticationForm):
    pass
