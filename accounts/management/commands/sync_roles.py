from typing import Any

from django.core.management.base import BaseCommand

from accounts.roles import ROLES, sync_roles


class Command(BaseCommand):
    help = (
        "Create the viewer, operator, admin and integrator groups and add their permissions (idempotent; "
        "permissions added by hand are kept). Run it after upgrades that add models."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts = sync_roles()
        for role in ROLES:
            self.stdout.write(f"{role}: {counts[role]} permissions")
