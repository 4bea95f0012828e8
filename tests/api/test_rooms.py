"""POST /api/rooms/ and GET /api/rooms/<CODE>/."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from game import services, store
from game.models import Category, GameResult, Question
from tests.api.conftest import field_error, is_room_code, plain_error
from tests.play import correct_option, wrong_option

pytestmark = pytest.mark.django_db(transaction=True)

ROOMS = "/api/rooms/"
DEFAULTS = {"rounds": 5, "answer_seconds": 10, "reveal_seconds": 3, "max_players": 8, "category": None}


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def client(api_as, alice):
    return api_as(alice)


def create(client, body: Any):
    return client.post(ROOMS, data=json.dumps(body), content_type="application/json")


def tiny_category(count: int) -> Category:
    """A category with `count` questions."""
    category = Category.objects.create(slug="tiny", name="Tiny")
    for i in range(count):
        Question.objects.create(
            category=category, text=f"Tiny question {i}?", options=["a", "b", "c", "d"], correct=i % 4
        )
    return category


def keys_anywhere(value: Any) -> set[str]:
    """Every object key in a JSON value, at any depth."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_anywhere(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_anywhere(v)}
    return set()


# --- Creating a room ----------------------------------------------------------------------------


def test_creating_a_room_answers_201_with_code_ws_url_and_default_settings(client, questions):
    response = create(client, {})
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"code", "ws_url", "settings"}
    assert is_room_code(body["code"]), body["code"]
    assert body["ws_url"] == f"ws://testserver/ws/rooms/{body['code']}/"
    assert body["settings"] == DEFAULTS


def test_room_codes_differ_between_rooms(client, questions):
    codes = {create(client, {}).json()["code"] for _ in range(5)}
    assert len(codes) == 5
    assert all(is_room_code(c) for c in codes)


def test_the_ws_url_uses_the_host_the_client_asked_for(client, questions):
    response = client.post(ROOMS, data="{}", content_type="application/json", HTTP_HOST="localhost")
    assert response.status_code == 201, response.content
    code = response.json()["code"]
    assert response.json()["ws_url"] == f"ws://localhost/ws/rooms/{code}/"


def test_the_ws_url_is_wss_on_a_secure_request(client, questions):
    response = client.post(ROOMS, data="{}", content_type="application/json", secure=True)
    assert response.status_code == 201, response.content
    code = response.json()["code"]
    assert response.json()["ws_url"] == f"wss://testserver/ws/rooms/{code}/"


def test_the_creator_hosts_the_stored_room_with_the_settings_asked_for(client, alice, questions):
    asked = {"rounds": 7, "answer_seconds": 2.5, "reveal_seconds": 0, "max_players": 3, "category": None}
    response = create(client, asked)
    assert response.status_code == 201, response.content
    assert response.json()["settings"] == asked
    room = async_to_sync(store.room_get)(response.json()["code"])
    assert room.host == alice.pk
    assert room.status == "lobby"
    assert room.settings.rounds == 7 and room.settings.answer_seconds == 2.5
    assert room.settings.reveal_seconds == 0 and room.settings.max_players == 3


def test_settings_may_be_nested_under_settings(client, questions):
    response = create(client, {"settings": {"rounds": 3, "max_players": 2}})
    assert response.status_code == 201, response.content
    assert response.json()["settings"] == {**DEFAULTS, "rounds": 3, "max_players": 2}


def test_nested_settings_are_validated_too(client, questions):
    field_error(create(client, {"settings": {"rounds": 21}}), "rounds")


def test_settings_that_are_not_an_object_are_refused_with_400(client, questions):
    field_error(create(client, {"settings": [1, 2]}), "settings")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rounds", 1),
        ("rounds", 20),
        ("answer_seconds", 0.5),
        ("answer_seconds", 60),
        ("answer_seconds", 7.25),
        ("reveal_seconds", 0),
        ("reveal_seconds", 10),
        ("reveal_seconds", 1.5),
        ("max_players", 1),
        ("max_players", 8),
    ],
)
def test_every_setting_accepts_its_bounds(client, questions, field, value):
    response = create(client, {field: value})
    assert response.status_code == 201, response.content
    assert response.json()["settings"] == {**DEFAULTS, field: value}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rounds", 0),
        ("rounds", 21),
        ("rounds", -1),
        ("rounds", 2.5),
        ("rounds", "5"),
        ("rounds", True),
        ("rounds", None),
        ("answer_seconds", 0.4),
        ("answer_seconds", 60.5),
        ("answer_seconds", 0),
        ("answer_seconds", "10"),
        ("answer_seconds", True),
        ("reveal_seconds", -1),
        ("reveal_seconds", 10.5),
        ("reveal_seconds", "3"),
        ("reveal_seconds", False),
        ("max_players", 0),
        ("max_players", 9),
        ("max_players", 4.5),
        ("max_players", "4"),
        ("max_players", True),
        ("max_players", [4]),
        ("category", 5),
        ("category", ""),
        ("category", ["history"]),
        ("category", "a\u0000b"),  # PostgreSQL refuses a NUL in a query: was a 500
        ("category", "x" * 51),
    ],
)
def test_out_of_range_or_mistyped_settings_are_refused_with_400_naming_the_field(
    client, questions, field, value
):
    field_error(create(client, {field: value}), field)


