"""Root URLs: pages, the JSON API and the admin."""

from django.contrib import admin
from django.urls import include, path

from game.telemetry.views import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("api/", include("game.api.urls")),
    path("", include("game.urls")),
]
