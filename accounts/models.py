"""API tokens (hashed at rest), the audit log, and the dashboard permission roles are built on."""

import hashlib
import secrets
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

# Every key starts with this tag, so leaked keys are easy to recognise (and to scan repositories for).
KEY_TAG = "cm_"
# How many leading characters of a key are stored in clear and shown in admin to tell tokens apart.
PREFIX_LENGTH = len(KEY_TAG) + 8


def hash_key(key: str) -> str:
    """SHA-256 of a key. Keys are 256 random bits, so a plain (unsalted, fast) hash is enough."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class ApiToken(models.Model):
    """A REST API key for `Authorization: Token <key>`.

    Only a SHA-256 of the key is stored, with its first few characters to tell tokens apart; the key itself is
    shown once, when the token is issued, and cannot be recovered afterwards.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What uses this token, e.g. 'north gate counter'.")
    prefix = models.CharField(max_length=PREFIX_LENGTH, editable=False, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'}, {self.user})"

    @classmethod
    def issue(
        cls,
        user: models.Model,
        *,
        name: str = "",
        expires_at: datetime | None = None,
        created_by: models.Model | None = None,
    ) -> tuple["ApiToken", str]:
        """Create a token; returns it with its key, which is not stored and never available again."""
        token = cls(user=user, name=name, expires_at=expires_at, created_by=created_by)
        key = token.set_new_key()
        token.save()
        return token, key

    def set_new_key(self) -> str:
        key = KEY_TAG + secrets.token_urlsafe(32)
        self.prefix = key[:PREFIX_LENGTH]
        self.key_hash = hash_key(key)
        return key

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class AuditLog(models.Model):
    """Who changed what, when and from where: settings, cameras, alert states, users, roles and tokens.

    Values of secret fields (camera sources, passwords, webhook targets) are never stored: only that they changed.
    """

    class Action(models.TextChoices):
        CREATE = "create", "Created"
        UPDATE = "update", "Changed"
        DELETE = "delete", "Deleted"
        ACKNOWLEDGE = "acknowledge", "Acknowledged"
        RESOLVE = "resolve", "Resolved"
        ESCALATE = "escalate", "Escalated"
        ISSUE_TOKEN = "issue_token", "Issued API token"
        REVOKE_TOKEN = "revoke_token", "Revoked API token"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True, help_text="Kept when the user is deleted.")
    action = models.CharField(max_length=20, choices=Action.choices)
    object_type = models.CharField(max_length=100, help_text="app_label.model")
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    changes = models.JSONField(
        default=dict, blank=True, help_text='{"field": {"old": ..., "new": ...}}; secret fields: {"changed": true}.'
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    via = models.CharField(max_length=20, blank=True, help_text="api, admin, web or system")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        at = timezone.localtime(self.at)  # the site's time, as admin shows the entry's `at` beside it
        return f"{at:%Y-%m-%d %H:%M:%S} {self.actor_username or 'system'} {self.action} {self.object_repr}"


class Access(models.Model):
    """No table: only carries the permissions that are not about a model (the dashboard)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_dashboard", "Can use the live dashboard (pages and WebSockets)")]

    def __str__(self) -> str:
        return "access"
