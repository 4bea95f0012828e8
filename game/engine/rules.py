"""The rules of NuxTest as pure functions over `model.Room`.

Each transition mutates the room it is given and returns the broadcast events it caused,
each already numbered with the room's next `seq`. The caller loads the room, calls one
transition, and saves the room atomically; the clock (`now`, ms) and the random source
(`rng`) are always passed in.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from game.engine.model import (
    ABANDONED,
    CODE_ALPHABET,
    CODE_LENGTH,
    FINISHED,
    LOBBY,
    PLAYING,
    TRIGGER_ALL_ANSWERED,
    Answer,
    Player,
    QuestionData,
    Room,
    RoomSettings,
    Round,
)

Event = dict[str, Any]

SETTING_LIMITS: dict[str, tuple[float, float]] = {
    "rounds": (1, 20),
    "answer_seconds": (0.5, 60),
    "reveal_seconds": (0, 10),
    "max_players": (1, 8),
}
INTEGER_SETTINGS = {"rounds", "max_players"}
QUICK_MAX_PLAYERS = 4

# Answer refusal reasons (GAME.md, answer_ack).
WRONG_ROUND = "wrong_round"
ROUND_CLOSED = "round_closed"
ALREADY_ANSWERED = "already_answered"


class RuleError(Exception):
    """A request the rules refuse; `code` is the protocol's name for it."""

    code = "refused"


class SettingsError(RuleError):
    """Room settings out of their type or range: `errors` maps each bad field to its
    message; `field` and `message` are the first of them."""

    code = "invalid_field"

    def __init__(self, field: str, message: str, *, more: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.errors = {field: message, **(more or {})}


class RoomFull(RuleError):
    """The room has `max_players` members already."""

    code = "room_full"


class GameAlreadyStarted(RuleError):
    """The room is past its lobby and takes no new members."""

    code = "game_started"


class NotHost(RuleError):
    """Only the host may do this."""

    code = "not_host"


class NotInLobby(RuleError):
    """Only possible while the room is in its lobby."""

    code = "not_in_lobby"


class NotMember(RuleError):
    """The player is not a member of this room."""

    code = "not_member"


class NotEnoughQuestions(RuleError):
    """The question bank has fewer questions than the game needs."""

    code = "not_enough_questions"


@dataclass(frozen=True)
class AnswerOutcome:
    """What `answer_submit` tells the answering player (`answer_ack`)."""

    round: int
    accepted: bool
    reason: str | None = None

    def frame(self) -> dict[str, Any]:
        """The `answer_ack` frame for this outcome."""
        frame: dict[str, Any] = {"type": "answer_ack", "round": self.round, "accepted": self.accepted}
        if self.reason is not None:
            frame["reason"] = self.reason
        return frame


# --- Settings and codes ---------------------------------------------------------------------


_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,50}")


