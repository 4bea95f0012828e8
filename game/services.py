"""Use cases of the game: load state, call the engine, save atomically, publish events.

One async function per use case, keyword-only arguments, named `<thing>_<action>`.
Consumers, views and tasks call these and nothing below them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import random
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from game import events, scheduler, store
from game.engine import rules
from game.engine.model import FINISHED, LOBBY, PLAYING, TRIGGER_DEADLINE, QuestionData, Room
from game.models import Category, GameResult, Question
from game.telemetry import game as observe
from game.telemetry import metrics, tracing

logger = logging.getLogger(__name__)
_rng = random.SystemRandom()

# How long a timer task that fired early may wait for its due time before giving up.
_EARLY_TIMER_WAIT_MS = 2000


def now_ms() -> int:
    """The server clock, in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


# --- Rooms --------------------------------------------------------------------------------------


def _category_unknown(category: str) -> bool:
    return not Category.objects.filter(slug=category).exists()


def _category_check(category: str | None, rounds: int) -> None:
    if category is None:
        available = Question.objects.count()
    else:
        if _category_unknown(category):
            raise rules.SettingsError("category", f"unknown category {category!r}")
        available = Question.objects.filter(category__slug=category).count()
    if available < rounds:
        field = "category" if category is not None else "rounds"
        have = f"{available} question" + ("" if available == 1 else "s")
        raise rules.SettingsError(field, f"only {have} available for {rounds} rounds")


async def room_create(*, host_id: int | None, settings_raw: Mapping[str, Any], quick: bool = False) -> Room:
    """Create a room hosted by `host_id` (None: a quick-match room); SettingsError names every
    refused field, an unknown category among the others (the engine knows no database)."""
    try:
        room_settings = rules.settings_validate(settings_raw)
    except rules.SettingsError as refused:
        category = settings_raw.get("category")
        if "category" in refused.errors or not isinstance(category, str):
            raise
        if not await database_sync_to_async(_category_unknown)(category):
            raise
        more = {f: m for f, m in refused.errors.items() if f != refused.field}
        more["category"] = f"unknown category {category!r}"
        raise rules.SettingsError(refused.field, refused.message, more=more) from None
    await database_sync_to_async(_category_check)(room_settings.category, room_settings.rounds)
    while True:
        room = rules.room_new(
            code=rules.code_generate(_rng),
            host=host_id,
            settings=room_settings,
            now=now_ms(),
            quick=quick,
        )
        try:
            await store.room_create(room)
        except store.RoomExists:
            continue
        return room


def room_summary(room: Room) -> dict[str, Any]:
    """The public summary of a room (GET /api/rooms/<CODE>/)."""
    s = room.settings
    return {
        "code": room.code,
        "status": room.status,
        "quick": room.quick,
        "host": room.host,
        "settings": {
            "rounds": s.rounds,
            "answer_seconds": s.answer_seconds,
            "reveal_seconds": s.reveal_seconds,
            "max_players": s.max_players,
            "category": s.category,
        },
        "players": [{"id": p.id, "name": p.name, "connected": p.connected} for p in room.players],
        "round": None if room.round is None else room.round.number,
        # What `game_over` said, for a page opened after it (`state` carries no standings).
        "standings": rules.standings(room) if room.status == FINISHED else None,
    }


async def room_get(*, code: str) -> Room:
    """The room's current state (RoomNotFound if none)."""
    return await store.room_get(code)


