"""The audit log: who changed which setting, camera, rule, alert state, user, role or token, and from where.

Model changes made while serving a web request are recorded from Django's model signals, so every path that
saves through the ORM is covered the same way: the REST API, Django admin (inlines included), the dashboard. The
actor and client address come from the request (AuditContextMiddleware). Workers and management commands (run by
whoever has shell access, i.e. full trust) are not audited this way, so their frequent saves never flood the log.
Alert state changes are conditional UPDATEs that send no signals, so alerts.services records them explicitly with
`record()`, whoever makes them (the system included).

Only the fields in TRACKED are compared; live state that the write path and the workers update all the time
(current counts, camera status) is not audited. Secret fields are recorded as changed, never with their values.
"""

import contextvars
import datetime
import decimal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.http import HttpRequest, HttpResponse

from .net import client_ip


@dataclass(frozen=True)
class Tracked:
    fields: frozenset[str] | None = None  # None: every concrete field not excluded
    exclude: frozenset[str] = frozenset()
    secret: frozenset[str] = frozenset()
    create: bool = True

    def names(self, model: type[models.Model]) -> list[str]:
        names = [f.name for f in model._meta.concrete_fields if not f.primary_key]
        if self.fields is not None:
            names = [n for n in names if n in self.fields]
        return [n for n in names if n not in self.exclude]


TRACKED: dict[str, Tracked] = {
    "locations.location": Tracked(
        exclude=frozenset(
            {"current_count", "occupancy_percentage", "density_level", "last_reading_at", "created_at", "updated_at"}
        )
    ),
    "locations.camera": Tracked(
        exclude=frozenset(
            {"status", "last_seen_at", "last_error", "created_at", "calibration", "leased_by", "lease_expires_at"}
        ),
        secret=frozenset({"source"}),
    ),
    # State changes are recorded by alerts.services; signals only see admin edits of the note and deletions.
    "alerts.alert": Tracked(fields=frozenset({"note"}), create=False),
    "alerts.alertrule": Tracked(exclude=frozenset({"created_at", "updated_at"})),
    "alerts.notificationchannel": Tracked(
        exclude=frozenset({"created_at", "updated_at"}),
        secret=frozenset({"target"}),  # webhook URLs hold tokens
    ),
    "auth.user": Tracked(exclude=frozenset({"last_login", "date_joined"}), secret=frozenset({"password"})),
    "auth.group": Tracked(),
    "accounts.apitoken": Tracked(
        exclude=frozenset({"key_hash", "created_at", "created_by", "last_used_at", "last_used_ip"})
    ),
}

_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("audit_request", default=None)


class AuditContextMiddleware:
    """Makes the request being served (its user and address) known to the audit log."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


@dataclass
class Context:
    actor_id: int | None = None
    actor_username: str = ""
    ip: str | None = None
    via: str = "system"


def current_context(actor: Any = None, system: bool = False) -> Context:
    """Who is acting, from where: `actor` if given, else the request's user (none when `system`)."""
    request = _request.get()
    context = Context()
    if request is not None:
        context.ip = client_ip(request)
        path = request.path
        context.via = "api" if path.startswith("/api/") else "admin" if path.startswith("/admin/") else "web"
        if actor is None and not system:
            user = getattr(request, "user", None)  # DRF puts the token's user here too
            if user is not None and user.is_authenticated:
                actor = user
    if actor is not None:
        context.actor_id, context.actor_username = actor.pk, actor.get_username()
    return context


def _label(obj: models.Model) -> str:
    return obj._meta.label_lower


