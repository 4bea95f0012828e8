"""POST /api/matchmaking/: quick match into rooms of up to 4."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync

from game import scheduler, store
from tests.api.conftest import is_room_code, plain_error

pytestmark = pytest.mark.django_db(transaction=True)

MATCH = "/api/matchmaking/"
QUICK_DEFAULTS = {"rounds": 5, "answer_seconds": 10, "reveal_seconds": 3, "max_players": 4, "category": None}


def place(api_as, user) -> dict:
    response = api_as(user).post(MATCH)
    assert response.status_code in (200, 201), response.content
    return response.json()


def test_quick_match_answers_a_room_code_and_its_ws_url(api_as, make_user, questions, timers):
    body = place(api_as, make_user("alice"))
    assert set(body) == {"code", "ws_url"}
    assert is_room_code(body["code"])
    assert body["ws_url"] == f"ws://testserver/ws/rooms/{body['code']}/"


def holders(code: str) -> list[int]:
    """The players a room holds seats for: placed by matchmaking, not connected yet."""
    return [player_id for player_id, _ in async_to_sync(store.room_get)(code).held]


def test_a_quick_match_room_has_the_default_settings_but_four_players(api_as, make_user, questions, timers):
    alice = make_user("alice")
    code = place(api_as, alice)["code"]
    summary = api_as(alice).get(f"/api/rooms/{code}/").json()
    assert summary["settings"] == QUICK_DEFAULTS
    assert summary["status"] == "lobby"
    # A member from the first connection (GAME.md); until then the room holds a seat.
    assert summary["players"] == [] and holders(code) == [alice.pk]


def test_two_players_share_a_quick_match_room(api_as, make_user, questions, timers):
    alice, bob = make_user("alice"), make_user("bob")
    first = place(api_as, alice)["code"]
    second = place(api_as, bob)["code"]
    assert first == second
    assert holders(first) == [alice.pk, bob.pk]
    assert async_to_sync(store.room_get)(first).status == "lobby"


def test_placements_arm_no_start_timer_the_second_member_to_connect_does(
    api_as, make_user, questions, timers
):
    code = place(api_as, make_user("alice"))["code"]
    place(api_as, make_user("bob"))
    assert [t for t in timers if t[0] == scheduler.QUICKMATCH_AUTOSTART] == []
    assert async_to_sync(store.room_get)(code).next_at is None


def test_four_placements_fill_the_seats_of_a_room_but_do_not_start_it(api_as, make_user, questions, timers):
    users = [make_user(f"p{i}") for i in range(4)]
    codes = [place(api_as, u)["code"] for u in users]
    assert len(set(codes)) == 1
    room = async_to_sync(store.room_get)(codes[0])
    assert room.status == "lobby" and room.players == []
    assert holders(codes[0]) == [u.pk for u in users]


def test_the_fifth_player_gets_a_new_room(api_as, make_user, questions, timers):
    users = [make_user(f"p{i}") for i in range(5)]
    codes = [place(api_as, u)["code"] for u in users]
    assert len(set(codes[:4])) == 1
    assert codes[4] != codes[0]
    assert async_to_sync(store.room_get)(codes[4]).status == "lobby"
    assert holders(codes[4]) == [users[4].pk]


def test_the_same_player_twice_gets_the_same_room_and_is_counted_once(api_as, make_user, questions, timers):
    alice = make_user("alice")
    first = place(api_as, alice)["code"]
    again = place(api_as, alice)["code"]
    assert first == again
    assert holders(first) == [alice.pk]


def test_a_player_placed_again_does_not_take_a_second_seat(api_as, make_user, questions, timers):
    users = [make_user(f"p{i}") for i in range(3)]
    codes = [place(api_as, u)["code"] for u in users]
    codes.append(place(api_as, users[0])["code"])  # asks again: must not fill the 4th seat
    assert len(set(codes)) == 1
    assert sorted(holders(codes[0])) == sorted(u.pk for u in users)
    fourth = make_user("p3")
    assert place(api_as, fourth)["code"] == codes[0]


def test_quick_match_does_not_place_players_in_a_private_room(api_as, make_user, questions, timers):
    alice = make_user("alice")
    private = api_as(alice).post("/api/rooms/", {}, format="json").json()["code"]
    assert place(api_as, make_user("bob"))["code"] != private


def test_quick_match_without_authentication_answers_401_with_a_detail(api, questions, timers):
    plain_error(api.post(MATCH), 401)


def test_quick_match_answers_503_with_retry_after_while_placements_hold_the_way(
    api_as, make_user, questions, timers
):
    client = api_as(make_user("alice"))

    async def hold_and_ask() -> object:
        # Another process's placement holds the lock for longer than anyone waits (10 s).
        held = store.client().lock(store.key("quick", "lock"), timeout=30)
        assert await held.acquire(blocking=False)
        try:
            return await asyncio.to_thread(client.post, MATCH)
        finally:
            await held.release()

    response = async_to_sync(hold_and_ask)()
    plain_error(response, 503)
    assert response["Retry-After"] == "1"
    assert async_to_sync(store.quick_candidates)() == []  # nothing placed
