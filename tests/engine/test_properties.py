"""Properties over arbitrary sequences of valid operations during a game."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import event, given, settings
from hypothesis import strategies as st

from game.engine import rules
from game.engine.model import FINISHED, PLAYING, TRIGGER_DEADLINE, room_to_dict
from tests.engine.support import T0, make_questions

PLAYERS = (1, 2, 3)

answer_op = st.tuples(
    st.just("answer"),
    st.sampled_from(PLAYERS),
    st.sampled_from([0, 0, 0, 0, -1, 1]),  # round offset from the current one, mostly current
    st.integers(0, 3),
)
# Answers and advances are listed several times to weigh them: games then reach their end.
operation = st.one_of(
    answer_op,
    answer_op,
    answer_op,
    st.tuples(st.just("advance"), st.booleans()),  # True: at next_at; False: now
    st.tuples(st.just("advance"), st.just(True)),
    st.tuples(st.just("connect"), st.sampled_from(PLAYERS), st.integers(0, 1)),
    st.tuples(st.just("disconnect"), st.sampled_from(PLAYERS), st.integers(0, 1)),
    st.tuples(st.just("close"), st.booleans()),  # True: at the deadline; False: now
    st.tuples(st.just("tick"), st.integers(0, 800)),
    st.tuples(st.just("timer"), st.integers(0, 300)),  # the scheduler firing, a little late
    st.tuples(st.just("timer"), st.integers(0, 300)),
)


@settings(max_examples=200, deadline=None)
@given(
    n_players=st.integers(1, 3),
    rounds=st.integers(1, 4),
    answer_seconds=st.sampled_from([0.5, 1, 2.5, 10]),
    reveal_seconds=st.sampled_from([0, 1, 3]),
    seed=st.integers(0, 1_000),
    ops=st.lists(operation, min_size=10, max_size=80),
)
def test_no_sequence_of_operations_closes_a_round_twice_or_miscounts_scores(
    n_players, rounds, answer_seconds, reveal_seconds, seed, ops
):
    players = PLAYERS[:n_players]
    settings_ = rules.settings_validate(
        {"rounds": rounds, "answer_seconds": answer_seconds, "reveal_seconds": reveal_seconds}
    )
    room = rules.room_new(code="ABC234", host=1, settings=settings_, now=T0)
    rng = random.Random(seed)
    now = T0
    events: list[rules.Event] = []
    for pid in players:
        events += rules.connect(room, player_id=pid, name=f"p{pid}", conn=f"{pid}-0", now=now)
    events += rules.start(room, by=1, questions=make_questions(rounds), game_id="g", rng=rng, now=now)
    closed_at: dict[int, int] = {}

    for op in ops:
        kind = op[0]
        if kind in ("answer", "connect", "disconnect"):
            op = (kind, players[op[1] % n_players], *op[2:])
        if kind == "tick":
            now += op[1]
        elif kind == "connect":
            events += rules.connect(room, player_id=op[1], name=f"p{op[1]}", conn=f"{op[1]}-{op[2]}", now=now)
        elif kind == "disconnect":
            events += rules.disconnect(room, player_id=op[1], conn=f"{op[1]}-{op[2]}", now=now)
        elif kind == "answer":
            number = room.round.number + op[2]
            before = room_to_dict(room)
            outcome, caused = rules.answer(room, player_id=op[1], round_number=number, option=op[3], now=now)
            if not outcome.accepted:
                assert caused == []
                assert room_to_dict(room) == before
            events += caused
        elif kind == "close":
            if op[1] and room.round.is_open:
                now = max(now, room.round.deadline)
            events += rules.round_close(room, now=now, trigger=TRIGGER_DEADLINE)
        elif kind == "timer":
            if room.round.is_open:
                now = max(now, room.round.deadline + op[1])
                events += rules.round_close(room, now=now, trigger=TRIGGER_DEADLINE)
            elif room.next_at is not None:
                now = max(now, room.next_at + op[1])
                events += rules.round_advance(room, rng=rng, now=now)
        elif kind == "advance":
            if op[1] and room.next_at is not None:
                now = max(now, room.next_at)
            events += rules.round_advance(room, rng=rng, now=now)
        # A closed round never reopens or closes again.
        for number, when in closed_at.items():
            if number == room.round.number:
                assert room.round.closed_at == when
        if not room.round.is_open and room.round.number not in closed_at:
            closed_at[room.round.number] = room.round.closed_at
            event(f"a round closed by {room.round.trigger}")

    # Broadcast sequence: one more than the last, ending at room.seq.
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert room.seq == len(events)

    results = [e for e in events if e["type"] == "round_result"]
    per_round = Counter(e["round"] for e in results)
    assert all(count == 1 for count in per_round.values()), per_round
    assert sorted(per_round) == list(range(1, len(per_round) + 1))
    assert len([e for e in events if e["type"] == "question"]) in (len(results), len(results) + 1)

    # Every score is the sum of the points the results gave, and totals run along.
    for player in room.players:
        entries = [r for e in results for r in e["results"] if r["player"] == player.id]
        assert len(entries) == len(results)
        assert player.score == sum(r["points"] for r in entries)
        running = 0
        for r in entries:
            running += r["points"]
            assert r["total"] == running
            assert (r["points"] > 0) == r["correct"]
            assert r["option"] is not None or r["points"] == 0
        assert player.correct == sum(r["correct"] for r in entries)
        assert player.answered == sum(r["option"] is not None for r in entries)

    game_overs = [e for e in events if e["type"] == "game_over"]
    event(f"rounds closed: {len(results)}/{rounds}")
    if len(results) == rounds:
        assert room.status == FINISHED
        assert len(game_overs) == 1
        # game_over follows the last result at once (only joins and leaves may come after).
        over = events.index(game_overs[0])
        assert events[over - 1] is results[-1]
        assert all(e["type"] in ("player_joined", "player_left") for e in events[over + 1 :])
        assert game_overs[0]["standings"] == rules.standings(room)
    else:
        assert room.status == PLAYING
        assert game_overs == []
