from django.urls import path

from .consumers import CrowdConsumer

websocket_urlpatterns = [
    path("ws/crowd/", CrowdConsumer.as_asgi()),
    path("ws/crowd/<int:location_id>/", CrowdConsumer.as_asgi()),
]
