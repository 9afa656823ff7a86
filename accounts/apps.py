from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "Accounts and security"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        # Connect the signal receivers (audit log, sign-in lockout), register the OpenAPI auth extensions.
        from . import audit, lockout, schema  # noqa: F401

        audit.connect_signals()
        post_migrate.connect(_sync_roles, sender=self)


def _sync_roles(**kwargs: object) -> None:
    """After every migrate: the role groups exist and hold the permissions of models added since."""
    from .roles import sync_roles

    apps = kwargs.get("apps")
    try:
        apps and apps.get_model("auth", "Group")
    except LookupError:
        return  # migrated back past auth
    sync_roles(apps)