def test_the_first_refused_setting_is_named_even_among_valid_ones(client, questions):
    field_error(create(client, {"rounds": 3, "max_players": 9, "reveal_seconds": 1}), "max_players")


def test_every_refused_setting_is_named_so_a_client_fixes_them_at_once(client, questions):
    body = field_error(create(client, {"reveal_seconds": 11, "max_players": 0, "colour": "red"}), "colour")
    assert body["errors"] == {
        "colour": ["unknown setting"],
        "reveal_seconds": ["must be between 0 and 10"],
        "max_players": ["must be between 1 and 8"],
    }


@pytest.mark.parametrize("number", ["1e999", "NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["answer_seconds", "rounds"])
def test_an_infinite_number_is_refused_naming_the_field(client, questions, number, field):
    # NaN and Infinity (not JSON) were a parse error naming no field (a GAME.md walk-through).
    response = client.post(ROOMS, data=f'{{"{field}": {number}}}', content_type="application/json")
    field_error(response, field)


@pytest.mark.parametrize("field", ["rounds", "answer_seconds", "reveal_seconds", "max_players"])
def test_a_huge_integer_is_refused_naming_the_field(client, questions, field):
    huge = "9" * 400
    response = client.post(ROOMS, data=f'{{"{field}": {huge}}}', content_type="application/json")
    field_error(response, field)


def test_an_unknown_setting_is_refused_naming_it(client, questions):
    field_error(create(client, {"round": 3}), "round")


def test_an_unknown_category_is_refused_with_400_naming_category(client, questions):
    field_error(create(client, {"category": "no-such-category"}), "category")


def test_an_unknown_category_is_named_beside_the_other_refused_settings(client, questions):
    # protocol.md: a 400 names every refused field, so that a client fixes them all at once;
    # the unknown category went unnamed until the other fields were fixed (a README walk).
    body = field_error(create(client, {"rounds": 0, "category": "no-such-category"}), "rounds")
    assert body["errors"] == {
        "rounds": ["must be between 1 and 20"],
        "category": ["unknown category 'no-such-category'"],
    }


def test_a_known_category_is_accepted(client, questions):
    slug = Category.objects.order_by("slug").first().slug
    response = create(client, {"category": slug})
    assert response.status_code == 201, response.content
    assert response.json()["settings"]["category"] == slug


def test_a_category_slug_in_another_case_names_no_category(client, questions):
    # MariaDB's case-insensitive collation took "SCIENCE" for "science" (PostgreSQL: 400), and
    # the room's settings then named a slug no category has.
    slug = Category.objects.order_by("slug").first().slug
    field_error(create(client, {"category": slug.upper()}), "category")


def test_a_category_with_fewer_questions_than_rounds_is_refused_with_400(client):
    tiny_category(2)
    field_error(create(client, {"category": "tiny", "rounds": 3}), "category")


def test_a_category_with_exactly_as_many_questions_as_rounds_is_accepted(client):
    tiny_category(2)
    response = create(client, {"category": "tiny", "rounds": 2})
    assert response.status_code == 201, response.content
    assert response.json()["settings"] == {**DEFAULTS, "category": "tiny", "rounds": 2}


def test_any_category_with_too_small_a_question_bank_is_refused_with_400_naming_rounds(client):
    tiny_category(2)
    field_error(create(client, {"rounds": 3}), "rounds")


def test_a_refused_room_is_not_stored(client, questions, redis_prefix):
    import redis
    from django.conf import settings

    field_error(create(client, {"rounds": 0}), "rounds")
    conn = redis.Redis.from_url(settings.REDIS_URL)
    try:
        assert list(conn.scan_iter(match=f"{redis_prefix}room:*")) == []
    finally:
        conn.close()


@pytest.mark.parametrize("raw", ["[]", "[1, 2]", '"rounds"', "5", "null", "true"])
def test_a_body_that_is_not_a_json_object_is_refused_with_400(client, questions, raw):
    response = client.post(ROOMS, data=raw, content_type="application/json")
    plain_error(response, 400)


def test_a_body_that_is_not_json_is_refused_with_400(client, questions):
    response = client.post(ROOMS, data="{rounds: 3", content_type="application/json")
    plain_error(response, 400)


def test_creating_a_room_without_authentication_answers_401_with_a_detail(api, questions):
    response = create(api, {})
    plain_error(response, 401)


# --- Room summary -------------------------------------------------------------------------------


def test_the_summary_of_a_new_room_shows_its_code_lobby_host_players_and_settings(client, alice, questions):
    code = create(client, {"rounds": 4, "max_players": 6}).json()["code"]
    response = client.get(f"{ROOMS}{code}/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["code"] == code
    assert body["status"] == "lobby"
    assert body["host"] == alice.pk
    assert body["players"] == []
    assert body["settings"] == {**DEFAULTS, "rounds": 4, "max_players": 6}
    assert body["ws_url"] == f"ws://testserver/ws/rooms/{code}/"


def test_the_summary_is_readable_by_another_logged_in_player(client, api_as, make_user, questions):
    code = create(client, {}).json()["code"]
    response = api_as(make_user("bob")).get(f"{ROOMS}{code}/")
    assert response.status_code == 200, response.content
    assert response.json()["code"] == code


def test_a_lower_case_code_finds_the_room(client, questions):
    code = create(client, {}).json()["code"]
    response = client.get(f"{ROOMS}{code.lower()}/")
    assert response.status_code == 200, response.content
    assert response.json()["code"] == code


def test_an_unknown_room_answers_404_with_a_detail(client, questions):
    code = create(client, {}).json()["code"]
    other = "ABCDEF" if code != "ABCDEF" else "GHJKLM"
    plain_error(client.get(f"{ROOMS}{other}/"), 404)


@pytest.mark.parametrize("code", ["ABC", "ABCDEFG", "ABCDE1", "ABCDEO", "ABCDEI", "ABC-EF", "%C3%84BCDEF"])
def test_a_malformed_code_answers_404_with_a_detail(client, code):
    plain_error(client.get(f"{ROOMS}{code}/"), 404)


def test_the_summary_needs_authentication(api, client, questions):
    code = create(client, {}).json()["code"]
    plain_error(api.get(f"{ROOMS}{code}/"), 401)


def test_the_summary_of_a_game_in_play_reveals_no_correct_answer_or_question_plan(
    api_as, make_user, questions, timers
):
    # Four players in a room, its game started with round 1 open.
    users = [make_user(f"p{i}") for i in range(4)]
    code = api_as(users[0]).post(ROOMS, {}, format="json").json()["code"]
    for u in users:
        async_to_sync(services.room_connect)(code=code, user_id=u.pk, name=u.username, conn=f"web|{u.pk}")
    async_to_sync(services.game_start)(code=code, by=users[0].pk)
    room = async_to_sync(store.room_get)(code)
    assert room.status == "playing" and room.round is not None and room.plan

    response = api_as(users[0]).get(f"{ROOMS}{code}/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "playing"
    assert {p["id"] for p in body["players"]} == {u.pk for u in users}
    leaky = {"correct", "correct_option", "plan", "question", "questions", "answers", "options"}
    assert keys_anywhere(body) & leaky == set()
    text = response.content.decode()
    for q in room.plan:
        assert q.text not in text


def test_the_summary_has_no_standings_until_the_game_has_finished_then_those_stored(
    api_as, make_user, questions, timers
):
    alice, bob = make_user("alice"), make_user("bob")
    code = api_as(alice).post(ROOMS, {"rounds": 1}, format="json").json()["code"]
    for u in (alice, bob):
        async_to_sync(services.room_connect)(code=code, user_id=u.pk, name=u.username, conn=f"web|{u.pk}")
    assert api_as(bob).get(f"{ROOMS}{code}/").json()["standings"] is None
    async_to_sync(services.game_start)(code=code, by=alice.pk)
    assert api_as(bob).get(f"{ROOMS}{code}/").json()["standings"] is None
    # bob right, alice wrong: bob ranks first though alice joined first.
    for u, pick in ((bob, correct_option), (alice, wrong_option)):
        option = async_to_sync(pick)(code)
        async_to_sync(services.answer_submit)(code=code, user_id=u.pk, round_number=1, option=option)

    body = api_as(bob).get(f"{ROOMS}{code}/").json()
    assert body["status"] == "finished"
    standings = body["standings"]
    assert [(s["player"], s["name"], s["rank"], s["correct"]) for s in standings] == [
        (bob.pk, "bob", 1, 1),
        (alice.pk, "alice", 2, 0),
    ]
    stored = {r.user_id: (r.score, r.rank, r.correct) for r in GameResult.objects.all()}
    assert {s["player"]: (s["score"], s["rank"], s["correct"]) for s in standings} == stored
    assert standings[0]["score"] > 500 and standings[1]["score"] == 0
