"""Server-rendered pages (the browser client) and health endpoints."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from game import accounts, services, shutdown, store
from game.api.throttles import ScopedThrottle
from game.engine import rules
from game.models import Category


def index(request: HttpRequest) -> HttpResponse:
    """The lobby: create a room, join one by code, or quick match."""
    context: dict[str, Any] = {
        "categories": Category.objects.order_by("name"),
        "limits": rules.SETTING_LIMITS,
    }
    return render(request, "game/index.html", context)


def _signup_wait(request: HttpRequest) -> int | None:
    """Seconds to wait if this address has used its sign-up budget (shared with the API's)."""
    throttle = ScopedThrottle()
    if throttle.allow_request(request, SimpleNamespace(throttle_scope="signup")):  # type: ignore[arg-type]
        return None
    return max(1, math.ceil(throttle.wait() or 1))


def signup(request: HttpRequest) -> HttpResponse:
    """Create an account and log in (sign-ups per address are limited, as on the API)."""
    form: UserCreationForm[Any]
    if request.method == "POST":
        wait = _signup_wait(request)
        if wait is not None:
            response = render(request, "registration/signup_throttled.html", {"seconds": wait}, status=429)
            response["Retry-After"] = str(wait)
            return response
        form = UserCreationForm(request.POST)
        if form.is_valid():
            try:
                user = accounts.create_account(form.cleaned_data["username"], form.cleaned_data["password1"])
            except accounts.UsernameTaken:
                form.add_error(
                    "username", form.instance.unique_error_message(type(form.instance), ["username"])
                )
                return render(request, "registration/signup.html", {"form": form})
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            target = request.POST.get("next") or request.GET.get("next") or ""
            if not url_has_allowed_host_and_scheme(
                target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
            ):
                target = "index"
            return redirect(target)
    else:
        form = UserCreationForm()
    return render(request, "registration/signup.html", {"form": form})


class LogoutView(auth_views.LogoutView):
    """Django's log-out (POST only, CSRF-protected); a GET gets a page to confirm it instead of a 405."""

    http_method_names = ["get", "post", "options"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return render(request, "registration/logout_confirm.html")


@login_required
def room(request: HttpRequest, code: str) -> HttpResponse:
    """The game page of one room."""
    code = code.upper()
    if not rules.code_is_valid(code) or not async_to_sync(store.room_exists)(code):
        # A page that says so, not a game page whose socket is then refused (4404).
        return render(request, "game/no_room.html", {"code": code[:16]}, status=404)
    # The settings line names the room's category (its settings carry the slug).
    category_names = dict(Category.objects.values_list("slug", "name"))
    return render(request, "game/room.html", {"code": code, "category_names": category_names})


def leaderboard(request: HttpRequest) -> HttpResponse:
    """The leaderboard page (data from /api/leaderboard/)."""
    return render(request, "game/leaderboard.html")


@login_required
def history(request: HttpRequest) -> HttpResponse:
    """The player's own results (data from /api/me/results/)."""
    return render(request, "game/history.html")


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and Redis answer (503 otherwise)."""
    checks = async_to_sync(services.readiness)()
    # A process that is draining for a restart takes no new players.
    checks["accepting"] = not shutdown.draining
    ready = all(checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503)
