"""API errors are JSON `{"detail": ...}` with the right status (GAME.md, HTTP)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.api.conftest import plain_error
from tests.conftest import PASSWORD, bearer

pytestmark = pytest.mark.django_db(transaction=True)

CSRF_SECRET = "a" * 32


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/rooms/"),
        ("put", "/api/rooms/"),
        ("get", "/api/matchmaking/"),
        ("post", "/api/leaderboard/"),
        ("delete", "/api/me/results/"),
        ("get", "/api/auth/signup/"),
        ("get", "/api/auth/token/"),
    ],
)
def test_a_wrong_method_answers_405_with_a_detail(api_as, make_user, method, path):
    client = api_as(make_user("alice"))
    plain_error(getattr(client, method)(path), 405)


def test_an_unknown_api_path_answers_404_with_a_json_detail(api_as, make_user):
    plain_error(api_as(make_user("alice")).get("/api/no-such-endpoint/"), 404)


@pytest.mark.parametrize("path", ["/api/auth/signup/", "/api/auth/token/", "/api/rooms/"])
def test_a_body_over_the_upload_limit_answers_413_with_a_json_detail_and_logs_no_error(
    api_as, make_user, path, settings, caplog
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"username": "%s", "password": "x"}' % ("a" * 2000)
    response = api_as(make_user("alice")).post(path, body, content_type="application/json")
    assert "larger than 1000 bytes" in plain_error(response, 413)["detail"]
    assert [r for r in caplog.records if r.levelname in {"ERROR", "CRITICAL"}] == []


@pytest.mark.parametrize(
    "path", ["/api/auth/signup/", "/api/auth/token/", "/api/auth/token/refresh/", "/api/rooms/"]
)
@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000, '{"a":' * 3000 + "1" + "}" * 3000])
def test_a_body_nested_too_deeply_answers_400_with_a_json_detail_and_logs_no_error(
    api_as, make_user, path, body, caplog
):
    # The decoder's RecursionError was an HTML 500 (a security walk-through).
    response = api_as(make_user("alice")).post(path, body, content_type="application/json")
    assert "nested too deeply" in plain_error(response, 400)["detail"]
    assert [r for r in caplog.records if r.levelname in {"ERROR", "CRITICAL"}] == []


@pytest.mark.parametrize("path", ["/api/leaderboard/", "/api/no-such-endpoint/", "/api/auth/token/"])
def test_a_host_outside_allowed_hosts_answers_400_with_a_json_detail_and_logs_no_error(
    api, path, settings, caplog
):
    # Every scanner's request was an HTML 400 and an ERROR line (a Sentry event).
    settings.ALLOWED_HOSTS = ["testserver"]
    response = api.get(path, HTTP_HOST="scanner.invalid")
    assert "Host" in plain_error(response, 400)["detail"]
    assert [r for r in caplog.records if r.levelname in {"ERROR", "CRITICAL"}] == []


def test_a_host_outside_allowed_hosts_still_gets_a_page_outside_the_api(client, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    response = client.get("/", HTTP_HOST="scanner.invalid")
    assert response.status_code == 400 and response["Content-Type"].startswith("text/html")


def test_a_session_post_without_a_csrf_token_answers_403_with_a_detail(make_user, questions):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    plain_error(client.post("/api/rooms/", {}, format="json"), 403)


def test_a_session_post_with_its_csrf_token_creates_a_room(make_user, questions):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    client.cookies["csrftoken"] = CSRF_SECRET
    response = client.post("/api/rooms/", {}, format="json", HTTP_X_CSRFTOKEN=CSRF_SECRET)
    assert response.status_code == 201, response.content


def test_a_bearer_client_needs_no_csrf_token(make_user, questions):
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer(make_user('alice'))}")
    response = client.post("/api/rooms/", {}, format="json")
    assert response.status_code == 201, response.content


def test_quick_match_with_too_small_a_question_bank_answers_a_json_error_not_a_crash(make_user, timers):
    client = APIClient(raise_request_exception=False)
    client.force_login(make_user("alice"))
    response = client.post("/api/matchmaking/")
    assert response.status_code != 500, response.content
    plain_error(response, response.status_code)
    assert 400 <= response.status_code < 600


@pytest.mark.django_db
def test_a_refused_request_is_one_access_line_not_also_djangos_warning(api, caplog):
    # Django's "Not Found: ..." / "Unauthorized: ..." warning repeated the access line of
    # every 4xx (27 such lines in one short session of a new user); the status is in the
    # access line already.
    with caplog.at_level(logging.INFO):
        assert api.get("/api/me/results/").status_code == 401
        assert api.get("/api/no-such-thing/").status_code == 404
    assert [r.getMessage() for r in caplog.records if r.name == "django.request"] == []
    access = [r for r in caplog.records if getattr(r, "event", "") == "http_request"]
    assert [r.status for r in access] == [401, 404]


# --- The database refusing connections ------------------------------------------------------


@pytest.fixture
def one_mysql_connection() -> Iterator[None]:
    """The tests' MySQL/MariaDB account swapped for one allowed a single connection, which
    another request holds: as a server past its max_connections (151 by default; Django has
    no connection pool for MySQL, so each concurrent request opens one)."""
    import MySQLdb

    s = connection.settings_dict
    user, password = "nuxtest_one_conn", "one-conn-Quiz-42"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}' WITH MAX_USER_CONNECTIONS 1"
        )
        cursor.execute(f"GRANT ALL ON `{s['NAME']}`.* TO '{user}'@'%'")
    held = MySQLdb.connect(
        host=s["HOST"] or "localhost",
        port=int(s["PORT"] or 3306),
        user=user,
        password=password,
        database=s["NAME"],
    )
    saved = s["USER"], s["PASSWORD"]
    connection.close()
    s["USER"], s["PASSWORD"] = user, password
    try:
        yield
    finally:
        connection.close()
        s["USER"], s["PASSWORD"] = saved
        held.close()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP USER '{user}'@'%'")


@pytest.mark.skipif(connection.vendor != "mysql", reason="a MySQL/MariaDB connection limit")
def test_a_request_the_database_has_no_connection_for_answers_503_with_retry_after(api, one_mysql_connection):
    # Was Django's HTML 500 page (PostgreSQL's pool answers this 503 after DB_POOL_TIMEOUT).
    response = api.post("/api/auth/signup/", {"username": "waiter", "password": PASSWORD}, format="json")
    assert plain_error(response, 503) == {"detail": "the server is busy; try again in a moment"}
    assert response["Retry-After"] == "1"


# --- Redis or PostgreSQL away ---------------------------------------------------------------


def test_an_api_call_while_redis_is_away_answers_a_json_503_with_retry_after(api_as, make_user, monkeypatch):
    # Was Django's HTML "Server Error (500)" page for every API call during a Redis outage.
    from redis.exceptions import ConnectionError as RedisConnectionError

    from game import store

    def refused(*args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(store, "throttle_take", refused)
    response = api_as(make_user("alice")).post("/api/rooms/", {"rounds": 2}, format="json")
    body = plain_error(response, 503)
    assert body == {"detail": "the service is temporarily unavailable; try again in a moment"}
    assert response["Retry-After"] == "5"


def test_an_api_call_while_the_database_is_away_answers_a_json_503_with_retry_after(api, monkeypatch):
    # Was Django's HTML 500 page (a pooled connection PostgreSQL's restart had ended, or none).
    from django.db import OperationalError

    from game.api import views

    def ended(*args, **kwargs):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(views, "leaderboard_compute", ended)
    response = api.get("/api/leaderboard/?period=all")
    plain_error(response, 503)
    assert response["Retry-After"] == "5"
