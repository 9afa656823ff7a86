from django.urls import path

from . import views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("locations/<int:pk>/", views.location_detail, name="location"),
    path("alerts/", views.alert_log, name="alerts"),
]