def _plain(value: Any) -> Any:
    """A JSON-safe form of a field value."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _values(obj: models.Model, names: list[str]) -> dict[str, Any]:
    return {name: _plain(getattr(obj, obj._meta.get_field(name).attname)) for name in names}


def record(
    action: str, obj: models.Model, changes: dict[str, Any] | None = None, *, actor: Any = None, system: bool = False
) -> Any:
    """Write one audit entry for `obj`.

    The actor is `actor`, else the user of the request being served; `system=True` records a change the system
    made on its own (e.g. an alert resolved because readings came back) even while serving someone's request.
    """
    from .models import AuditLog

    context = current_context(actor, system=system)
    return AuditLog.objects.create(
        actor_id=context.actor_id,
        actor_username=context.actor_username,
        action=action,
        object_type=_label(obj),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        changes=changes or {},
        ip=context.ip,
        via=context.via,
    )


def _tracked(instance: models.Model) -> Tracked | None:
    spec = TRACKED.get(_label(instance))
    if spec is None or _request.get() is None:
        return None
    try:
        live = apps.get_model(instance._meta.label)
    except LookupError:
        return None
    # Historical models in migrations have the same label; their changes are not audited.
    return spec if type(instance) is live else None


def _remember_old_values(sender: Any, instance: models.Model, raw: bool = False, **kwargs: Any) -> None:
    spec = _tracked(instance)
    if spec is None or raw or instance._state.adding or instance.pk is None:
        return
    names = spec.names(type(instance))
    update_fields = kwargs.get("update_fields")
    if update_fields is not None:
        names = [n for n in names if n in update_fields]
    if not names:
        instance._audit_old = {}
        return
    attnames = {type(instance)._meta.get_field(n).attname: n for n in names}
    row = type(instance)._base_manager.filter(pk=instance.pk).values(*attnames).first()
    instance._audit_old = {attnames[k]: _plain(v) for k, v in row.items()} if row else None


def _record_save(sender: Any, instance: models.Model, created: bool, raw: bool = False, **kwargs: Any) -> None:
    spec = _tracked(instance)
    if spec is None or raw:
        return
    if created:
        if spec.create:
            new = _values(instance, spec.names(type(instance)))
            changes = {
                name: ({"set": bool(value)} if name in spec.secret else {"new": value}) for name, value in new.items()
            }
            record("create", instance, changes)
        return
    old = getattr(instance, "_audit_old", None)
    instance.__dict__.pop("_audit_old", None)
    if not old:
        return
    new = _values(instance, list(old))
    changes = {}
    for name, before in old.items():
        if new[name] != before:
            changes[name] = {"changed": True} if name in spec.secret else {"old": before, "new": new[name]}
    if changes:
        record("update", instance, changes)


def _record_delete(sender: Any, instance: models.Model, **kwargs: Any) -> None:
    if _tracked(instance) is not None:
        record("delete", instance)


def _record_m2m(
    sender: Any, instance: models.Model, action: str, reverse: bool, model: Any, pk_set: set | None, **kwargs: Any
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    # The relation as seen from its owner (user.groups), whichever side it was changed from.
    owners = list(model._base_manager.filter(pk__in=pk_set or ())) if reverse else [instance]
    for owner in owners:
        if _tracked(owner) is None:
            continue
        relation = next(
            (f for f in owner._meta.many_to_many if f.remote_field.through is sender),
            None,
        )
        if relation is None:
            continue
        if action == "post_clear":
            change = {"cleared": True}
        else:
            targets = [instance] if reverse else list(model._base_manager.filter(pk__in=pk_set or ()))
            change = {"added" if action == "post_add" else "removed": sorted(str(t) for t in targets)}
        record("update", owner, {relation.name: change})


def connect_signals() -> None:
    """Listen to the tracked models only (AccountsConfig.ready): a receiver for every model would also cost every
    other model its fast bulk deletes, which Django skips for models with delete listeners."""
    for label in TRACKED:
        try:
            model = apps.get_model(label)
        except LookupError:
            continue
        uid = f"audit-{label}"
        pre_save.connect(_remember_old_values, sender=model, dispatch_uid=uid)
        post_save.connect(_record_save, sender=model, dispatch_uid=uid)
        post_delete.connect(_record_delete, sender=model, dispatch_uid=uid)
        for relation in model._meta.many_to_many:
            through = relation.remote_field.through
            m2m_changed.connect(_record_m2m, sender=through, dispatch_uid=f"{uid}-{relation.name}")
