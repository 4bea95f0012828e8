"""Game metrics derived from the events of a transition (the engine knows nothing of them).

services._after() hands every transition's events here, whichever path caused it (a
frame, a timer, the sweeper), so each game fact is counted once, where it happened; a
round's close lag and log line wait for its result's broadcast (`round_published`).
"""

from __future__ import annotations

import logging
from typing import Any

from game.engine.model import ABANDONED, TRIGGER_DEADLINE, Room
from game.telemetry import metrics, tracing

logger = logging.getLogger("game.flow")
_MODES = {True: "quick", False: "private"}


def transition_observe(room: Room, evts: list[dict[str, Any]]) -> None:
    """Count what these events say happened to the room."""
    for event in evts:
        kind = event["type"]
        if kind == "game_started":
            metrics.GAMES_STARTED.labels(mode=_MODES[room.quick]).inc()
            logger.info(
                "game started: %s players, %s rounds",
                len(room.players),
                event["rounds"],
                extra={"event": "game_started", "room": room.code, "mode": _MODES[room.quick]},
            )
            if room.quick and room.started_at is not None:
                for player in room.players:
                    if player.joined_at is not None:
                        metrics.MATCHMAKING_WAIT.observe(max(0, room.started_at - player.joined_at) / 1000)
        elif kind == "round_result":
            _round_closed(room, event)
        elif kind == "game_over":
            metrics.GAMES_FINISHED.labels(outcome="completed").inc()
            logger.info(
                "game finished", extra={"event": "game_finished", "room": room.code, "outcome": "completed"}
            )


def _round_closed(room: Room, event: dict[str, Any]) -> None:
    rnd = room.round
    if rnd is None or rnd.number != event["round"]:
        return
    metrics.ROUNDS_CLOSED.labels(trigger=rnd.trigger or TRIGGER_DEADLINE).inc()
    for result in event["results"]:
        if result["option"] is None:
            metrics.ANSWERS.labels(outcome="missing").inc()
            continue
        metrics.ANSWERS.labels(outcome="correct" if result["correct"] else "wrong").inc()
    for answer in rnd.answers.values():
        metrics.ANSWER_TIME.observe(answer.elapsed_ms / 1000)


def round_published(room: Room, event: dict[str, Any], *, now: int) -> None:
    """A round's result has gone out (its broadcast sent): its close lag, and its log line.

    The lag runs to the broadcast, not to the change of state before it: a slow channel
    layer delays what players see, and shows here (GAME.md: the result goes out within
    250 ms of the deadline).
    """
    rnd = room.round
    if rnd is None or rnd.number != event["round"]:
        return
    trigger = rnd.trigger or TRIGGER_DEADLINE
    lag_ms = max(0, now - rnd.deadline)
    if trigger == TRIGGER_DEADLINE:
        # The lag is when the result really went out (now), not the close time the engine
        # recorded (clamped to the deadline for scoring).
        metrics.ROUND_CLOSE_LAG.observe(lag_ms / 1000, exemplar=tracing.exemplar())
    logger.info(
        "round %s closed (%s)",
        rnd.number,
        trigger,
        extra={
            "event": "round_closed",
            "room": room.code,
            "round": rnd.number,
            "trigger": trigger,
            "lag_ms": lag_ms if trigger == TRIGGER_DEADLINE else None,
        },
    )


def abandon_observe(room: Room, *, was_playing: bool) -> None:
    """Count a game that ended because everyone left."""
    if room.status == ABANDONED and was_playing:
        metrics.GAMES_FINISHED.labels(outcome="abandoned").inc()
        logger.info(
            "game abandoned", extra={"event": "game_finished", "room": room.code, "outcome": "abandoned"}
        )
