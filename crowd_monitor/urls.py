from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from accounts.views import LoginView, ObtainTokenView, admin_login
from alerts.api import AlertViewSet
from locations.api import LocationViewSet
from locations.camera_api import CameraViewSet

from .api import readyz
from .metrics import metrics

router = DefaultRouter()
router.register("locations", LocationViewSet, basename="location")
router.register("alerts", AlertViewSet, basename="alert")
router.register("cameras", CameraViewSet, basename="camera")

urlpatterns = [
    path("admin/login/", admin_login),  # admin's own login, with the sign-in lockout's 429
    path("admin/", admin.site.urls),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/auth/token/", ObtainTokenView.as_view(), name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/", include(router.urls)),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),  # Prometheus (docs/PERFORMANCE.md)
    path("", include("dashboard.urls")),
]

handler404 = "crowd_monitor.api.not_found"
