"""Sign-in backend: Django's model backend, with viewing as the least a signed-in account can do.

The HTTP and WebSocket contracts (DESIGN.md) let any authenticated user read the live state, so an account that an
administrator has given no role group and no permission of its own gets the viewer role's permissions. Anything
deliberate replaces that default: an integrator (API only) does not also become a viewer.
"""

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db.models import QuerySet

from accounts.roles import VIEWER


class RoleBackend(ModelBackend):
    def _get_group_permissions(self, user_obj: Any) -> QuerySet[Permission]:
        if user_obj.groups.exists() or user_obj.user_permissions.exists():
            return super()._get_group_permissions(user_obj)
        return Permission.objects.filter(group__name=VIEWER)
