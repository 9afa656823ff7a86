"""Permission classes shared by the apps' APIs.

Access follows Django model permissions, so roles are plain groups: whoever may add a CrowdLog may
push readings, whoever may change an Alert may acknowledge and resolve it, and so on.
"""

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView


def require_perm(perm: str) -> type[BasePermission]:
    """A permission class that requires one Django permission, e.g. "locations.add_crowdlog"."""

    class HasPerm(BasePermission):
        message = f"You need the {perm!r} permission for this."

        def has_permission(self, request: Request, view: APIView) -> bool:
            return bool(request.user and request.user.is_authenticated and request.user.has_perm(perm))

    HasPerm.__name__ = f"HasPerm_{perm.replace('.', '_')}"
    return HasPerm
