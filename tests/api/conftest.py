"""Fixtures of the HTTP API tests: API clients, a timer recorder, error-shape checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from game import scheduler
from tests.conftest import bearer

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Hash passwords cheaply: these tests exercise the API, not PBKDF2's cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api() -> APIClient:
    """An anonymous API client."""
    return APIClient()


@pytest.fixture
def api_as() -> Callable[[Any], APIClient]:
    """An API client that authenticates as a user with an access JWT: api_as(user)."""

    def make(user: Any) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer(user)}")
        return client

    return make


@pytest.fixture
def timers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[object], int]]:
    """Record the timers the services arm instead of sending them to a Celery broker."""
    armed: list[tuple[str, list[object], int]] = []

    async def run_at(task: str, *, args: list[object], due_ms: int) -> None:
        armed.append((task, list(args), due_ms))

    monkeypatch.setattr(scheduler, "run_at", run_at)
    return armed


def field_error(response: Any, field: str, status: int = 400) -> dict[str, Any]:
    """Check an error reply `{"detail": "<field>: ...", "field": "<field>"}`; return its body."""
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert field in body["detail"], body
    assert body.get("field") == field, body
    return body


def plain_error(response: Any, status: int) -> dict[str, Any]:
    """Check an error reply `{"detail": "..."}` with `status`; return its body."""
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body


def is_room_code(code: object) -> bool:
    """True for 6 characters of the room-code alphabet."""
    return isinstance(code, str) and len(code) == 6 and all(c in CODE_ALPHABET for c in code)
