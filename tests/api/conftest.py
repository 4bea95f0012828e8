"""Fixtures of the HTTP API tests: API clients, error-shape checks (`timers` is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

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


def field_error(response: Any, field: str, status: int = 400) -> dict[str, Any]:
    """Check an error reply `{"detail": "<field>: ...", "field": "<field>"}`; return its body."""
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert field in body["detail"], body
    assert body.get("field") == field, body
    # The same shape whichever view refused: each field's messages as a list.
    if "." not in field:
        messages = body["errors"][field]
        assert isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages), body
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
