"""Permission classes shared by the apps' APIs.

Access follows Django model permissions, so roles are plain groups (accounts/roles.py): whoever may view a model
reads it, whoever may add a CrowdLog may push readings, whoever may change an Alert may acknowledge and resolve
it, and so on. A signed-in user without a role reads as a viewer (accounts/backends.py).
"""

from rest_framework.permissions import BasePermission, DjangoModelPermissions
from rest_framework.request import Request
from rest_framework.views import APIView


def require_perm(*perms: str) -> type[BasePermission]:
    """A permission class that requires every one of `perms`, e.g. "locations.add_crowdlog"."""
    wanted = ", ".join(repr(p) for p in perms)

    class HasPerm(BasePermission):
        message = f"You need the {wanted} permission for this."

        def has_permission(self, request: Request, view: APIView) -> bool:
            return bool(request.user and request.user.is_authenticated and request.user.has_perms(perms))

    HasPerm.__name__ = "HasPerm_" + "_".join(p.replace(".", "_") for p in perms)
    return HasPerm


class ModelPermissions(DjangoModelPermissions):
    """DRF's model permissions, reading included: GET needs the model's view permission too."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }
    message = "Your role does not allow this."
