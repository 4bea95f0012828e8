"""URLs of the JSON API, under /api/."""

from django.urls import path, re_path

from game.api import views

urlpatterns = [
    path("auth/signup/", views.SignupView.as_view(), name="api-signup"),
    path("auth/token/", views.TokenObtainView.as_view(), name="api-token"),
    path("auth/token/refresh/", views.TokenRefresh.as_view(), name="api-token-refresh"),
    path("rooms/", views.RoomCreateView.as_view(), name="api-rooms"),
    path("rooms/<str:code>/", views.RoomDetailView.as_view(), name="api-room"),
    path("matchmaking/", views.MatchmakingView.as_view(), name="api-matchmaking"),
    path("leaderboard/", views.LeaderboardView.as_view(), name="api-leaderboard"),
    path("me/results/", views.MyResultsView.as_view(), name="api-my-results"),
    # Anything else under /api/ is a JSON 404, not Django's HTML page.
    re_path(r"^.*$", views.api_not_found),
]