async def room_connect(*, code: str, user_id: int, name: str, conn: str) -> dict[str, Any]:
    """Open a connection to a room (joining it the first time); return the `state` snapshot.

    Raises RoomNotFound, RoomFull or GameAlreadyStarted for refused connections.
    """
    now = now_ms()

    def change(room: Room) -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
        members = len(room.players)
        evts = rules.connect(
            room, player_id=user_id, name=name, conn=conn, now=now, quick_start_ms=_quick_start_ms()
        )
        snapshot = rules.snapshot(room, player_id=user_id, now=now)
        # A player who answered and comes back alone to a room nobody was connected to is
        # now every connected player: the round closes. After the snapshot, so the round's
        # result reaches this connection too, as the broadcast following its `state`.
        evts += rules.close_if_all_answered(room, now)
        return evts, snapshot, len(room.players) > members

    room, (evts, snapshot, added) = await store.room_update(code, change)
    events.order(code, evts)
    await _after(room, evts)
    if added and room.quick:
        # Quick-match members arrive by connecting (matchmaking only holds seats): the
        # second arms the start timer, the last fills the room and starts it.
        await _after_member_added(room)
    return snapshot


async def room_reconnect(*, code: str, user_id: int, name: str, conn: str) -> bool:
    """Put an open connection back in its room if it is no longer listed there (the sweeper
    took it out while its web process's heartbeat had lapsed); True if it was missing.

    The member is announced again (`player_joined`) as at any reconnect. Raises RoomNotFound
    when the room is gone.
    """
    now = now_ms()

    def change(room: Room) -> list[dict[str, Any]]:
        player = room.player(user_id)
        if player is None or conn in player.conns:
            return []
        return rules.connect(room, player_id=user_id, name=name, conn=conn, now=now)

    room, evts = await store.room_update(code, change)
    events.order(code, evts)
    await _after(room, evts)
    return bool(evts)


async def room_disconnect(*, code: str, user_id: int, conn: str) -> None:
    """Close one connection; may announce `player_left` and close a round all others answered."""
    now = now_ms()
    try:
        room, evts = await store.room_update(
            code, lambda room: rules.disconnect(room, player_id=user_id, conn=conn, now=now)
        )
    except store.RoomNotFound:
        return
    events.order(code, evts)
    await _after(room, evts)


async def state_snapshot(*, code: str, user_id: int) -> dict[str, Any]:
    """A fresh `state` frame for one player."""
    room = await store.room_get(code)
    return rules.snapshot(room, player_id=user_id, now=now_ms())


# --- Playing ------------------------------------------------------------------------------------


def _questions_load(category: str | None, rounds: int) -> list[QuestionData]:
    qs = Question.objects.all() if category is None else Question.objects.filter(category__slug=category)
    ids = rules.questions_choose(list(qs.values_list("id", flat=True)), rounds, _rng)
    by_id = {q.id: q for q in Question.objects.filter(id__in=ids)}
    return [
        QuestionData(id=i, text=by_id[i].text, options=list(by_id[i].options), correct=by_id[i].correct)
        for i in ids
    ]


async def game_start(*, code: str, by: int | None) -> None:
    """Start the game for `by` (None: the quick-match timer); rules.start_check says who may.

    Raises NotHost or NotInLobby (checked before the question bank is read, then again
    inside the transaction).
    """
    room = await store.room_get(code)
    rules.start_check(room, by)
    if room.status != LOBBY:
        raise rules.NotInLobby("the game has already started")
    questions = await database_sync_to_async(_questions_load)(room.settings.category, room.settings.rounds)
    now = now_ms()
    game_id = str(uuid.uuid4())
    room, evts = await store.room_update(
        code,
        lambda room: rules.start(room, by=by, questions=questions, game_id=game_id, rng=_rng, now=now),
    )
    events.order(code, evts)
    if room.quick:
        await store.quick_close(code)
    await _after(room, evts)


async def answer_submit(
    *,
    code: str,
    user_id: int,
    round_number: int,
    option: int,
    received_ms: int | None = None,
    ack: Callable[[rules.AnswerOutcome], Awaitable[None]] | None = None,
) -> rules.AnswerOutcome:
    """Record an answer; the first one per round counts. May close the round.

    `received_ms` is when the server received it (now, if not given): the engine scores and
    refuses by that time (GAME.md), however long the answer then waited for its turn.

    `ack` is awaited once the answer is stored and before the round close it may cause is
    published, so the player's acknowledgement does not wait for the room's broadcasts,
    the next question and its timer.
    """
    now = now_ms() if received_ms is None else received_ms
    room, (outcome, evts) = await store.room_update(
        code,
        lambda room: rules.answer(room, player_id=user_id, round_number=round_number, option=option, now=now),
    )
    events.order(code, evts)
    try:
        if ack is not None:
            await ack(outcome)
    finally:
        # The round this answer closed goes out even if the answering player is gone.
        await _after(room, evts)
    return outcome


