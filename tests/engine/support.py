"""Builders for engine tests: rooms, players and questions, with a fixed clock and seed."""

from __future__ import annotations

import random
from typing import Any

from game.engine import rules
from game.engine.model import QuestionData, Room

T0 = 1_700_000_000_000
CODE = "ABC234"
HOST = 1


def make_questions(count: int, *, first_id: int = 1) -> list[QuestionData]:
    """`count` distinct questions whose correct option varies."""
    return [
        QuestionData(
            id=qid,
            text=f"Question {qid}?",
            options=[f"q{qid}-opt{i}" for i in range(4)],
            correct=qid % 4,
        )
        for qid in range(first_id, first_id + count)
    ]


def new_room(*, quick: bool = False, now: int = T0, host: int | None = HOST, **settings: Any) -> Room:
    """A lobby with validated settings and nobody in it."""
    return rules.room_new(
        code=CODE, host=host, settings=rules.settings_validate(settings), now=now, quick=quick
    )


def name_of(player_id: int) -> str:
    return f"player{player_id}"


def conn_of(player_id: int, n: int = 0) -> str:
    return f"inst|chan-{player_id}-{n}"


def join(room: Room, *player_ids: int, now: int = T0) -> list[rules.Event]:
    """Connect each player once (making them members), in order."""
    events: list[rules.Event] = []
    for pid in player_ids:
        events += rules.connect(room, player_id=pid, name=name_of(pid), conn=conn_of(pid), now=now)
    return events


def leave(room: Room, player_id: int, *, now: int = T0, n: int = 0) -> list[rules.Event]:
    """Close one connection of a player."""
    return rules.disconnect(room, player_id=player_id, conn=conn_of(player_id, n), now=now)


def start_game(room: Room, *, now: int = T0, seed: int = 0, by: int | None = HOST) -> list[rules.Event]:
    return rules.start(
        room,
        by=by,
        questions=make_questions(room.settings.rounds),
        game_id="game-1",
        rng=random.Random(seed),
        now=now,
    )


def playing_room(*player_ids: int, now: int = T0, seed: int = 0, **settings: Any) -> Room:
    """A started game (round 1 open) whose players are all connected; the first is the host."""
    ids = player_ids or (HOST, 2)
    room = new_room(host=ids[0], now=now, **settings)
    join(room, *ids, now=now)
    start_game(room, now=now, seed=seed, by=ids[0])
    return room


def right(room: Room) -> int:
    """The correct option of the current round."""
    assert room.round is not None
    return room.round.correct


def wrong(room: Room) -> int:
    """An incorrect option of the current round."""
    assert room.round is not None
    return (room.round.correct + 1) % 4


def answer(room: Room, player_id: int, option: int, *, now: int, round_number: int | None = None):
    """Submit an answer for the current round (or the given one)."""
    assert room.round is not None
    number = room.round.number if round_number is None else round_number
    return rules.answer(room, player_id=player_id, round_number=number, option=option, now=now)


def assert_seq_follows(events: list[rules.Event], previous: int) -> None:
    """Each event carries the previous seq plus one."""
    assert [e["seq"] for e in events] == list(range(previous + 1, previous + 1 + len(events)))
