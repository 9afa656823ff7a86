"""The viewer, operator, admin and integrator groups with their permissions (accounts/roles.py).

Accounts that existed before roles keep what they could do: before, any signed-in user could watch the dashboard
and read the API. So each active user without a group becomes a viewer (an operator if they could change alerts);
device accounts, which could only push readings, become integrators. Superusers need no role.
"""

from django.db import migrations


def create_roles(apps, schema_editor):
    from accounts.roles import sync_roles

    sync_roles(apps)
    User = apps.get_model("auth", "User")
    Group = apps.get_model("auth", "Group")
    roles = {g.name: g for g in Group.objects.filter(name__in=["viewer", "operator", "integrator"])}
    for user in User.objects.filter(is_superuser=False, is_active=True, groups__isnull=True):
        own = set(user.user_permissions.values_list("codename", flat=True))
        if "change_alert" in own:
            user.groups.add(roles["operator"])
        elif own == {"add_crowdlog"} and not user.is_staff:
            user.groups.add(roles["integrator"])
        else:
            user.groups.add(roles["viewer"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        # The apps whose model permissions the roles hold.
        ("locations", "0002_camera_frame"),
        ("alerts", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
