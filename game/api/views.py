"""JSON API views: validate input, call a service, shape the reply (GAME.md, HTTP)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connections
from django.db.models import Count, QuerySet, Sum
from django.http import HttpRequest
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings as jwt_api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from game import accounts, services, store
from game.api.parsers import SettingsJSONParser
from game.api.throttles import ScopedThrottle
from game.db_router import replica_reads
from game.engine import rules
from game.models import GameResult

logger = logging.getLogger(__name__)

LEADERBOARD_PERIODS = {"day": timedelta(days=1), "week": timedelta(days=7), "all": None}
LEADERBOARD_SIZE = 50
HISTORY_SIZE = 100


def user_id(request: Request) -> int:
    """The authenticated caller's id (views here require authentication)."""
    pk = request.user.pk
    assert pk is not None
    return int(pk)


def ws_url(request: HttpRequest, code: str) -> str:
    """The absolute WebSocket URL of a room, on the host the client used."""
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{request.get_host()}/ws/rooms/{code}/"


class SignupSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)

    def validate_username(self, value: str) -> str:
        user_model = get_user_model()
        # Checked as it will be stored: a full-width "BOB" (U+FF22 ...) is stored "BOB", beside "bob".
        value = user_model.normalize_username(value)
        field = user_model._meta.get_field("username")
        try:
            for validator in field.validators:
                validator(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
        if user_model.objects.filter(username__iexact=value).exists():
            raise serializers.ValidationError("this username is taken")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user = get_user_model()(username=attrs["username"])
        try:
            password_validation.validate_password(attrs["password"], user)
        except DjangoValidationError as exc:
            raise ValidationError({"password": exc.messages}) from exc
        return attrs


class SignupView(APIView):
    """POST /api/auth/signup/: create an account for an API client."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []
    throttle_classes = [ScopedThrottle]
    throttle_scope = "signup"

    def post(self, request: Request) -> Response:
        data = SignupSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = accounts.create_account(data.validated_data["username"], data.validated_data["password"])
        except accounts.UsernameTaken as exc:
            raise ValidationError({"username": ["this username is taken"]}) from exc
        return Response({"id": user.pk, "username": user.get_username()}, status=status.HTTP_201_CREATED)


class RefreshSerializer(TokenRefreshSerializer):
    """simplejwt's refresh, with a token of a deleted account refused (401), not a 500, and
    one issued before the account's password changed refused too.

    simplejwt 5.5.1 looks the token's user up with `.get()` and lets DoesNotExist escape,
    and checks the password claim (CHECK_REVOKE_TOKEN) only where an access token is used:
    the refresh answered 200 with an access token that nothing would take.
    """

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        refresh = self.token_class(attrs["refresh"])
        user_id = refresh.get(jwt_api_settings.USER_ID_CLAIM)
        if user_id is None:
            raise InvalidToken("the token names no account")
        try:
            data = super().validate(attrs)
            user = get_user_model().objects.get(**{jwt_api_settings.USER_ID_FIELD: user_id})
        except get_user_model().DoesNotExist as exc:
            raise InvalidToken("the account of this token no longer exists") from exc
        if jwt_api_settings.CHECK_REVOKE_TOKEN and refresh.get(
            jwt_api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise InvalidToken("the account's password has changed since this token was issued: log in again")
        return data


class TokenRefresh(TokenRefreshView):
    """POST /api/auth/token/refresh/: a new access token for a valid refresh token."""

    serializer_class = RefreshSerializer


class TokenObtainView(TokenObtainPairView):
    """POST /api/auth/token/: simplejwt's token pair behind django-axes' lockout.

    simplejwt authenticates with DRF's request, so the lockout flag that django-axes sets
    lands on that object; it is copied to Django's request, where AxesMiddleware turns it
    into the 429 of game.lockout.lockout_response. A success takes that account's own
    failures off the address's count, as a log-in through the page does (simplejwt sends
    no user_logged_in).
    """

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        finally:
            if getattr(request, "axes_locked_out", False):
                request._request.axes_locked_out = True  # type: ignore[attr-defined]
        AxesProxyHandler.user_logged_in(type(self), request=request, user=serializer.user)  # type: ignore[attr-defined]
        return Response(serializer.validated_data, status=status.HTTP_200_OK)


class RoomCreateView(APIView):
    """POST /api/rooms/: create a room hosted by the caller."""

    parser_classes = [SettingsJSONParser]
    throttle_classes = [ScopedThrottle]
    throttle_scope = "rooms"

    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ValidationError({"settings": "send a JSON object"})
        raw = body.get("settings", body)
        if not isinstance(raw, dict):
            raise ValidationError({"settings": "must be a JSON object"})
        try:
            room = async_to_sync(services.room_create)(host_id=user_id(request), settings_raw=raw)
        except rules.SettingsError as exc:
            raise ValidationError(exc.errors) from exc
        summary = services.room_summary(room)
        return Response(
            {"code": room.code, "ws_url": ws_url(request, room.code), "settings": summary["settings"]},
            status=status.HTTP_201_CREATED,
        )


class RoomDetailView(APIView):
    """GET /api/rooms/<CODE>/: the room's public summary."""

    def get(self, request: Request, code: str) -> Response:
        code = code.upper()
        if not rules.code_is_valid(code):
            raise NotFound("no such room")
        try:
            room = async_to_sync(services.room_get)(code=code)
        except store.RoomNotFound as exc:
            raise NotFound("no such room") from exc
        return Response({**services.room_summary(room), "ws_url": ws_url(request, code)})


