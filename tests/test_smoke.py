import pytest

from locations.models import Location


@pytest.mark.django_db
def test_api_lists_locations(admin_client):
    Location.objects.create(name="Gate A", capacity_limit=100)
    response = admin_client.get("/api/locations/")
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["name"] == "Gate A"