async def _wait_until(due_ms: int) -> bool:
    """Sleep until `due_ms` if a timer fired a little early; False if it is far off."""
    wait = due_ms - now_ms()
    if wait > _EARLY_TIMER_WAIT_MS:
        return False
    if wait > 0:
        await asyncio.sleep(wait / 1000)
    return True


def _deadline_close_ms(deadline: int) -> int:
    """When a round's deadline timer closes it: a grace after the deadline, so that an answer
    received before the deadline whose write is still queued (behind the room's other
    updates in its process) lands first. An answer received after the deadline is refused
    all the same (rules.answer)."""
    return deadline + settings.NUXTEST_DEADLINE_GRACE_MS


async def round_close_due(*, code: str, round_number: int, trigger: str = TRIGGER_DEADLINE) -> bool:
    """Close round `round_number` at its deadline, if it is still open; True if this call did."""
    try:
        room = await store.room_get(code)
    except store.RoomNotFound:
        return False
    rnd = room.round
    if room.status != PLAYING or rnd is None or rnd.number != round_number or not rnd.is_open:
        return False
    if not await _wait_until(_deadline_close_ms(rnd.deadline)):
        return False

    def change(room: Room) -> list[dict[str, Any]]:
        r = room.round
        if r is None or r.number != round_number:
            return []
        return rules.round_close(room, now=max(now_ms(), r.deadline), trigger=trigger)

    room, evts = await store.room_update(code, change)
    events.order(code, evts)
    await _after(room, evts)
    return bool(evts)


async def round_advance_due(*, code: str, round_number: int) -> bool:
    """Open the round after `round_number` once its reveal pause is over; True if this call did."""
    try:
        room = await store.room_get(code)
    except store.RoomNotFound:
        return False
    rnd = room.round
    if room.status != PLAYING or rnd is None or rnd.number != round_number or rnd.is_open:
        return False
    if room.next_at is None or not await _wait_until(room.next_at):
        return False

    def change(room: Room) -> list[dict[str, Any]]:
        r = room.round
        if r is None or r.number != round_number:
            return []
        return rules.round_advance(room, rng=_rng, now=now_ms())

    room, evts = await store.room_update(code, change)
    events.order(code, evts)
    await _after(room, evts)
    return bool(evts)


# --- Quick match --------------------------------------------------------------------------------


async def quickmatch_place(*, user_id: int) -> Room:
    """Place the player in the oldest open quick-match room with space, or open a new one.

    The player gets a held seat (rules.seat_hold), not membership: GAME.md makes a player a
    member at their first connection, so the room's start timer, its fullness and its
    players are those who connected. Raises store.LockBusy when other placements hold the
    way for too long.
    """
    async with store.quick_locked():
        return await _quickmatch_place(user_id=user_id)


