"""The room WebSocket: parse and validate frames, call a service, send the reply.

Protocol: docs/protocol.md. Broadcasts reach connections through this process's hub
(game/fanout.py), subscribed to the channel-layer group `room.<CODE>`; a connection forwards
only frames newer than the last `seq` it sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

import orjson
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from game import fanout, faults, presence, services, shutdown, store, transport
from game.engine import rules
from game.telemetry import context, metrics, sentry, tracing
from game.throttle import TokenBucket
from game.ws_auth import origin_allowed

logger = logging.getLogger(__name__)

# Close codes (GAME.md).
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NO_ROOM = 4404
CLOSE_ROOM_FULL = 4409
CLOSE_TOO_MANY = 4429
CLOSE_TRY_AGAIN_LATER = 1013  # an operator's fault flag refuses handshakes (game/transport.py)

# Metric children resolved once: label lookups stay off the per-frame path.
_RECEIVED = {t: metrics.WS_FRAMES_RECEIVED.labels(t) for t in metrics.FRAME_TYPES}
_SENT = {t: metrics.WS_FRAMES_SENT.labels(t) for t in metrics.SENT_TYPES}
_DURATION = {t: metrics.WS_MESSAGE_DURATION.labels(t) for t in metrics.FRAME_TYPES}
_ACTIONS = ("answer", "start")
# Most tokens a connection takes ahead from its player's message bucket (_user_rate_take).
_USER_RATE_LEASE = 4


class FrameError(Exception):
    """A client frame that cannot be parsed, validated or allowed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which are not JSON and could not be echoed as JSON.
    raise ValueError(f"{name} is not JSON")


# The integers a reply can echo: orjson writes 64-bit integers (signed or unsigned) only.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _int_field(frame: dict[str, Any], name: str) -> int:
    value = frame.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameError("invalid_field", f"{name}: must be an integer")
    if not _INT_MIN <= value <= _INT_MAX:
        raise FrameError("invalid_field", f"{name}: out of range")
    return value


