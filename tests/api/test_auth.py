"""POST /api/auth/signup/, /api/auth/token/ and /api/auth/token/refresh/."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from game import store
from tests.api.conftest import field_error, plain_error
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

SIGNUP = "/api/auth/signup/"
TOKEN = "/api/auth/token/"
REFRESH = "/api/auth/token/refresh/"
ME = "/api/me/results/"


def with_bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# --- Sign-up ------------------------------------------------------------------------------------


def test_signup_creates_an_account_and_answers_201_with_its_id_and_username(api):
    response = api.post(SIGNUP, {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    user = get_user_model().objects.get(username="alice")
    assert body == {"id": user.pk, "username": "alice"}
    assert user.check_password(PASSWORD)


def test_signup_never_echoes_the_password(api):
    response = api.post(SIGNUP, {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 201
    assert PASSWORD not in response.content.decode()


def test_a_new_account_can_obtain_a_token_pair(api):
    api.post(SIGNUP, {"username": "alice", "password": PASSWORD}, format="json")
    response = api.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    assert {"access", "refresh"} <= set(response.json())


@pytest.mark.parametrize(
    "taken",
    [
        "alice",
        "Alice",
        "ALICE",
        # Full-width letters, stored NFKC-normalised as "ALICE" (was created beside "alice")
        # and "alice" (was a 500 from the unique index): a security walk-through.
        "\uff21\uff2c\uff29\uff23\uff25",
        "\uff41\uff4c\uff49\uff43\uff45",
    ],
)
def test_signup_refuses_a_taken_username_with_400_naming_username(api, make_user, taken):
    make_user("alice")
    response = api.post(SIGNUP, {"username": taken, "password": PASSWORD}, format="json")
    field_error(response, "username")
    assert get_user_model().objects.count() == 1


# Names that differ by more than case are different names, on every database: MariaDB's
# default collations (utf8mb4_general_ci, utf8mb4_unicode_ci) fold accents, "ß" and every
# character outside the BMP onto one another, and refused each second name as taken.
DIFFERENT_NAMES = [
    ("Jos\u00e9", "Jose"),
    ("zo\u00eb", "zoe"),
    ("Stra\u00dfe", "Strasse"),
    ("p\U00010330", "p\U00010331"),  # Gothic letters, 4 bytes in UTF-8
]


@pytest.mark.parametrize(("existing", "new"), DIFFERENT_NAMES)
def test_signup_accepts_a_name_that_differs_from_a_taken_one_by_more_than_case(api, make_user, existing, new):
    make_user(existing)
    response = api.post(SIGNUP, {"username": new, "password": PASSWORD}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["username"] == new
    assert sorted(get_user_model().objects.values_list("username", flat=True)) == sorted([existing, new])


@pytest.mark.parametrize("spelling", ["alice", "ALICE", "Al\u00efce", "Alice "])
def test_a_token_is_given_for_the_name_as_it_was_signed_up_only(api, make_user, spelling):
    # MariaDB's case- and accent-insensitive `=` let "ALICE" and "Alïce" log in as "Alice".
    make_user("Alice")
    response = api.post(TOKEN, {"username": spelling, "password": PASSWORD}, format="json")
    if spelling.strip() == "Alice":  # the API trims the name, as the pages do
        assert response.status_code == 200, response.content
    else:
        assert response.status_code == 401, response.content


def test_signup_stores_the_name_normalised_as_it_checked_it(api):
    response = api.post(SIGNUP, {"username": "\uff22\uff2f\uff22", "password": PASSWORD}, format="json")
    assert response.status_code == 201 and response.json()["username"] == "BOB"


def test_sign_ups_of_one_name_at_once_make_one_account_and_no_server_error(api, settings):
    # Ten at once were one account and nine 500s; "racer"/"Racer" at once were two accounts.
    # The real hasher: its time between the check and the insert is the race's window.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    names = ["racer", "Racer", "RACER", "racer", "rAcer", "racer", "Racer", "racer", "RaceR", "racer"]

    def sign_up(name: str) -> int:
        return APIClient().post(SIGNUP, {"username": name, "password": PASSWORD}, format="json").status_code

    with ThreadPoolExecutor(len(names)) as pool:
        codes = sorted(pool.map(sign_up, names))
    assert codes == [201] + [400] * (len(names) - 1)
    assert get_user_model().objects.filter(username__iexact="racer").count() == 1


def test_a_name_another_sign_up_is_creating_is_taken(api):
    with store.name_claimed("Carol") as held:
        assert held
        field_error(api.post(SIGNUP, {"username": "carol", "password": PASSWORD}, format="json"), "username")
    assert not get_user_model().objects.filter(username__iexact="carol").exists()
    assert api.post(SIGNUP, {"username": "carol", "password": PASSWORD}, format="json").status_code == 201


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("x7#q", id="too-short"),
        pytest.param("password", id="common"),
        pytest.param("48213975601", id="all-digits"),
        pytest.param("alice123", id="like-the-username"),
        pytest.param("", id="empty"),
    ],
)
def test_signup_refuses_a_weak_password_with_400_naming_password(api, password):
    response = api.post(SIGNUP, {"username": "alice", "password": password}, format="json")
    field_error(response, "password")
    assert not get_user_model().objects.filter(username="alice").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": PASSWORD}, "username"),
        ({"username": "alice"}, "password"),
        ({"username": "", "password": PASSWORD}, "username"),
        ({"username": "bad name!", "password": PASSWORD}, "username"),
        ({"username": "x" * 151, "password": PASSWORD}, "username"),
        ({"username": ["alice"], "password": PASSWORD}, "username"),
    ],
)
def test_signup_refuses_missing_or_invalid_fields_with_400_naming_the_field(api, body, field):
    response = api.post(SIGNUP, body, format="json")
    field_error(response, field)
    assert get_user_model().objects.count() == 0


def test_signup_with_an_empty_body_answers_400_with_a_detail(api):
    response = api.post(SIGNUP, {}, format="json")
    body = plain_error(response, 400)
    assert body.get("field") in {"username", "password"}
    assert body["field"] in body["detail"]


def test_signup_with_malformed_json_answers_400_with_a_detail(api):
    response = api.post(SIGNUP, data="{not json", content_type="application/json")
    plain_error(response, 400)


def test_signup_needs_no_authentication_even_with_a_bad_bearer_token():
    client = with_bearer("not-a-token")
    response = client.post(SIGNUP, {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 201, response.content


# --- Tokens -------------------------------------------------------------------------------------


def test_the_right_credentials_get_an_access_and_refresh_token(api, make_user):
    user = make_user("alice")
    response = api.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert AccessToken(body["access"])["user_id"] in (user.pk, str(user.pk))
    assert isinstance(body["refresh"], str) and body["refresh"] != body["access"]


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({"username": "alice", "password": "wrong-password-1"}, id="wrong-password"),
        pytest.param({"username": "nobody", "password": PASSWORD}, id="unknown-user"),
    ],
)
def test_wrong_credentials_answer_401_with_a_detail_and_no_tokens(api, make_user, credentials):
    make_user("alice")
    response = api.post(TOKEN, credentials, format="json")
    body = plain_error(response, 401)
    assert "access" not in body and "refresh" not in body


def test_an_inactive_account_gets_no_token(api, make_user):
    user = make_user("alice")
    user.is_active = False
    user.save()
    response = api.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json")
    plain_error(response, 401)


def test_a_token_request_without_a_password_answers_400_naming_password(api, make_user):
    make_user("alice")
    response = api.post(TOKEN, {"username": "alice"}, format="json")
    field_error(response, "password")


def test_the_access_token_authenticates_api_calls(api, make_user):
    make_user("alice")
    access = api.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json").json()["access"]
    assert api.get(ME).status_code == 401
    response = with_bearer(access).get(ME)
    assert response.status_code == 200, response.content
    assert response.json() == []


def test_the_refresh_token_gets_a_new_access_token_that_authenticates(api, make_user):
    make_user("alice")
    refresh = api.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json").json()["refresh"]
    response = api.post(REFRESH, {"refresh": refresh}, format="json")
    assert response.status_code == 200, response.content
    access = response.json()["access"]
    assert with_bearer(access).get(ME).status_code == 200


def test_a_refresh_token_of_a_deleted_account_answers_401_not_a_server_error(api, make_user):
    alice = make_user("alice")
    refresh = api.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json").json()["refresh"]
    alice.delete()
    response = api.post(REFRESH, {"refresh": refresh}, format="json")
    plain_error(response, 401)


def test_a_password_change_revokes_every_token_issued_before(api, make_user):
    # An admin resetting a compromised account's password left its tokens working for a
    # day (a security walk-through).
    alice = make_user("alice")
    pair = api.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json").json()
    assert with_bearer(pair["access"]).get(ME).status_code == 200
    alice.set_password("a-new-long-password-7")
    alice.save()
    plain_error(with_bearer(pair["access"]).get(ME), 401)
    assert (
        "password has changed"
        in plain_error(api.post(REFRESH, {"refresh": pair["refresh"]}, format="json"), 401)["detail"]
    )
    fresh = api.post(TOKEN, {"username": "alice", "password": "a-new-long-password-7"}, format="json").json()
    assert with_bearer(fresh["access"]).get(ME).status_code == 200
    assert api.post(REFRESH, {"refresh": fresh["refresh"]}, format="json").status_code == 200


def test_a_garbage_refresh_token_answers_401_with_a_detail(api):
    response = api.post(REFRESH, {"refresh": "garbage"}, format="json")
    plain_error(response, 401)


def test_an_access_token_is_not_accepted_as_a_refresh_token(api, make_user):
    make_user("alice")
    access = api.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json").json()["access"]
    response = api.post(REFRESH, {"refresh": access}, format="json")
    plain_error(response, 401)


def test_a_refresh_token_is_not_accepted_as_an_access_token(api, make_user):
    make_user("alice")
    refresh = api.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json").json()["refresh"]
    response = with_bearer(refresh).get(ME)
    plain_error(response, 401)


def test_a_refresh_request_without_a_token_answers_400_naming_refresh(api):
    response = api.post(REFRESH, {}, format="json")
    field_error(response, "refresh")


@pytest.mark.parametrize("header", ["Bearer garbage", "Bearer ", "Token abc"])
def test_a_bad_authorization_header_answers_401_with_a_detail(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    plain_error(client.get(ME), 401)


def test_an_expired_access_token_answers_401_with_a_detail(make_user):
    user = make_user("alice")
    token = AccessToken.for_user(user)
    token.set_exp(from_time=timezone.now() - timedelta(days=1))
    plain_error(with_bearer(str(token)).get(ME), 401)


def test_an_unauthenticated_api_call_gets_a_bearer_challenge(api):
    response = api.get(ME)
    plain_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_token_of_a_deleted_user_answers_401(api_as, make_user):
    user = make_user("alice")
    client = api_as(user)
    user.delete()
    plain_error(client.get(ME), 401)
