"""The four roles, as Django groups with model permissions.

| role       | can                                                                                          |
|------------|----------------------------------------------------------------------------------------------|
| viewer     | the dashboard (pages, WebSockets) and the read API                                           |
| operator   | viewer + acknowledge / resolve alerts                                                        |
| admin      | operator + locations, cameras, rules, notification channels, users, tokens, audit log; with  |
|            | is_staff also Django admin                                                                   |
| integrator | API with a token only: read, push readings. No dashboard, no WebSockets, no admin            |

Created by migration accounts.0002 and brought up to date after every `migrate` (post_migrate; also
`manage.py sync_roles`): permissions of new models are added, nothing is ever removed. The four groups are the
product's definition of its roles; make a new group for a site-specific variant rather than editing them.
"""

from typing import Any

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
INTEGRATOR = "integrator"

DASHBOARD = "accounts.view_dashboard"

READ = [
    "locations.view_location",
    "locations.view_camera",
    "locations.view_crowdlog",
    "locations.view_densitysnapshot",
    "alerts.view_alert",
]

# "app_label.*" stands for every permission of that app's models.
ROLES: dict[str, list[str]] = {
    VIEWER: [DASHBOARD, *READ],
    OPERATOR: [DASHBOARD, *READ, "alerts.change_alert"],
    ADMIN: [
        DASHBOARD,
        "locations.*",
        "alerts.*",
        "accounts.*",
        "auth.view_user",
        "auth.add_user",
        "auth.change_user",
        "auth.delete_user",
        "auth.view_group",  # roles are assigned to users, not redefined
        "detection.view_worker",
    ],
    INTEGRATOR: [*READ, "locations.add_crowdlog"],
}


def sync_roles(apps: Any = None) -> dict[str, int]:
    """Create the role groups and give them their permissions; returns how many each has.

    `apps` is a migration's app registry (or None for the live one). Permissions are created first, so this
    works inside a migration on a fresh database, before post_migrate has run.
    """
    from django.apps import apps as live_apps
    from django.contrib.auth.management import create_permissions

    registry = apps or live_apps
    for app_config in registry.get_app_configs():
        # Migration app configs have no models module; create_permissions skips apps without one.
        saved = getattr(app_config, "models_module", None)
        app_config.models_module = saved or True
        try:
            create_permissions(app_config, apps=registry, verbosity=0)
        finally:
            app_config.models_module = saved

    Group = registry.get_model("auth", "Group")
    Permission = registry.get_model("auth", "Permission")
    counts = {}
    for role, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = Permission.objects.none()
        for perm in perms:
            app_label, codename = perm.split(".")
            match = Permission.objects.filter(content_type__app_label=app_label)
            if codename != "*":
                match = match.filter(codename=codename)
            wanted = wanted | match
        group.permissions.add(*wanted.distinct())
        counts[role] = group.permissions.count()
    return counts