async def _quickmatch_place(*, user_id: int) -> Room:
    candidates = await store.quick_candidates()
    hold_ms = round(settings.NUXTEST_QUICK_HOLD_SECONDS * 1000)
    rooms: list[Room] = []
    for code in candidates:
        try:
            room = await store.room_get(code)
        except store.RoomNotFound:
            await store.room_forget(code)
            continue
        if room.status == LOBBY:
            rooms.append(room)
        else:
            await store.quick_close(code)  # a listing its start did not remove
    now = now_ms()
    # A player placed again keeps the room they are in or hold a seat of (the hold renewed).
    mine = [r for r in rooms if r.player(user_id) or rules.seat_held(r, player_id=user_id, now=now)]
    others = [r for r in rooms if r not in mine and _quick_joinable(r, now)]

    def hold(room: Room) -> None:
        rules.seat_hold(room, player_id=user_id, now=now_ms(), hold_ms=hold_ms)

    for room in mine + others:
        try:
            placed, _ = await store.room_update(room.code, hold)
        except store.RoomNotFound:
            await store.room_forget(room.code)
            continue
        except rules.GameAlreadyStarted:
            await store.quick_close(room.code)
            continue
        except rules.RoomFull:
            continue  # full of members and held seats; held seats lapse, so it stays listed
        return placed
    # Nobody created it, so nobody hosts it: it starts by itself (a host starting it early
    # left the players matchmaking had placed there locked out, 4409).
    room = await room_create(host_id=None, settings_raw={"max_players": rules.QUICK_MAX_PLAYERS}, quick=True)
    room, _ = await store.room_update(room.code, hold)
    await store.quick_open(room.code, room.created_at)
    return room


# A placement needs time to connect before its room starts: a room whose start timer is
# closer than this is left to the players already in it.
QUICK_JOIN_MARGIN_MS = 1000


def _quick_joinable(room: Room, now: int) -> bool:
    return room.next_at is None or room.next_at - now >= QUICK_JOIN_MARGIN_MS


def _quick_start_ms() -> int:
    return round(settings.NUXTEST_QUICK_START_SECONDS * 1000)


async def _after_member_added(room: Room) -> None:
    if len(room.players) >= room.settings.max_players:
        await store.quick_close(room.code)
        try:
            await game_start(code=room.code, by=None)
        except rules.NotInLobby:
            pass  # another process started it first
    elif room.next_at is not None and len(room.players) == 2:
        await scheduler.run_at(scheduler.QUICKMATCH_AUTOSTART, args=[room.code], due_ms=room.next_at)


async def quickmatch_autostart(*, code: str) -> bool:
    """Start a quick-match room whose start timer is due; True if this call started it."""
    try:
        room = await store.room_get(code)
    except store.RoomNotFound:
        return False
    if room.status != LOBBY or not room.quick or room.next_at is None:
        return False
    if not await _wait_until(room.next_at):
        return False
    try:
        await game_start(code=code, by=None)
    except rules.NotInLobby:
        return False
    return True


# --- Ending -------------------------------------------------------------------------------------


def _results_write(game_id: str, code: str, rows: list[dict[str, Any]], finished_at: int) -> int:
    created_at = datetime.fromtimestamp(finished_at / 1000, tz=UTC)
    # A player whose account was deleted since the game has no row to get (and would make
    # the whole write fail on the foreign key, forever).
    accounts = set(
        get_user_model().objects.filter(id__in=[r["user_id"] for r in rows]).values_list("id", flat=True)
    )
    rows = [r for r in rows if r["user_id"] in accounts]
    # bulk_create(ignore_conflicts=True) returns every object, written or not: the rows its
    # INSERT wrote are the statement's own row count (ON CONFLICT DO NOTHING, INSERT IGNORE,
    # INSERT OR IGNORE alike). Counting the game's rows before and after did not do: at READ
    # COMMITTED, a racing writer whose insert waited for another's counted that one's rows too.
    inserted: list[int] = []

    def count_inserted(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        result = execute(sql, params, many, context)
        inserted.append(max(0, context["cursor"].rowcount))
        return result

    with transaction.atomic(), connection.execute_wrapper(count_inserted):
        # The unique (game_id, user) constraint makes a retried or raced write a no-op.
        GameResult.objects.bulk_create(
            [GameResult(game_id=game_id, room=code, created_at=created_at, **row) for row in rows],
            ignore_conflicts=True,
        )
    written = sum(inserted)
    metrics.RESULTS_WRITTEN.inc(written)
    return written


async def results_store(*, code: str) -> bool:
    """Write the finished game's results once; True if they are stored (now or before)."""
    try:
        room = await store.room_get(code)
    except store.RoomNotFound:
        return False
    if room.status != FINISHED:
        return False
    if room.results_stored:
        return True
    assert room.game_id is not None and room.finished_at is not None
    written = await database_sync_to_async(_results_write)(
        room.game_id, room.code, rules.results(room), room.finished_at
    )
    logger.info("results stored: %s rows", written, extra={"event": "results_stored", "room": room.code})

    def mark(room: Room) -> None:
        room.results_stored = True

    await store.room_update(code, mark)
    return True


# How long the end of a game waits for its results write before `round_result` and
# `game_over` go out anyway. A healthy database takes milliseconds. One that is down or
# restarting made the write wait DB_POOL_TIMEOUT (10 s) for a connection: the last round's
# result and `game_over` reached players 10 s late, and the worker process that closed the
# round (or the sweep retrying the write, every second) was held as long, so the rounds of
# other games closed late too (a PostgreSQL restart held every round of a worker with two
# processes up to 8 s). The write goes on in the background; the sweeper retries it.
RESULTS_WAIT_SECONDS = 1.0

# This process's results writes under way, by event loop and room code: a write is never
# started twice at once, and the sweeper does not start one while another waits.
_results_writes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Task[bool]]] = (
    weakref.WeakKeyDictionary()
)


