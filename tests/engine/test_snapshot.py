"""The `state` frame a player receives on connect and `sync`."""

from __future__ import annotations

import json
import random

from game.engine import rules
from game.engine.model import TRIGGER_DEADLINE
from tests.engine.support import (
    CODE,
    HOST,
    T0,
    answer,
    join,
    leave,
    new_room,
    playing_room,
    right,
    start_game,
)

SECRET_KEYS = {"correct", "correct_option", "plan", "answers", "conns", "trigger"}


def all_keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


def all_snapshots_of_a_game():
    """Snapshots for both players at each stage of a two-round game."""
    room = new_room(rounds=2, reveal_seconds=1)
    join(room, HOST, 2)
    yield room, rules.snapshot(room, player_id=HOST, now=T0)
    start_game(room, now=T0, seed=3)
    answer(room, HOST, right(room), now=T0 + 100)
    for pid in (HOST, 2):
        yield room, rules.snapshot(room, player_id=pid, now=T0 + 101)
    rules.round_close(room, now=T0 + 200, trigger=TRIGGER_DEADLINE)
    yield room, rules.snapshot(room, player_id=2, now=T0 + 201)
    rules.round_advance(room, rng=random.Random(3), now=T0 + 1_200)
    yield room, rules.snapshot(room, player_id=2, now=T0 + 1_201)
    rules.round_close(room, now=T0 + 1_300, trigger=TRIGGER_DEADLINE)
    yield room, rules.snapshot(room, player_id=2, now=T0 + 1_301)


def test_a_snapshot_never_contains_an_open_rounds_correct_option_or_the_plan():
    count = 0
    for _, state in all_snapshots_of_a_game():
        # A closed round's result is public (it was broadcast): only then is there one.
        public = {k: v for k, v in state.items() if k != "result"}
        assert not all_keys(public) & SECRET_KEYS, state
        assert state["result"] is None or state["question"] is None, state
        json.dumps(state)
        count += 1
    assert count == 6


def test_a_lobby_snapshot_has_no_round_and_no_question():
    room = new_room(rounds=3)
    join(room, HOST, 2)
    leave(room, 2)
    state = rules.snapshot(room, player_id=HOST, now=T0 + 42)
    assert state == {
        "type": "state",
        "room": CODE,
        "status": "lobby",
        "settings": {
            "rounds": 3,
            "answer_seconds": 10.0,
            "reveal_seconds": 3.0,
            "max_players": 8,
            "category": None,
        },
        "host": HOST,
        "quick": False,
        "players": [
            {"id": HOST, "name": "player1", "connected": True, "score": 0},
            {"id": 2, "name": "player2", "connected": False, "score": 0},
        ],
        "round": None,
        "question": None,
        "result": None,
        "starts_at": None,
        "seq": room.seq,
        "server_time": T0 + 42,
    }


def test_an_open_round_shows_its_question_and_whether_this_player_answered():
    room = playing_room(HOST, 2)
    answer(room, HOST, right(room), now=T0 + 100)
    mine = rules.snapshot(room, player_id=HOST, now=T0 + 101)
    theirs = rules.snapshot(room, player_id=2, now=T0 + 101)
    assert mine["status"] == "playing"
    assert mine["round"] == 1
    assert mine["question"] == {
        "text": room.round.text,
        "options": room.round.options,
        "deadline": room.round.deadline,
        "answered": True,
        "option": right(room),
    }
    assert theirs["question"]["answered"] is False and theirs["question"]["option"] is None
    assert mine["seq"] == theirs["seq"] == room.seq


def test_a_closed_round_keeps_its_number_and_shows_its_result_instead_of_a_question():
    room = playing_room(HOST, 2, rounds=2)
    answer(room, 2, right(room), now=T0 + 100)
    (result,) = rules.round_close(room, now=T0 + 200, trigger=TRIGGER_DEADLINE)
    state = rules.snapshot(room, player_id=HOST, now=T0 + 201)
    assert state["round"] == 1
    assert state["question"] is None
    # What a player reconnecting in the reveal pause missed: the round_result's fields.
    fields = {k: v for k, v in result.items() if k not in ("type", "seq")}
    assert state["result"] == {**fields, "text": room.round.text, "options": room.round.options}


def test_a_quick_match_lobby_says_when_it_starts_by_itself():
    room = new_room(quick=True, max_players=4)
    join(room, HOST)
    assert rules.snapshot(room, player_id=HOST, now=T0)["starts_at"] is None
    join(room, 2)
    assert room.next_at is not None
    assert rules.snapshot(room, player_id=2, now=T0)["starts_at"] == room.next_at


def test_a_finished_game_shows_final_scores_and_no_question():
    room = playing_room(HOST, 2, rounds=1)
    answer(room, HOST, right(room), now=T0)
    answer(room, 2, right(room), now=room.round.deadline)
    state = rules.snapshot(room, player_id=2, now=T0 + 10)
    assert state["status"] == "finished"
    assert state["question"] is None
    assert [(p["id"], p["score"]) for p in state["players"]] == [(HOST, 1000), (2, 500)]


def test_an_abandoned_game_shows_no_question():
    room = playing_room(HOST, 2)
    rules.abandon(room, now=T0 + 1)
    state = rules.snapshot(room, player_id=2, now=T0 + 2)
    assert state["status"] == "abandoned"
    assert state["question"] is None


def test_the_snapshot_players_carry_connected_flags_in_join_order():
    room = playing_room(HOST, 2, 3)
    leave(room, 2)
    state = rules.snapshot(room, player_id=3, now=T0)
    assert [(p["id"], p["connected"]) for p in state["players"]] == [(HOST, True), (2, False), (3, True)]


def test_a_snapshot_changes_nothing_in_the_room():
    room = playing_room(HOST, 2)
    before = rules.snapshot(room, player_id=HOST, now=T0)
    seq = room.seq
    rules.snapshot(room, player_id=2, now=T0)
    assert room.seq == seq
    assert rules.snapshot(room, player_id=HOST, now=T0) == before
