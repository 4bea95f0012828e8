"""Server-rendered pages: lobby, sign-up, log-in, game page, leaderboard, history."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from game import store
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN = "/accounts/login/"


def logged_in_user_id(client) -> int | None:
    value = client.session.get("_auth_user_id")
    return None if value is None else int(value)


def test_the_lobby_page_renders_for_a_visitor(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


def test_the_lobby_page_renders_for_a_logged_in_player(client, make_user):
    client.force_login(make_user("alice"))
    response = client.get("/")
    assert response.status_code == 200
    assert "alice" in response.content.decode()


def test_the_signup_page_renders_a_form(client):
    response = client.get("/accounts/signup/")
    assert response.status_code == 200
    assert "<form" in response.content.decode()


def test_signing_up_creates_the_account_logs_in_and_redirects(client):
    response = client.post(
        "/accounts/signup/", {"username": "alice", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302, response.content
    assert response["Location"] == "/"
    user = get_user_model().objects.get(username="alice")
    assert user.check_password(PASSWORD)
    assert logged_in_user_id(client) == user.pk


def test_signing_up_follows_a_next_page(client):
    response = client.post(
        "/accounts/signup/?next=/rooms/ABCDEF/",
        {"username": "alice", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert response["Location"] == "/rooms/ABCDEF/"


def test_signing_up_refuses_to_redirect_to_another_site(client):
    response = client.post(
        "/accounts/signup/?next=https://evil.example/",
        {"username": "alice", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert "evil.example" not in response["Location"]


def test_signing_up_with_mismatched_passwords_shows_the_form_again(client):
    response = client.post(
        "/accounts/signup/", {"username": "alice", "password1": PASSWORD, "password2": PASSWORD + "x"}
    )
    assert response.status_code == 200
    assert not get_user_model().objects.filter(username="alice").exists()
    assert logged_in_user_id(client) is None


def test_signing_up_with_a_taken_username_creates_nobody(client, make_user):
    make_user("alice")
    response = client.post(
        "/accounts/signup/", {"username": "alice", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200
    assert get_user_model().objects.filter(username="alice").count() == 1
    assert logged_in_user_id(client) is None


def test_signing_up_a_name_that_differs_from_a_taken_one_by_more_than_case_creates_it(client, make_user):
    # MariaDB's default collations fold accents: "Renee" was refused beside "Renée".
    make_user("Ren\u00e9e")
    response = client.post(
        "/accounts/signup/", {"username": "Renee", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302, response.content
    assert logged_in_user_id(client) == get_user_model().objects.get(username="Renee").pk


def test_signing_up_a_name_taken_case_aside_shows_it_taken(client, make_user):
    make_user("Ren\u00e9e")
    response = client.post(
        "/accounts/signup/", {"username": "REN\u00c9E", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200 and b"already exists" in response.content
    assert get_user_model().objects.count() == 1


def test_django_forms_that_check_a_new_name_case_aside_fold_case_but_not_accents(make_user):
    # Django's own sign-up and admin "add user" forms check `username__iexact`: on MariaDB it
    # folded accents too; with the exact collation it must still fold case.
    from django.contrib.auth.forms import UserCreationForm

    make_user("Ren\u00e9e")

    def valid(name: str) -> bool:
        return UserCreationForm({"username": name, "password1": PASSWORD, "password2": PASSWORD}).is_valid()

    assert not valid("ren\u00e9e") and not valid("REN\u00c9E")
    assert valid("Renee")


def test_signing_up_a_name_another_sign_up_is_creating_shows_it_taken(client):
    # The page's check and insert raced into the unique index's 500 before.
    with store.name_claimed("dave"):
        response = client.post(
            "/accounts/signup/", {"username": "Dave", "password1": PASSWORD, "password2": PASSWORD}
        )
    assert response.status_code == 200 and b"already exists" in response.content
    assert not get_user_model().objects.filter(username__iexact="dave").exists()
    assert logged_in_user_id(client) is None


def test_the_login_page_renders_a_form(client):
    response = client.get(LOGIN)
    assert response.status_code == 200
    assert "<form" in response.content.decode()


def test_logging_in_with_the_right_password_redirects_to_the_lobby(client, make_user):
    user = make_user("alice")
    response = client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302, response.content
    assert response["Location"] == "/"
    assert logged_in_user_id(client) == user.pk


def test_logging_in_with_a_wrong_password_shows_the_form_again(client, make_user):
    make_user("alice")
    response = client.post(LOGIN, {"username": "alice", "password": "not-the-password"})
    assert response.status_code == 200
    assert logged_in_user_id(client) is None


def test_logging_out_ends_the_session(client, make_user):
    client.force_login(make_user("alice"))
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert logged_in_user_id(client) is None


def test_the_game_page_sends_a_visitor_to_log_in_first(client):
    response = client.get("/rooms/ABCDEF/")
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN}?next=/rooms/ABCDEF/"


def room_of(client, user) -> str:
    """A room created by `user` through the lobby's API; its code."""
    response = client.post("/api/rooms/", {}, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()["code"]


def test_the_game_page_renders_for_a_logged_in_player(client, make_user, questions):
    alice = make_user("alice")
    client.force_login(alice)
    code = room_of(client, alice)
    response = client.get(f"/rooms/{code}/")
    assert response.status_code == 200
    assert code in response.content.decode()


def test_the_game_page_accepts_a_lower_case_code(client, make_user, questions):
    alice = make_user("alice")
    client.force_login(alice)
    code = room_of(client, alice)
    response = client.get(f"/rooms/{code.lower()}/")
    assert response.status_code == 200
    assert code in response.content.decode()


@pytest.mark.parametrize("code", ["ABCDE0", "ZZZZZZ"])
def test_the_game_page_of_a_room_that_does_not_exist_is_a_404_page_that_says_so(client, make_user, code):
    client.force_login(make_user("alice"))
    response = client.get(f"/rooms/{code}/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "No such room" in page and code in page and 'href="/"' in page


def test_the_leaderboard_page_renders_for_a_visitor(client):
    response = client.get("/leaderboard/")
    assert response.status_code == 200


def test_the_history_page_sends_a_visitor_to_log_in_first(client):
    response = client.get("/history/")
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN}?next=/history/"


def test_logging_in_refuses_to_redirect_to_another_site(client, make_user):
    make_user("alice")
    response = client.post(f"{LOGIN}?next=https://evil.example/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_the_history_page_renders_for_a_logged_in_player(client, make_user):
    client.force_login(make_user("alice"))
    response = client.get("/history/")
    assert response.status_code == 200


def test_opening_the_log_out_address_asks_to_confirm_and_logs_nobody_out(client, make_user):
    client.force_login(make_user("alice"))
    response = client.get("/accounts/logout/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Log out?" in page and 'method="post"' in page and "csrfmiddlewaretoken" in page
    assert logged_in_user_id(client) is not None
    client.post("/accounts/logout/")
    assert logged_in_user_id(client) is None
    assert "You are logged out" in client.get("/accounts/logout/").content.decode()


def test_an_unknown_page_is_a_404_page_of_the_site_with_a_way_back(client):
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Page not found" in page and "/no/such/page/" in page and 'href="/"' in page
    assert 'rel="icon"' in page  # the site's own icon: no second 404 for /favicon.ico


def test_favicon_ico_leads_to_the_games_icon(client):
    # Pages that link no icon (the admin's) make browsers ask for /favicon.ico.
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("/game/favicon.svg")


def test_a_form_without_its_csrf_token_gets_the_sites_own_403_page(make_user):
    # Django's own page carries an inline <style> that the CSP blocks: it showed unstyled.
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 403
    body = response.content.decode()
    assert 'id="csrf-failed"' in body and "<style" not in body and " style=" not in body