def _results_write_done(writes: dict[str, asyncio.Task[bool]], code: str, task: asyncio.Task[bool]) -> None:
    if writes.get(code) is task:
        del writes[code]
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        # The sweeper retries until the rows are written.
        logger.error(
            "results_store failed",
            exc_info=exc,
            extra={"event": "results_store_failed", "room": code},
        )


def results_store_pending(code: str) -> bool:
    """Whether this process has a results write of the room under way."""
    writes = _results_writes.get(asyncio.get_running_loop(), {})
    return code in writes


async def results_store_waiting(*, code: str, wait: float = RESULTS_WAIT_SECONDS) -> bool | None:
    """results_store, waited for at most `wait` seconds: its answer, or None if it failed
    (logged: `results_store_failed`) or is still under way (it goes on in the background)."""
    writes = _results_writes.setdefault(asyncio.get_running_loop(), {})
    task = writes.get(code)
    if task is None:
        task = asyncio.ensure_future(results_store(code=code))
        writes[code] = task
        task.add_done_callback(functools.partial(_results_write_done, writes, code))
    try:
        return await asyncio.wait_for(asyncio.shield(task), wait)
    except TimeoutError:
        logger.warning(
            "results write still under way after %s s; going on without it",
            wait,
            extra={"event": "results_store_slow", "room": code},
        )
        return None
    except Exception:
        return None  # logged once, by _results_write_done


async def room_abandon(*, code: str) -> bool:
    """Abandon a room nobody has been connected to for too long; True if this call did."""
    now = now_ms()

    def change(room: Room) -> bool | None:
        # Decided again inside the transaction: a player may have come back since the
        # sweeper looked.
        if _due_step(room, now) != rules.SWEEP_ABANDON:
            return None
        was_playing = room.status == PLAYING
        rules.abandon(room, now=now)
        return was_playing

    try:
        room, was_playing = await store.room_update(code, change)
    except store.RoomNotFound:
        return False
    if was_playing is None:
        return False
    observe.abandon_observe(room, was_playing=was_playing)
    if room.quick:
        await store.quick_close(code)
    return True


# --- After every transition ----------------------------------------------------------------------


