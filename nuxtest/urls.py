"""Root URLs: pages, the JSON API and the admin."""

from typing import Any

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from game.telemetry.views import metrics


class FaviconView(RedirectView):
    """/favicon.ico → the game's icon (resolved per request: the static storage decides)."""

    permanent = True

    def get_redirect_url(self, *args: Any, **kwargs: Any) -> str:
        return static("game/favicon.svg")


# Django's own 400 (a Host not in ALLOWED_HOSTS, say) is JSON under /api/ too.
handler400 = "game.api.errors.bad_request"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("api/", include("game.api.urls")),
    path("", include("game.urls")),
    # Pages that do not link the game's icon (the admin's) make browsers ask for this one.
    path("favicon.ico", FaviconView.as_view()),
]
