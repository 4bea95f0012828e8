"""Rooms are stored as JSON; the stored shape carries a format version."""

from __future__ import annotations

import json
import random

import pytest

from game.engine import rules
from game.engine.model import FORMAT_VERSION, room_from_dict, room_to_dict
from tests.engine.support import HOST, T0, answer, join, leave, new_room, playing_room, right, wrong


def through_json(room):
    return room_from_dict(json.loads(json.dumps(room_to_dict(room))))


def lobby():
    room = new_room(quick=True, max_players=4, answer_seconds=2.5, category="science")
    join(room, HOST, 2)
    leave(room, 2, now=T0 + 5)
    return room


def mid_round():
    room = playing_room(HOST, 2, 3, rounds=3)
    answer(room, HOST, right(room), now=T0 + 1_000)
    answer(room, 3, wrong(room), now=T0 + 2_000)
    return room


def revealing():
    room = mid_round()
    answer(room, 2, right(room), now=T0 + 3_000)
    return room


def finished():
    room = playing_room(HOST, 2, rounds=1)
    answer(room, HOST, right(room), now=T0 + 1)
    answer(room, 2, wrong(room), now=T0 + 2)
    room.results_stored = True
    return room


@pytest.mark.parametrize("build", [lobby, mid_round, revealing, finished])
def test_a_room_survives_a_round_trip_through_json_unchanged(build):
    room = build()
    again = through_json(room)
    assert again == room
    assert room_to_dict(again) == room_to_dict(room)


def test_the_answers_of_the_round_come_back_keyed_by_integer_player_id():
    room = mid_round()
    data = room_to_dict(room)
    assert set(data["round"]["answers"]) == {str(HOST), "3"}
    again = through_json(room)
    assert set(again.round.answers) == {HOST, 3}
    assert again.round.answers[HOST] == room.round.answers[HOST]


def test_serialising_does_not_change_the_room():
    room = mid_round()
    room_to_dict(room)
    assert set(room.round.answers) == {HOST, 3}


def test_the_stored_shape_carries_the_format_version():
    assert room_to_dict(lobby())["v"] == FORMAT_VERSION


@pytest.mark.parametrize("version", [None, 0, FORMAT_VERSION + 1, str(FORMAT_VERSION)])
def test_a_room_in_another_format_version_is_refused(version):
    data = room_to_dict(mid_round())
    data["v"] = version
    with pytest.raises(ValueError, match="format"):
        room_from_dict(data)


def test_a_room_without_a_format_version_is_refused():
    data = room_to_dict(lobby())
    del data["v"]
    with pytest.raises(ValueError):
        room_from_dict(data)


def test_room_from_dict_does_not_consume_its_input():
    data = json.loads(json.dumps(room_to_dict(mid_round())))
    copy = json.loads(json.dumps(data))
    room_from_dict(data)
    assert data == copy


def test_fields_a_newer_release_added_are_ignored_at_every_level():
    # During a rolling deploy an older process reads rooms a newer one wrote.
    original = mid_round()
    data = json.loads(json.dumps(room_to_dict(original)))
    data["new_room_field"] = [1]
    data["settings"]["new_setting"] = True
    data["players"][0]["new_player_field"] = "x"
    data["plan"][0]["new_question_field"] = 0
    data["round"]["new_round_field"] = None
    next(iter(data["round"]["answers"].values()))["new_answer_field"] = 2
    copy = json.loads(json.dumps(data))
    assert room_from_dict(data) == original
    assert data == copy  # the input is left as it was


def test_a_game_continues_identically_after_a_round_trip():
    original = mid_round()
    restored = through_json(original)
    for room in (original, restored):
        answer(room, 2, right(room), now=T0 + 3_000)
        rules.round_advance(room, rng=random.Random(9), now=room.next_at)
        answer(room, HOST, right(room), now=room.round.opened_at + 500)
    assert restored == original
