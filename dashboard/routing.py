from django.urls import path, re_path

from .consumers import CrowdConsumer, NoRouteConsumer

websocket_urlpatterns = [
    path("ws/crowd/", CrowdConsumer.as_asgi()),
    path("ws/crowd/<int:location_id>/", CrowdConsumer.as_asgi()),
    re_path(r"", NoRouteConsumer.as_asgi()),  # last: every other path is refused, never a 500
]
