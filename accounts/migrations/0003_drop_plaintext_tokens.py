"""Remove DRF's authtoken table, if an earlier version left one: it held API keys in plain text.

Its keys stopped working when accounts.ApiToken replaced it; issue new tokens (admin or POST /api/auth/token/).
"""

from django.db import migrations


def drop_authtoken_table(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" in connection.introspection.table_names():
        schema_editor.execute(f"DROP TABLE {schema_editor.quote_name('authtoken_token')}")
        # So that re-adding rest_framework.authtoken would create its table again.
        schema_editor.execute("DELETE FROM django_migrations WHERE app = %s", ["authtoken"])


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_roles")]

    operations = [migrations.RunPython(drop_authtoken_table, migrations.RunPython.noop)]