async def _after(room: Room, evts: list[dict[str, Any]]) -> None:
    """Publish a transition's events, then arm the timers its new state needs.

    A finished game's results are written before `game_over` goes out (waited for at most
    RESULTS_WAIT_SECONDS: a database that does not answer holds nothing), so a client that
    reads its history on `game_over` finds the game there.
    """
    if not evts:
        return
    observe.transition_observe(room, evts)
    closed = next((e for e in evts if e["type"] == "round_result"), None)
    if closed is None:
        await _publish_and_arm(room, evts)
        return
    trigger = room.round.trigger if room.round is not None else None
    with tracing.span(
        "round_close",
        {"nuxtest.room": room.code, "nuxtest.round": closed["round"], "nuxtest.trigger": trigger or ""},
    ):
        await _publish_and_arm(room, evts)


async def _publish_and_arm(room: Room, evts: list[dict[str, Any]]) -> None:
    if any(e["type"] == "game_over" for e in evts):
        # Failed or slow (the database away), it goes on without the rows: the sweeper
        # retries until they are written.
        await results_store_waiting(code=room.code)
    await events.publish(room.code, evts)
    await _published(room, evts)
    for event in evts:
        kind = event["type"]
        if kind == "question":
            await scheduler.run_at(
                scheduler.ROUND_DEADLINE,
                args=[room.code, event["round"]],
                due_ms=_deadline_close_ms(event["deadline"]),
            )
        elif kind == "round_result" and room.status == PLAYING and room.round is not None:
            number = event["round"]
            if room.settings.reveal_ms == 0:
                await round_advance_due(code=room.code, round_number=number)
            elif room.next_at is not None:
                await scheduler.run_at(scheduler.ROUND_ADVANCE, args=[room.code, number], due_ms=room.next_at)


async def _published(room: Room, evts: list[dict[str, Any]]) -> None:
    """After a broadcast: its round's close lag, and the mark that keeps the sweeper from
    publishing it again (rules.unpublished)."""
    for event in evts:
        if event["type"] == "round_result":
            observe.round_published(room, event, now=now_ms())
    seqs = [e["seq"] for e in evts if "seq" in e]
    if seqs:
        try:
            await store.published_mark(room.code, max(seqs))
        except Exception:
            # The sweeper publishes them again: a frame each connection has sent already is
            # not sent twice.
            logger.warning(
                "published mark not written",
                exc_info=True,
                extra={"event": "published_mark_failed", "room": room.code},
            )


# --- Sweeper ------------------------------------------------------------------------------------


# How old a room's unpublished broadcasts must be before the sweeper publishes them itself.
# Longer than a live publisher can take (its turn behind the room's earlier broadcasts waits
# up to 2 s, events._ORDER_WAIT_SECONDS), so that a slow channel layer is not sent every
# broadcast twice just when it is struggling; a dead publisher's result is late by this much
# instead of never sent.
REPUBLISH_AFTER_MS = 5000


async def _republish(room: Room, published: int, now: int) -> bool:
    """Publish the room's latest broadcasts that their process never published (it died
    between its compare-and-set and its publish); True if there were any."""
    evts = rules.unpublished(room, published=published, now=now, grace_ms=REPUBLISH_AFTER_MS)
    if not evts:
        return False
    logger.warning(
        "publishing %s broadcasts again (seq %s to %s): their process did not",
        len(evts),
        evts[0]["seq"],
        evts[-1]["seq"],
        extra={"event": "events_republished", "room": room.code},
    )
    if any(e["type"] == "game_over" for e in evts) and not room.results_stored:
        # As _publish_and_arm: the results are written before `game_over` goes out.
        await results_store_waiting(code=room.code)
    await events.publish(room.code, evts)
    await _published(room, evts)
    return True


async def _prune_dead_connections(rooms: list[Room]) -> None:
    instances = {store.conn_instance(c) for room in rooms for p in room.players for c in p.conns}
    alive = await store.instances_alive(instances)
    for room in rooms:
        dead = [(p.id, c) for p in room.players for c in p.conns if store.conn_instance(c) not in alive]
        for player_id, conn in dead:
            await room_disconnect(code=room.code, user_id=player_id, conn=conn)


