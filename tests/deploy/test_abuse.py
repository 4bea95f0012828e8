"""Abuse limits: django-axes lockout per client address, DRF throttles answering 429 with Retry-After."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.test import RequestFactory
from rest_framework.test import APIClient

from game.api.throttles import ScopedThrottle
from tests.conftest import PASSWORD, bearer

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN = "/accounts/login/"
TOKEN = "/api/auth/token/"
NGINX = "10.0.0.2"


@pytest.fixture(autouse=True)
def small_limits(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AXES_FAILURE_LIMIT = 3
    settings.NUXTEST_TRUSTED_PROXY_COUNT = 1


def via_proxy(client_ip: str) -> dict[str, str]:
    """What Daphne sees behind nginx: nginx's address, the client's in X-Forwarded-For."""
    return {"REMOTE_ADDR": NGINX, "HTTP_X_FORWARDED_FOR": client_ip}


def token(client_ip: str, password: str, username: str = "alice") -> Any:
    return APIClient().post(
        TOKEN, {"username": username, "password": password}, format="json", **via_proxy(client_ip)
    )


def login(client: Any, client_ip: str, password: str, username: str = "alice") -> Any:
    return client.post(LOGIN, {"username": username, "password": password}, **via_proxy(client_ip))


def assert_api_lockout(response: Any) -> None:
    assert response.status_code == 429, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and "too many" in body["detail"]
    assert int(response["Retry-After"]) > 0


def test_the_token_endpoint_locks_an_address_out_after_the_configured_failures(make_user):
    make_user("alice")
    for _ in range(2):
        assert token("203.0.113.5", "wrong-password-1").status_code == 401
    assert_api_lockout(token("203.0.113.5", "wrong-password-1"))
    # Locked: even the right password gets no token from that address.
    locked = token("203.0.113.5", PASSWORD)
    assert_api_lockout(locked)
    assert b"access" not in locked.content
    # Another client behind the same proxy is not locked out.
    fine = token("198.51.100.7", PASSWORD)
    assert fine.status_code == 200 and "access" in fine.json()


def test_the_lockout_counts_per_address_across_usernames(make_user):
    make_user("alice")
    for name in ("bob", "carol"):
        assert token("203.0.113.5", "x-wrong-1", username=name).status_code == 401
    assert_api_lockout(token("203.0.113.5", "x-wrong-1", username="dave"))
    assert_api_lockout(token("203.0.113.5", PASSWORD, username="alice"))


def test_the_login_page_locks_an_address_out_with_a_page(client, make_user):
    make_user("alice")
    for _ in range(2):
        response = login(client, "203.0.113.5", "wrong-password-1")
        assert response.status_code == 200 and b"form-errors" in response.content
    response = login(client, "203.0.113.5", "wrong-password-1")
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    assert b'id="locked-out"' in response.content
    assert int(response["Retry-After"]) > 0
    # Locked: the right password does not log in from that address.
    locked = login(client, "203.0.113.5", PASSWORD)
    assert locked.status_code == 429 and "_auth_user_id" not in client.session
    # The page and the API share the count: the address is locked out of both.
    assert_api_lockout(token("203.0.113.5", PASSWORD))
    ok = login(client, "198.51.100.7", PASSWORD)
    assert ok.status_code == 302


def test_a_success_forgives_only_that_accounts_own_failures(client, make_user):
    # An attacker with an account of their own used to clear the address's whole count
    # by logging in: unlimited guesses, nine at a time (a security walk-through).
    make_user("alice")
    make_user("bob")
    for _ in range(2):
        assert token("203.0.113.5", "guess-1", username="alice").status_code == 401
    assert token("203.0.113.5", PASSWORD, username="bob").status_code == 200
    assert login(client, "203.0.113.5", PASSWORD, username="bob").status_code == 302
    assert_api_lockout(token("203.0.113.5", "guess-2", username="alice"))
    assert_api_lockout(token("203.0.113.5", PASSWORD, username="bob"))


def test_a_success_takes_its_own_failures_off_and_leaves_the_others(make_user):
    make_user("alice")
    make_user("bob")
    assert token("203.0.113.5", "guess-1", username="alice").status_code == 401
    assert token("203.0.113.5", "typo-1", username="bob").status_code == 401
    assert token("203.0.113.5", PASSWORD, username="bob").status_code == 200  # bob's typo forgiven
    assert token("203.0.113.5", "guess-2", username="alice").status_code == 401  # 2 of 3
    assert_api_lockout(token("203.0.113.5", "guess-3", username="alice"))


def test_a_success_before_the_limit_resets_the_count(client, make_user):
    make_user("alice")
    for _ in range(2):
        assert token("203.0.113.5", "wrong-password-1").status_code == 401
    assert token("203.0.113.5", PASSWORD).status_code == 200
    for _ in range(2):
        assert login(client, "203.0.113.5", "wrong-password-1").status_code == 200
    assert login(client, "203.0.113.5", PASSWORD).status_code == 302
    for _ in range(2):
        assert token("203.0.113.5", "wrong-password-1").status_code == 401
    assert token("203.0.113.5", PASSWORD).status_code == 200


def test_without_a_trusted_proxy_x_forwarded_for_is_not_believed(settings, make_user):
    settings.NUXTEST_TRUSTED_PROXY_COUNT = 0
    make_user("alice")
    # A client rotating a forged header is still one address.
    for i in range(2):
        assert token(f"203.0.113.{i}", "wrong-password-1").status_code == 401
    assert_api_lockout(token("203.0.113.98", "wrong-password-1"))
    assert_api_lockout(token("203.0.113.99", PASSWORD))


def test_with_a_trusted_proxy_only_the_address_it_appended_counts(make_user):
    make_user("alice")
    # The client sends its own X-Forwarded-For; nginx appends the address it saw.
    for forged in ("1.1.1.1", "2.2.2.2"):
        response = token(f"{forged}, 203.0.113.5", "wrong-password-1")
        assert response.status_code == 401
    assert_api_lockout(token("3.3.3.3, 203.0.113.5", "wrong-password-1"))
    assert_api_lockout(token("4.4.4.4, 203.0.113.5", PASSWORD))
    assert token("203.0.113.5, 198.51.100.7", PASSWORD).status_code == 200


# --- DRF throttles ---------------------------------------------------------------------------


@pytest.fixture
def tight_rates(settings: Any) -> None:
    settings.NUXTEST_THROTTLE_RATES = {"signup": "2/minute", "rooms": "2/minute", "matchmaking": "2/minute"}


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert 0 < int(response["Retry-After"]) <= 60


def test_signup_is_throttled_per_client_address(tight_rates):
    api = APIClient()
    for i in range(2):
        body = {"username": f"new{i}", "password": "a-long-password-1"}
        assert (
            api.post("/api/auth/signup/", body, format="json", **via_proxy("203.0.113.5")).status_code == 201
        )
    body = {"username": "new3", "password": "a-long-password-1"}
    assert_throttled(api.post("/api/auth/signup/", body, format="json", **via_proxy("203.0.113.5")))
    other = api.post("/api/auth/signup/", body, format="json", **via_proxy("198.51.100.7"))
    assert other.status_code == 201


def authed(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer(user)}")
    return client


def test_room_creation_is_throttled_per_user(tight_rates, make_user, questions):
    alice, bob = make_user("alice"), make_user("bob")
    for _ in range(2):
        assert authed(alice).post("/api/rooms/", {}, format="json").status_code == 201
    assert_throttled(authed(alice).post("/api/rooms/", {}, format="json"))
    assert authed(bob).post("/api/rooms/", {}, format="json").status_code == 201


def test_matchmaking_is_throttled_per_user(tight_rates, make_user, questions, timers):
    alice, bob = make_user("alice"), make_user("bob")
    for _ in range(2):
        assert authed(alice).post("/api/matchmaking/").status_code == 200
    assert_throttled(authed(alice).post("/api/matchmaking/"))
    assert authed(bob).post("/api/matchmaking/").status_code == 200


def test_a_throttle_counts_requests_that_arrive_together_exactly(settings):
    # DRF's own throttle reads and rewrites its log per request: threads asking together
    # all read the same log, and a flood passed the limit (1,010 of a limit of 1,000).
    settings.NUXTEST_THROTTLE_RATES = {"rooms": "20/minute"}
    view = SimpleNamespace(throttle_scope="rooms")
    request = RequestFactory().post("/api/rooms/", REMOTE_ADDR="203.0.113.9")
    request.user = AnonymousUser()
    start = threading.Barrier(8)

    def flood(_: int) -> list[bool]:
        start.wait()
        return [ScopedThrottle().allow_request(request, view) for _ in range(10)]  # type: ignore[arg-type]

    with ThreadPoolExecutor(8) as pool:
        outcomes = [ok for batch in pool.map(flood, range(8)) for ok in batch]
    assert outcomes.count(True) == 20
    refused = ScopedThrottle()
    assert refused.allow_request(request, view) is False  # type: ignore[arg-type]
    assert 0 < (refused.wait() or 0) <= 60


def test_reading_a_room_is_not_throttled(tight_rates, make_user, questions):
    alice = make_user("alice")
    code = authed(alice).post("/api/rooms/", {}, format="json").json()["code"]
    for _ in range(5):
        assert authed(alice).get(f"/api/rooms/{code}/").status_code == 200


def test_the_signup_page_shares_the_api_signup_budget_of_an_address(tight_rates, client):
    api = APIClient()
    body = {"username": "apiuser", "password": "a-long-password-1"}
    assert api.post("/api/auth/signup/", body, format="json", **via_proxy("203.0.113.5")).status_code == 201
    form = {"username": "pageuser", "password1": "a-long-password-1", "password2": "a-long-password-1"}
    assert client.post("/accounts/signup/", form, **via_proxy("203.0.113.5")).status_code == 302
    client.logout()
    third = {"username": "third", "password1": "a-long-password-1", "password2": "a-long-password-1"}
    response = client.post("/accounts/signup/", third, **via_proxy("203.0.113.5"))
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    assert b'id="signup-throttled"' in response.content
    assert 0 < int(response["Retry-After"]) <= 60
    assert not User.objects.filter(username="third").exists()
    # The page itself still opens, and another address signs up.
    assert client.get("/accounts/signup/", **via_proxy("203.0.113.5")).status_code == 200
    assert client.post("/accounts/signup/", third, **via_proxy("198.51.100.7")).status_code == 302
    assert User.objects.filter(username="third").exists()
