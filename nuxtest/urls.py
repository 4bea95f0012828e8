"""Root URLs: pages, the JSON API and the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("game.api.urls")),
    path("", include("game.urls")),
]