class MatchmakingView(APIView):
    """POST /api/matchmaking/: a place in a quick-match room."""

    throttle_classes = [ScopedThrottle]
    throttle_scope = "matchmaking"

    def post(self, request: Request) -> Response:
        uid = user_id(request)
        # A placement can queue on the quick-match lock for seconds: give this request's
        # database connection back to the pool first, or a burst of joins holds every
        # connection while it waits and the placement under the lock cannot get one.
        connections.close_all()
        try:
            room = async_to_sync(services.quickmatch_place)(user_id=uid)
        except store.LockBusy:
            logger.warning("quick match busy", extra={"event": "quickmatch_busy"})
            response = Response({"detail": "quick match is busy; try again in a moment"}, status=503)
            response["Retry-After"] = "1"
            return response
        except rules.SettingsError as exc:
            # Only the server's own question bank can make default settings fail.
            logger.error("quick match impossible: %s", exc, extra={"event": "quickmatch_unavailable"})
            return Response(
                {"detail": "quick match is unavailable: the question bank is too small"},
                status=503,
            )
        return Response({"code": room.code, "ws_url": ws_url(request, room.code)})


class LeaderboardView(APIView):
    """GET /api/leaderboard/?period=day|week|all: top 50 players by total score (cached)."""

    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        period = request.query_params.get("period", "week")
        if period not in LEADERBOARD_PERIODS:
            raise ValidationError({"period": "must be day, week or all"})
        cache_key = f"leaderboard:{period}"
        board = cache.get(cache_key)
        if board is None:
            board = leaderboard_compute(period)
            cache.set(cache_key, board, settings.NUXTEST_LEADERBOARD_CACHE_SECONDS)
        return Response({"period": period, "results": board})


def leaderboard_compute(period: str) -> list[dict[str, Any]]:
    """Top players by summed score over the period (reads GameResult by created_at)."""
    rows = GameResult.objects.all()
    span = LEADERBOARD_PERIODS[period]
    if span is not None:
        rows = rows.filter(created_at__gte=timezone.now() - span)
    with replica_reads():
        top = list(
            rows.values("user_id", "user__username")
            .annotate(score=Sum("score"), games=Count("id"))
            .order_by("-score", "user_id")[:LEADERBOARD_SIZE]
        )
    return [
        {
            "rank": i,
            "player": row["user_id"],
            "name": row["user__username"],
            "score": row["score"],
            "games": row["games"],
        }
        for i, row in enumerate(top, start=1)
    ]


class MyResultsView(APIView):
    """GET /api/me/results/: the caller's results, newest first (at most 100)."""

    def get(self, request: Request) -> Response:
        return Response(results_for(user_id(request)))


def history_query(user_id: int) -> QuerySet[GameResult]:
    """A player's newest results, read in order from the index gameresult_user_created."""
    return GameResult.objects.filter(user_id=user_id).order_by("-created_at", "-id")[:HISTORY_SIZE]


def results_for(user_id: int) -> list[dict[str, Any]]:
    """A player's stored results, newest first."""
    with replica_reads():
        rows = list(history_query(user_id))
    return [
        {
            "room": r.room,
            "score": r.score,
            "rank": r.rank,
            "correct": r.correct,
            "rounds": r.rounds,
            "avg_answer_ms": r.avg_answer_ms,
            "created_at": r.created_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }
        for r in rows
    ]


@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@permission_classes([AllowAny])
def api_not_found(request: Request) -> Response:
    """Any unknown path under /api/: a JSON 404 like every other API error."""
    raise NotFound("no such API endpoint")
