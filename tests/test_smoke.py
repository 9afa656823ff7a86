from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from locations.models import Location


@pytest.mark.django_db
def test_api_lists_locations(admin_client):
    Location.objects.create(name="Gate A", capacity_limit=100)
    response = admin_client.get("/api/locations/")
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["name"] == "Gate A"


@pytest.mark.django_db
def test_seed_demo_prints_a_working_login_and_refuses_a_weak_password() -> None:
    with pytest.raises(CommandError, match="--password: This password is too short"):
        call_command("seed_demo", "--password", "short", stdout=StringIO())
    assert not Location.objects.exists()  # refused before anything is kept

    for _ in range(2):  # scripts/run seeds on every start: nothing is duplicated, a new password is printed
        out = StringIO()
        call_command("seed_demo", stdout=out)
        password = out.getvalue().split("Demo login: demo / ")[1].split()[0]
    assert Location.objects.count() == 4
    user = authenticate(username="demo", password=password)
    assert user is not None and user.is_superuser