class RoomConsumer(AsyncWebsocketConsumer):
    """One player's connection to one room."""

    code: str
    conn: str
    joined: bool
    last_seq: int

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels >= 4.2 makes a thread trip per message to close stale database
        # connections; this consumer reaches the database only via
        # database_sync_to_async (which does that itself), so skip the trip.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self.disconnect(message.get("code", 1000))
        raise StopConsumer()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Channels' AsyncConsumer.__call__ without a channel per connection: the room's
        # broadcasts come from this process's hub (game/fanout.py), which calls room_event.
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        assert self.channel_layer is not None, "CHANNEL_LAYERS is not configured"
        self.hub = fanout.hub(self.channel_layer)
        self.base_send = send
        try:
            await await_many_dispatch([receive], self.dispatch)
        except StopConsumer:
            pass

    # --- Handshake ------------------------------------------------------------------------

    async def connect(self) -> None:
        self.joined = False
        self.last_seq = 0
        self.code = str(self.scope["url_route"]["kwargs"]["code"]).upper()
        self.conn = presence.conn_new()
        self.bucket = TokenBucket(
            rate=settings.NUXTEST_WS_RATE_PER_SECOND,
            burst=settings.NUXTEST_WS_RATE_BURST,
            now=time.monotonic(),
        )
        # Tokens this connection took ahead from the player's bucket in Redis (_user_rate_take).
        self.user_tokens = 0
        self.refused_in_a_row = 0
        self.flood_closed = False
        # The code of a close this server began (the disconnect reports it, not the reply).
        self.closed_with: int | None = None
        # The frame being handled has had its answer_ack (what fails after it is no error of
        # the player's frame: the ack's word on the answer stands).
        self.acked = False
        # When that answer_ack went out (perf_counter): an answer's handling time ends there.
        self.acked_at: float | None = None
        self.counted = False
        self.in_room = False
        self.subscribed = False
        self.opened_at = time.monotonic()
        # Broadcasts held back while an earlier one may still be on its way (room_event).
        self.held: dict[int, dict[str, Any]] = {}
        self.hold_timer: asyncio.TimerHandle | None = None
        self.forward_lock = asyncio.Lock()
        self.background: set[asyncio.Future[None]] = set()
        # Accept first so that a refusal can say why with a close code.
        await self.accept()
        try:
            code = await self._handshake()
        except Exception:
            code = await self._handshake_failed()
        if code is not None:
            await self.close(code)

    async def _handshake_failed(self) -> int:
        """The handshake raised (Redis or the channel layer failing under it): count it,
        report it with the room and user, undo what it recorded, close with 1011."""
        metrics.WS_CONNECTS.labels(outcome="error").inc()
        # A handshake has no span of its own (spans are per frame): a failed one gets one.
        attributes: dict[str, Any] = {"nuxtest.room": self.code}
        user_id = getattr(self, "user_id", None)  # set once the user is known (_handshake)
        if user_id is not None:
            attributes["enduser.id"] = user_id
        with tracing.failure_span("ws.connect", attributes), sentry.error_scope():
            logger.exception("websocket handshake failed", extra={"event": "ws_connect_failed"})
        # What disconnect() undoes for a connection that closes: the room's subscription,
        # its place in the room and the player's connection count.
        await self.disconnect(transport.CLOSE_INTERNAL_ERROR)
        return transport.CLOSE_INTERNAL_ERROR

    async def _handshake(self) -> int | None:
        """Admit the connection (and send its `state`), or return the close code refusing it."""
        user = self.scope.get("user")
        if shutdown.draining:
            # Its listening sockets are closed: this came over a connection the load
            # balancer kept open. Off to another instance, as this process's players are.
            return self._refused("refused_restarting", shutdown.CLOSE_SERVICE_RESTART)
        if (await faults.current()).handshake_refuse:
            return self._refused("refused_unavailable", CLOSE_TRY_AGAIN_LATER)
        if not origin_allowed(self.scope):
            return self._refused("refused_origin", CLOSE_FORBIDDEN)
        if user is None or not user.is_authenticated:
            return self._refused("refused_auth", CLOSE_NOT_AUTHENTICATED)
        self.user_id = int(user.pk)
        self.user_name = str(user.get_username())
        # The connection's task keeps these for every log line and error report it makes.
        context.bind(user_id=self.user_id, room=self.code)
        # GAME.md's order: origin, authentication, room, capacity.
        if not rules.code_is_valid(self.code) or not await store.room_exists(self.code):
            return self._refused("refused_no_room", CLOSE_NO_ROOM)
        await presence.heartbeat_ensure()
        if not await store.user_conn_add(
            self.user_id,
            self.conn,
            limit=settings.NUXTEST_WS_MAX_CONNECTIONS_PER_USER,
            now=services.now_ms(),
        ):
            return self._refused("refused_too_many", CLOSE_TOO_MANY)
        self.counted = True
        # Subscribe before reading the snapshot: no broadcast can fall between the two
        # (those that come before the `state` is sent are held until it is: room_event).
        self.subscribed = True
        try:
            await self.hub.join(self.code, self)
        except BaseException:
            self.subscribed = False
            raise
        # From here the room may list this connection (even if the call fails half-way).
        self.in_room = True
        try:
            snapshot = await services.room_connect(
                code=self.code, user_id=self.user_id, name=self.user_name, conn=self.conn
            )
        except store.RoomNotFound:
            self.in_room = False
            return self._refused("refused_no_room", CLOSE_NO_ROOM)
        except (rules.RoomFull, rules.GameAlreadyStarted):
            self.in_room = False
            return self._refused("refused_full", CLOSE_ROOM_FULL)
        self.joined = True
        tracked = shutdown.track(self)
        presence.connection_opened(self)
        metrics.WS_CONNECTS.labels(outcome="accepted").inc()
        metrics.WS_CONNECTIONS.inc()
        logger.info("websocket connected", extra={"event": "ws_connect"})
        await self._send_state(snapshot)
        if not tracked:
            # Admitted while the drain began (its handshake was under way): it goes too.
            await self.drain()
        return None

    def _refused(self, outcome: str, close_code: int) -> int:
        metrics.WS_CONNECTS.labels(outcome=outcome).inc()
        logger.info(
            "websocket refused: %s",
            outcome,
            extra={
                "event": "ws_refused",
                "outcome": outcome,
                "close_code": close_code,
                "room": self.code[:16],
            },
        )
        return close_code

    async def room_gone(self) -> None:
        """The room is gone from Redis (its data lost) under this open connection: 4404, as a
        handshake to it would get; the client's reconnect gets the same and stops."""
        self.flood_closed = True  # frames still arriving are dropped unanswered
        await self.close(CLOSE_NO_ROOM)

    async def drain(self) -> None:
        """This process is stopping: ask the client to reconnect (to another instance)."""
        await self.close(shutdown.CLOSE_SERVICE_RESTART)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Remembered for the disconnect's line and metric: a client answers a close the server
        # began (1012 for a drain, 4429 for a flood) with a code of its own, often 1000.
        if type(code) is int and self.closed_with is None:  # not True (Channels: 1000)
            self.closed_with = code
        await super().close(code, reason)

    async def disconnect(self, code: int) -> None:
        code = getattr(self, "closed_with", None) or code
        if getattr(self, "hold_timer", None) is not None:
            self.hold_timer.cancel()  # type: ignore[union-attr]
            self.hold_timer = None
        try:
            # Unsubscribe first: the connection needs no broadcast of its own leaving.
            if getattr(self, "subscribed", False):
                self.subscribed = False
                self.held.clear()
                await self.hub.leave(self.code, self)
            if getattr(self, "joined", False):
                self.joined = False
                metrics.WS_CONNECTIONS.dec()
                metrics.WS_DISCONNECTS.labels(code=metrics.close_code_label(code)).inc()
                logger.info(
                    "websocket disconnected",
                    extra={
                        "event": "ws_disconnect",
                        "close_code": code,
                        "duration_s": round(time.monotonic() - self.opened_at, 3),
                    },
                )
        finally:
            # Even when Redis failed above: the connection is gone from this process, and
            # what Redis could not take now is recorded after the next heartbeat.
            shutdown.forget(self)
            presence.connection_forget(self)
            # Draining for a restart: the player is still in the game and reconnects to
            # another instance at once; the sweeper prunes this connection once the
            # process's heartbeat has expired, so no round closes early because everyone
            # "left" together.
            in_room = getattr(self, "in_room", False) and not shutdown.draining
            counted = getattr(self, "counted", False)
            self.in_room = self.counted = False
            if in_room or counted:
                await presence.connection_closed(
                    code=self.code, user_id=self.user_id, conn=self.conn, in_room=in_room, counted=counted
                )

    # --- Frames from the client -----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.joined or self.flood_closed:
            # Frames still buffered behind a close for flooding are dropped unanswered.
            return
        started = time.perf_counter()
        self.acked_at = None
        # When the server received the frame (GAME.md scores an answer by it): before the flood
        # limit's Redis round trip and anything else that may wait.
        received_ms = services.now_ms()
        raw = text_data if text_data is not None else bytes_data or b""
        size = len(raw.encode()) if isinstance(raw, str) else len(raw)
        kind = "invalid"
        outcome = "ok"
        round_hint: int | None = None
        with tracing.span("ws.invalid", {"nuxtest.room": self.code, "enduser.id": self.user_id}) as span:
            try:
                if not self.bucket.take(time.monotonic()) or not await self._user_rate_take():
                    self.refused_in_a_row += 1
                    if self.refused_in_a_row >= settings.NUXTEST_WS_FLOOD_CLOSE_AFTER:
                        self.flood_closed = True
                        logger.warning("websocket closed for flooding", extra={"event": "ws_flood_closed"})
                        await self.close(CLOSE_TOO_MANY)
                        return
                    raise FrameError("rate_limited", "too many messages: slow down")
                self.refused_in_a_row = 0
                if size > settings.NUXTEST_WS_MAX_MESSAGE_BYTES:
                    raise FrameError(
                        "message_too_large",
                        f"frames are limited to {settings.NUXTEST_WS_MAX_MESSAGE_BYTES} bytes",
                    )
                frame = self._parse(raw)
                round_hint = frame.get("round")
                if not isinstance(round_hint, int) or isinstance(round_hint, bool):
                    round_hint = None
                if frame["type"] in _RECEIVED:
                    kind = frame["type"]
                    if span is not None:
                        span.update_name(f"ws.{kind}")
                        if (number := tracing.round_attribute(round_hint)) is not None:
                            span.set_attribute("nuxtest.round", number)
                self.acked = False
                outcome = await self._handle(frame, received_ms)
            except FrameError as exc:
                outcome = "refused"
                await self._send({"type": "error", "code": exc.code, "message": exc.message})
            except store.RoomNotFound:
                # The room is gone (Redis lost its data, or it was forgotten an hour after its
                # end): nothing this connection sends can be answered, `sync` included.
                outcome = "refused"
                logger.warning(
                    "room gone from Redis under an open connection; closing it (4404)",
                    extra={"event": "ws_room_gone"},
                )
                await self.room_gone()
            except Exception:
                outcome = "server_error"
                with context.bound(round=round_hint), sentry.error_scope():
                    logger.exception(
                        "frame handling failed", extra={"event": "ws_frame_failed", "frame_type": kind}
                    )
                if not self.acked:
                    # After an accepted answer_ack, an error would tell the player the answer
                    # had no effect; what failed (the round close's broadcast) is every
                    # player's alike, and a `sync` shows the room as it is.
                    await self._send(
                        {"type": "error", "code": "internal_error", "message": "the server failed"}
                    )
            finally:
                _RECEIVED[kind].inc()
                if kind in _ACTIONS:
                    metrics.GAME_ACTIONS.labels(action=kind, outcome=outcome).inc()
                # An answer is timed to its ack, what its player waits for (the latency SLI: an
                # answer acknowledged within 100 ms); the round close it may cause comes after
                # (its broadcasts, the next question, the timers) and is timed by group_send and
                # traced by this span, but it is no slower acknowledgement.
                ended = self.acked_at if self.acked_at is not None else time.perf_counter()
                _DURATION[kind].observe(ended - started, exemplar=tracing.exemplar())

    async def _user_rate_take(self) -> bool:
        """The per-user limit, over every connection of the player (a bucket in Redis).

        Tokens are taken a few at a time and spent here, so that most frames make no Redis
        round trip for it (one per frame was 7 % of the web process's CPU in a profile of
        the game). The lease is at most 4, and small enough that a player's connections
        together hold at most half the burst: a player never passes the bucket's rate, and
        passes its burst by at most lease - 1 frames per connection.
        """
        if self.user_tokens:
            self.user_tokens -= 1
            return True
        lease = min(
            _USER_RATE_LEASE,
            settings.NUXTEST_WS_USER_RATE_BURST // (2 * settings.NUXTEST_WS_MAX_CONNECTIONS_PER_USER),
        )
        try:
            taken = await store.user_rate_take(
                self.user_id,
                rate=settings.NUXTEST_WS_USER_RATE_PER_SECOND,
                burst=settings.NUXTEST_WS_USER_RATE_BURST,
                want=max(1, lease),
                now=time.time(),
            )
        except Exception:
            # Without Redis the game cannot go on anyway; the frame's handling reports it.
            return True
        self.user_tokens = max(0, taken - 1)
        return taken > 0

    def _parse(self, raw: str | bytes) -> dict[str, Any]:
        try:
            frame = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FrameError("bad_json", "the frame is not valid JSON") from exc
        except RecursionError as exc:
            raise FrameError("bad_json", "the frame is nested too deeply") from exc
        if not isinstance(frame, dict):
            raise FrameError("bad_json", "the frame must be a JSON object")
        kind = frame.get("type")
        if not isinstance(kind, str):
            raise FrameError("invalid_field", "type: must be a string")
        return frame

    async def _handle(self, frame: dict[str, Any], received_ms: int) -> str:
        """Handle one valid frame; the outcome for the action metrics (ok or refused)."""
        kind = frame["type"]
        if kind == "answer":
            round_number = _int_field(frame, "round")
            option = _int_field(frame, "option")
            if not 0 <= option <= 3:
                raise FrameError("invalid_field", "option: must be 0, 1, 2 or 3")
            with context.bound(round=round_number):
                delay = (await faults.current()).answer_delay_ms
                if delay:
                    await asyncio.sleep(delay / 1000)
                outcome = await services.answer_submit(
                    code=self.code,
                    user_id=self.user_id,
                    round_number=round_number,
                    option=option,
                    received_ms=received_ms,
                    ack=self._answer_ack,
                )
            return "ok" if outcome.accepted else "refused"
        elif kind == "ping":
            t = frame.get("t")
            if t is not None and (isinstance(t, bool) or not isinstance(t, int | float)):
                raise FrameError("invalid_field", "t: must be a finite number")
            # The range first: math.isfinite cannot take an integer too large for a float.
            if isinstance(t, int) and not _INT_MIN <= t <= _INT_MAX:
                raise FrameError("invalid_field", "t: out of range")
            if isinstance(t, float) and not math.isfinite(t):
                raise FrameError("invalid_field", "t: must be a finite number")
            await self._send({"type": "pong", "t": t, "server_time": services.now_ms()})
        elif kind == "sync":
            await self._send_state(await services.state_snapshot(code=self.code, user_id=self.user_id))
        elif kind == "start":
            try:
                await services.game_start(code=self.code, by=self.user_id)
            except rules.NotHost as exc:
                raise FrameError("not_host", str(exc)) from exc
            except (rules.NotInLobby, rules.NotEnoughQuestions) as exc:
                raise FrameError("not_in_lobby", str(exc)) from exc
        else:
            raise FrameError("unknown_type", f"unknown frame type {kind[:40]!r}")
        return "ok"

    async def _answer_ack(self, outcome: rules.AnswerOutcome) -> None:
        """The answer is stored (or refused): tell the player before the round close goes out."""
        logger.info(
            "answer %s",
            "accepted" if outcome.accepted else f"refused: {outcome.reason}",
            extra={"event": "answer_received", "accepted": outcome.accepted, "reason": outcome.reason},
        )
        await self._send(outcome.frame())
        self.acked = True
        self.acked_at = time.perf_counter()

    # --- Frames to the client -------------------------------------------------------------

    async def room_event(self, message: dict[str, Any]) -> None:
        """A broadcast from the room's group: forward it in `seq` order, once.

        Two processes publishing at the same instant can deliver seq N+1 before N; a frame
        past a gap is held for NUXTEST_WS_REORDER_MS so the missing one can arrive. If it
        does not, the held frames go out anyway and the client resyncs on the gap.
        """
        seq = message["frame"]["seq"]
        if seq <= self.last_seq or not self.subscribed:
            return
        if not self.joined:
            # Subscribed, and the `state` not sent yet: it goes out after the state, if newer.
            self.held[seq] = message
            return
        if seq > self.last_seq + 1:
            self.held[seq] = message
            self._hold_arm()
            return
        await self._forward(message)
        await self._forward_held(gap_ok=False)

    def _hold_arm(self) -> None:
        if self.hold_timer is None:
            self.hold_timer = asyncio.get_running_loop().call_later(
                settings.NUXTEST_WS_REORDER_MS / 1000, self._hold_expired
            )

    def _hold_expired(self) -> None:
        self.hold_timer = None
        task = asyncio.ensure_future(self._forward_held(gap_ok=True))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _forward_held(self, *, gap_ok: bool) -> None:
        """Forward held frames that are next in order (past the first gap once its wait is over)."""
        async with self.forward_lock:
            for seq in sorted(self.held):
                if seq <= self.last_seq:
                    del self.held[seq]
                elif seq == self.last_seq + 1 or gap_ok:
                    if seq > self.last_seq + 1:
                        self._gap(seq)
                        gap_ok = False  # one gap per wait: a later gap gets a wait of its own
                    await self._forward_unlocked(self.held.pop(seq))
                else:
                    break
        if not self.held and self.hold_timer is not None:
            self.hold_timer.cancel()
            self.hold_timer = None
        elif self.held and self.joined:
            self._hold_arm()  # past a gap (held before the `state` went out, say)

    def _gap(self, seq: int) -> None:
        """Going on past missing broadcasts: the client sees the gap and resyncs."""
        missing = seq - self.last_seq - 1
        metrics.WS_BROADCAST_GAPS.inc(missing)
        logger.warning(
            "broadcasts %s-%s never arrived within %s ms; sending %s",
            self.last_seq + 1,
            seq - 1,
            settings.NUXTEST_WS_REORDER_MS,
            seq,
            extra={"event": "broadcast_gap", "missing": missing, "seq": seq},
        )

    async def _forward(self, message: dict[str, Any]) -> None:
        async with self.forward_lock:
            await self._forward_unlocked(message)

    async def _forward_unlocked(self, message: dict[str, Any]) -> None:
        frame = message["frame"]
        if frame["seq"] <= self.last_seq:
            return
        self.last_seq = frame["seq"]
        # Traced by the hub's ws.broadcast span, one per process and broadcast (game/fanout.py).
        await self._send(frame)

    async def _send_state(self, snapshot: dict[str, Any]) -> None:
        async with self.forward_lock:
            self.last_seq = max(self.last_seq, snapshot["seq"])
            await self._send(snapshot)
        if self.held:
            await self._forward_held(gap_ok=False)

    async def _send(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "error":  # a frame refused, whether or not its error still reaches the client
            metrics.WS_FRAME_ERRORS.labels(code=frame["code"]).inc()
        try:
            # orjson: several times faster than json.dumps on the per-frame path.
            await self.send(text_data=orjson.dumps(frame).decode())
        except Exception as exc:
            if not transport.send_failed_on_close(exc):
                raise
            # The client closed while this frame was on its way (a tab closed just after an
            # answer, whose ack then finds no connection): nothing to tell it, and nothing
            # failed here. What it did still counts; its close is logged and counted apart.
            return
        counter = _SENT.get(kind)
        if counter is not None:
            counter.inc()
