import pytest
from django.core.management import call_command


@pytest.fixture(scope="session", autouse=True)
def collected_static(django_db_blocker: object) -> None:
    """Pages are rendered with the production (manifest) static storage, as deployed."""
    call_command("collectstatic", "--noinput", verbosity=0)