def _due_step(room: Room, now: int) -> str | None:
    return rules.due(
        room,
        now=now,
        grace_ms=round(settings.NUXTEST_SWEEP_GRACE_SECONDS * 1000),
        abandon_ms=round(settings.NUXTEST_ABANDON_SECONDS * 1000),
        lobby_idle_ms=round(settings.NUXTEST_LOBBY_IDLE_SECONDS * 1000),
    )


async def rooms_sweep() -> dict[str, int]:
    """Do every overdue step whose timer was lost (dead worker, dead web process)."""
    done: dict[str, int] = {}
    rooms: list[Room] = []
    for code in await store.rooms_active():
        try:
            rooms.append(await store.room_get(code))
        except store.RoomNotFound:
            await store.room_forget(code)
            done["forgotten"] = done.get("forgotten", 0) + 1
    await _prune_dead_connections(rooms)
    published = await store.published_get([room.code for room in rooms if room.outbox])
    now = now_ms()
    for room in rooms:
        try:
            room = await store.room_get(room.code)
        except store.RoomNotFound:
            continue
        if room.code in published:
            # Before the room's next step, whose broadcasts follow these.
            try:
                if await _republish(room, published[room.code], now):
                    done["republished"] = done.get("republished", 0) + 1
                    room = await store.room_get(room.code)  # its results may be stored now
            except Exception:
                logger.exception(
                    "sweep republish failed", extra={"event": "sweep_step_failed", "room": room.code}
                )
                done["failed"] = done.get("failed", 0) + 1
        step = _due_step(room, now)
        if step is None:
            continue
        try:
            ok = await _sweep_step(room, step)
        except Exception:
            # One room's failure must not stop the sweep of every other room.
            logger.exception(
                "sweep step %s failed", step, extra={"event": "sweep_step_failed", "room": room.code}
            )
            done["failed"] = done.get("failed", 0) + 1
            continue
        if ok:
            done[step] = done.get(step, 0) + 1
    return done


async def _sweep_step(room: Room, step: str) -> bool:
    if step == rules.SWEEP_ABANDON:
        return await room_abandon(code=room.code)
    if step == rules.SWEEP_CLOSE and room.round is not None:
        return await round_close_due(code=room.code, round_number=room.round.number)
    if step == rules.SWEEP_ADVANCE and room.round is not None:
        return await round_advance_due(code=room.code, round_number=room.round.number)
    if step == rules.SWEEP_AUTOSTART:
        return await quickmatch_autostart(code=room.code)
    if step == rules.SWEEP_STORE_RESULTS:
        if results_store_pending(room.code):
            return False  # a write of this process is still waiting for the database
        return bool(await results_store_waiting(code=room.code))
    return False


# --- Health -------------------------------------------------------------------------------------


# The readiness pings' threads: not the loop's default executor, which a loop made for one
# async_to_sync call waits for as it closes.
_PING_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="nuxtest-db-ping")


def _database_ping() -> None:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        # A thread of its own, outside any request: nothing else gives its connection back.
        connection.close()


async def readiness() -> dict[str, bool]:
    """Whether the database and Redis answer."""
    checks = {"database": False, "redis": False}
    try:
        # Bounded like Redis's: with the connection pool, a database that is down makes a
        # request wait DB_POOL_TIMEOUT (10 s) for a connection. Not through sync_to_async,
        # which waits for its sync function even when cancelled: the bound never cut the
        # ping short and /readyz answered after 10 s, past a probe's timeout. A ping cut
        # short ends by itself in its executor thread.
        ping = asyncio.get_running_loop().run_in_executor(_PING_THREADS, _database_ping)
        await asyncio.wait_for(ping, timeout=2)
        checks["database"] = True
    except Exception:
        logger.warning("readiness: database unreachable", exc_info=True, extra={"event": "readiness_failed"})
    try:
        checks["redis"] = await asyncio.wait_for(store.ping(), timeout=2)
    except Exception:
        logger.warning("readiness: redis unreachable", exc_info=True, extra={"event": "readiness_failed"})
    return checks