def settings_validate(raw: Mapping[str, Any]) -> RoomSettings:
    """Check a settings object (missing keys take defaults); raise SettingsError naming every
    bad field, so that a client fixes them all at once."""
    errors = {name: "unknown setting" for name in sorted(set(raw) - {*SETTING_LIMITS, "category"})}
    values: dict[str, Any] = {}
    for name, (low, high) in SETTING_LIMITS.items():
        if name not in raw:
            continue
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors[name] = "must be a number"
        # Range first: a huge JSON integer must be refused, not overflow a float.
        elif (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
            errors[name] = f"must be between {low:g} and {high:g}"
        elif name in INTEGER_SETTINGS and not float(value).is_integer():
            errors[name] = "must be a whole number"
        else:
            values[name] = int(value) if name in INTEGER_SETTINGS else float(value)
    category = raw.get("category")
    # A slug's own alphabet and length (Category.slug): anything else names no category,
    # and some of it (a NUL) no database would even take in a query.
    if category is not None and (not isinstance(category, str) or not _SLUG.fullmatch(category)):
        errors["category"] = "must be a category slug (letters, digits, - and _, at most 50) or null"
    if errors:
        (first, message), *rest = errors.items()
        raise SettingsError(first, message, more=dict(rest))
    values["category"] = category
    return RoomSettings(**values)


def code_generate(rng: random.Random) -> str:
    """A fresh room code of 6 characters from the unambiguous alphabet."""
    return "".join(rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def code_is_valid(code: str) -> bool:
    """True if `code` has the shape of a room code."""
    return len(code) == CODE_LENGTH and all(c in CODE_ALPHABET for c in code)


def room_new(*, code: str, host: int | None, settings: RoomSettings, now: int, quick: bool = False) -> Room:
    """A new room in its lobby; nobody is connected yet."""
    return Room(code=code, host=host, settings=settings, created_at=now, quick=quick, empty_since=now)


# Broadcasts a room keeps for the sweeper to publish again (Room.outbox): one transition
# makes at most three (player_joined, round_result and question; round_result and game_over).
OUTBOX_MAX = 4


def _emit(room: Room, now: int, type_: str, **payload: Any) -> Event:
    room.seq += 1
    event = {"type": type_, **payload, "seq": room.seq}
    room.outbox = [*room.outbox[-(OUTBOX_MAX - 1) :], event]
    room.outbox_at = now
    return event


def unpublished(room: Room, *, published: int, now: int, grace_ms: int) -> list[Event]:
    """The room's latest broadcasts that nobody marked published (their process died between
    its compare-and-set and its publish), once `grace_ms` old: the sweeper publishes them.

    `published` is the highest seq marked published. A connection forwards only frames
    above the last seq it sent, so publishing one twice (a slow publisher, not a dead one)
    reaches no player twice."""
    if room.outbox_at is None or now < room.outbox_at + grace_ms:
        return []
    return [e for e in room.outbox if e["seq"] > published]


# --- Membership and connections ---------------------------------------------------------------


def _seat_check(room: Room, *, player_id: int, now: int) -> None:
    """Raise unless a non-member could take a seat: a lobby, with members, seats held for
    other placed players (still held at `now`) and the absent host's seat short of
    `max_players`."""
    if room.status != LOBBY:
        raise GameAlreadyStarted("the game has already started")
    held = sum(1 for held_id, until in room.held if held_id != player_id and until > now)
    # The host's seat is kept for them until they connect: only the host can start the
    # game, and a room filled before its host arrived could never start.
    if room.host is not None and room.host != player_id and room.player(room.host) is None:
        held += 1
    if len(room.players) + held >= room.settings.max_players:
        raise RoomFull("the room is full")


def seat_hold(room: Room, *, player_id: int, now: int, hold_ms: int) -> None:
    """Hold a seat of a quick-match lobby for a placed player until they connect (`hold_ms` at most).

    A member already has their seat. Raises GameAlreadyStarted or RoomFull (members and
    other players' held seats fill it).
    """
    if room.status != LOBBY:
        raise GameAlreadyStarted("the game has already started")
    if room.player(player_id) is not None:
        return
    _seat_check(room, player_id=player_id, now=now)
    room.held = [h for h in room.held if h[0] != player_id and h[1] > now] + [[player_id, now + hold_ms]]


def seat_held(room: Room, *, player_id: int, now: int) -> bool:
    """True if the player holds a seat of this room (placed, not yet connected)."""
    return any(held_id == player_id and until > now for held_id, until in room.held)


def member_add(room: Room, *, player_id: int, name: str, now: int, quick_start_ms: int = 0) -> bool:
    """Make the player a member (no-op for a member); True if they were added.

    Seats held for other placed players count as taken. A quick-match room arms its start
    timer when its second member arrives.
    """
    if room.player(player_id) is not None:
        return False
    _seat_check(room, player_id=player_id, now=now)
    room.players.append(Player(id=player_id, name=name, joined_at=now))
    if room.held:
        room.held = [h for h in room.held if h[0] != player_id and h[1] > now]
    if room.quick and len(room.players) == 2 and room.next_at is None:
        room.next_at = now + quick_start_ms
    return True


def connect(
    room: Room, *, player_id: int, name: str, conn: str, now: int, quick_start_ms: int = 0
) -> list[Event]:
    """Open a connection for a player (joining the room at their first connection).

    Every connection that opens is announced (`player_joined`, GAME.md: "a member's
    connection opened (first time or again)"), a second tab too; `player_left` waits for
    the last one to close.
    """
    member_add(room, player_id=player_id, name=name, now=now, quick_start_ms=quick_start_ms)
    player = room.player(player_id)
    assert player is not None
    if conn in player.conns:
        return []
    player.conns.append(conn)
    room.empty_since = None
    return [_emit(room, now, "player_joined", player={"id": player.id, "name": player.name})]


def disconnect(room: Room, *, player_id: int, conn: str, now: int) -> list[Event]:
    """Close one of a player's connections; the last one makes them `player_left`."""
    player = room.player(player_id)
    if player is None or conn not in player.conns:
        return []
    player.conns.remove(conn)
    events: list[Event] = []
    if not player.connected:
        events.append(_emit(room, now, "player_left", player={"id": player.id, "name": player.name}))
    if not room.connected_players:
        room.empty_since = now
    events += close_if_all_answered(room, now)
    return events


# --- The game ---------------------------------------------------------------------------------


def start_check(room: Room, by: int | None) -> None:
    """Raise NotHost unless `by` may start this room's game (None: the quick-match timer).

    Only the host may (GAME.md: `start` is host only), connected or not. Nobody may start
    a quick-match room by hand: it starts by itself.
    """
    if by is None or by == room.host:
        return
    if room.host is None:
        raise NotHost("a quick-match room starts by itself: 5 s after its second player joins, or when full")
    raise NotHost("only the host can start the game")


def start(
    room: Room,
    *,
    by: int | None,
    questions: Sequence[QuestionData],
    game_id: str,
    rng: random.Random,
    now: int,
) -> list[Event]:
    """Start the game (`by` None: the quick-match timer); open round 1."""
    start_check(room, by)
    if room.status != LOBBY:
        raise NotInLobby("the game has already started")
    if not room.players:
        raise NotInLobby("nobody has joined the room")
    if len(questions) < room.settings.rounds:
        raise NotEnoughQuestions("not enough questions for this many rounds")
    room.status = PLAYING
    room.game_id = game_id
    room.started_at = now
    room.plan = list(questions[: room.settings.rounds])
    room.next_at = None
    events = [_emit(room, now, "game_started", rounds=room.settings.rounds)]
    events += _open_round(room, rng, now)
    return events


def questions_choose(candidates: Sequence[int], count: int, rng: random.Random) -> list[int]:
    """Pick `count` distinct question ids for one game (no repeats within a game)."""
    if len(set(candidates)) < count:
        raise NotEnoughQuestions(f"only {len(set(candidates))} questions for {count} rounds")
    return rng.sample(sorted(set(candidates)), count)


def _open_round(room: Room, rng: random.Random, now: int) -> list[Event]:
    number = 1 if room.round is None else room.round.number + 1
    question = room.plan[number - 1]
    order = rng.sample(range(len(question.options)), len(question.options))
    options = [question.options[i] for i in order]
    deadline = now + room.settings.answer_ms
    room.round = Round(
        number=number,
        question_id=question.id,
        text=question.text,
        options=options,
        correct=order.index(question.correct),
        opened_at=now,
        deadline=deadline,
    )
    room.next_at = None
    return [
        _emit(
            room,
            now,
            "question",
            round=number,
            text=question.text,
            options=options,
            deadline=deadline,
            server_time=now,
        )
    ]


def points_for(*, remaining_ms: int, answer_ms: int) -> int:
    """Points for a correct answer: round(500 + 500 * remaining / answer time), halves up."""
    remaining_ms = max(0, min(remaining_ms, answer_ms))
    return math.floor(500 + 500 * remaining_ms / answer_ms + 0.5)


def answer(
    room: Room, *, player_id: int, round_number: int, option: int, now: int
) -> tuple[AnswerOutcome, list[Event]]:
    """Record a player's answer; the first answer counts. May close the round."""
    player = room.player(player_id)
    if player is None:
        raise NotMember("not a member of this room")
    rnd = room.round
    if rnd is None or round_number != rnd.number:
        return AnswerOutcome(round_number, False, WRONG_ROUND), []
    if not rnd.is_open or now > rnd.deadline:
        return AnswerOutcome(round_number, False, ROUND_CLOSED), []
    if player_id in rnd.answers:
        return AnswerOutcome(round_number, False, ALREADY_ANSWERED), []
    correct = option == rnd.correct
    rnd.answers[player_id] = Answer(
        option=option,
        at=now,
        elapsed_ms=now - rnd.opened_at,
        correct=correct,
        points=points_for(remaining_ms=rnd.deadline - now, answer_ms=room.settings.answer_ms)
        if correct
        else 0,
    )
    return AnswerOutcome(round_number, True), close_if_all_answered(room, now)


def close_if_all_answered(room: Room, now: int) -> list[Event]:
    """Close the open round if at least one player is connected and every connected one answered."""
    rnd = room.round
    if room.status != PLAYING or rnd is None or not rnd.is_open:
        return []
    connected = room.connected_players
    if connected and all(p.id in rnd.answers for p in connected):
        return round_close(room, now=now, trigger=TRIGGER_ALL_ANSWERED)
    return []


def round_close(room: Room, *, now: int, trigger: str) -> list[Event]:
    """Close the open round exactly once: score it, broadcast the result, maybe end the game."""
    rnd = room.round
    if room.status != PLAYING or rnd is None or not rnd.is_open:
        return []
    rnd.closed_at = now
    rnd.trigger = trigger
    for p in room.players:
        ans = rnd.answers.get(p.id)
        if ans is not None:
            p.answered += 1
            p.answered_ms += ans.elapsed_ms
            if ans.correct:
                p.correct += 1
                p.correct_ms += ans.elapsed_ms
                p.score += ans.points
    events = [_emit(room, now, "round_result", **_round_result(room, rnd))]
    if rnd.number >= room.settings.rounds:
        room.status = FINISHED
        room.finished_at = now
        room.next_at = None
        events.append(_emit(room, now, "game_over", standings=standings(room)))
    else:
        room.next_at = now + room.settings.reveal_ms
    return events


def round_advance(room: Room, *, rng: random.Random, now: int) -> list[Event]:
    """Open the next round once the reveal pause of the closed one is over (no-op otherwise)."""
    rnd = room.round
    if room.status != PLAYING or rnd is None or rnd.is_open or room.next_at is None:
        return []
    if now < room.next_at:
        return []
    return _open_round(room, rng, now)


def abandon(room: Room, *, now: int) -> list[Event]:
    """Give up a room whose players have all gone: no results are stored."""
    if room.status not in (LOBBY, PLAYING):
        return []
    room.status = ABANDONED
    room.finished_at = now
    room.next_at = None
    if room.round is not None and room.round.is_open:
        room.round.closed_at = now
    return []


def standings(room: Room) -> list[dict[str, Any]]:
    """Players ordered by score, then lower total correct-answer time, then join order."""
    order = sorted(enumerate(room.players), key=lambda item: (-item[1].score, item[1].correct_ms, item[0]))
    return [
        {"player": p.id, "name": p.name, "score": p.score, "rank": rank, "correct": p.correct}
        for rank, (_, p) in enumerate(order, start=1)
    ]


def results(room: Room) -> list[dict[str, Any]]:
    """One result row per member of a finished game (for `GameResult`)."""
    by_id = {p.id: p for p in room.players}
    rows = []
    for entry in standings(room):
        p = by_id[entry["player"]]
        rows.append(
            {
                "user_id": p.id,
                "score": p.score,
                "rank": entry["rank"],
                "correct": p.correct,
                "rounds": room.settings.rounds,
                "avg_answer_ms": round(p.answered_ms / p.answered) if p.answered else None,
            }
        )
    return rows


# --- What is due, and what a player sees ----------------------------------------------------


SWEEP_CLOSE = "close"
SWEEP_ADVANCE = "advance"
SWEEP_AUTOSTART = "autostart"
SWEEP_ABANDON = "abandon"
SWEEP_STORE_RESULTS = "store_results"


def due(room: Room, *, now: int, grace_ms: int, abandon_ms: int, lobby_idle_ms: int) -> str | None:
    """The overdue step of a room whose timer may have been lost, if any (for the sweeper)."""
    if room.status in (LOBBY, PLAYING) and room.empty_since is not None:
        idle = abandon_ms if room.status == PLAYING else lobby_idle_ms
        if now - room.empty_since >= idle:
            return SWEEP_ABANDON
    if room.status == PLAYING and room.round is not None:
        if room.round.is_open and now >= room.round.deadline + grace_ms:
            return SWEEP_CLOSE
        if not room.round.is_open and room.next_at is not None and now >= room.next_at + grace_ms:
            return SWEEP_ADVANCE
    if room.status == LOBBY and room.quick and room.next_at is not None and now >= room.next_at + grace_ms:
        return SWEEP_AUTOSTART
    if room.status == FINISHED and not room.results_stored:
        return SWEEP_STORE_RESULTS
    return None


def _round_result(room: Room, rnd: Round) -> dict[str, Any]:
    """A closed round's `round_result` fields: one entry per member, in join order.

    `total` is the member's score now, which is their total after this round while it is
    the last one closed.
    """
    results = []
    for p in room.players:
        ans = rnd.answers.get(p.id)
        results.append(
            {
                "player": p.id,
                "option": None if ans is None else ans.option,
                "correct": bool(ans and ans.correct),
                "points": 0 if ans is None else ans.points,
                "total": p.score,
            }
        )
    return {"round": rnd.number, "correct_option": rnd.correct, "results": results}


def snapshot(room: Room, *, player_id: int, now: int) -> dict[str, Any]:
    """The `state` frame for one player: everything but what must stay on the server."""
    rnd = room.round
    question = None
    result = None
    if rnd is not None and rnd.is_open and room.status == PLAYING:
        mine = rnd.answers.get(player_id)
        question = {
            "text": rnd.text,
            "options": rnd.options,
            "deadline": rnd.deadline,
            "answered": mine is not None,
            "option": None if mine is None else mine.option,  # NuxTest: the player's own answer
        }
    elif rnd is not None and room.status in (PLAYING, FINISHED):
        # NuxTest: the last round's result, for a client that (re)connects in the reveal
        # pause or after the game: the fields of its `round_result`, and the question they
        # answer (text and options, now that the round has closed).
        result = {**_round_result(room, rnd), "text": rnd.text, "options": rnd.options}
    s = room.settings
    return {
        "type": "state",
        "room": room.code,
        "status": room.status,
        "settings": {
            "rounds": s.rounds,
            "answer_seconds": s.answer_seconds,
            "reveal_seconds": s.reveal_seconds,
            "max_players": s.max_players,
            "category": s.category,
        },
        "host": room.host,
        "quick": room.quick,
        "players": [
            {"id": p.id, "name": p.name, "connected": p.connected, "score": p.score} for p in room.players
        ],
        "round": None if rnd is None else rnd.number,
        "question": question,
        "result": result,
        # NuxTest: when a quick-match lobby starts by itself (its second member armed it).
        "starts_at": room.next_at if room.status == LOBBY and room.quick else None,
        "seq": room.seq,
        "server_time": now,
    }
