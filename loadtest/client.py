"""A NuxTest player over `websocket-client`, for Locust's gevent world.

One reader greenlet per socket stamps every frame on arrival, checks the room's `seq`
(a gap is a lost frame: counted, then `sync` as the protocol says) and measures what is
only measurable at arrival (question fan-out skew, round-result delay after deadline,
answer→ack latency). Every measurement goes to `report`, which the locustfile wires to
`events.request.fire` with request_type "WS".
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import websocket
from gevent.queue import Empty, Queue

from loadtest import scenarios as sc

# Close code of a server that is restarting (docs/protocol.md): reconnect, do not give up.
SERVICE_RESTART = 1012

# report(name, response_time_ms, exception_or_None, response_length)
Report = Callable[[str, float, Exception | None, int], None]

BROADCASTS = frozenset(
    {"player_joined", "player_left", "game_started", "question", "round_result", "game_over"}
)


def now_ms() -> float:
    """The client's wall clock in ms since the epoch (the protocol's unit)."""
    return time.time() * 1000


class Closed(Exception):
    """The server closed the socket; `code` is its close code (1006 when none was sent)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed {code} {reason}".strip())
        self.code = code


class ProtocolError(Exception):
    """The server said something the protocol does not allow here."""


def ws_url(host: str, code: str) -> str:
    """The room's WebSocket URL on the HTTP base `host`."""
    base = host.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}/ws/rooms/{code}/"


@dataclass
class Arrival:
    """A frame and when it arrived (client clock, ms)."""

    frame: dict[str, Any]
    at: float


@dataclass
class GameSocket:
    """One player's connection to one room, speaking only the documented protocol."""

    url: str
    token: str | None
    report: Report
    origin: str | None = None
    timeout: float = 15.0
    # Honest players report every `error` frame as a failure named "error:<code>".
    honest: bool = True
    # The estimated server clock minus the client clock, from ping/pong (ms).
    clock_offset: float = 0.0
    ws: websocket.WebSocket | None = None
    last_seq: int = 0
    lost: int = 0
    # (last seq seen, seq that arrived, its type) for each gap, for the run's log.
    gaps: list[tuple[int, int, str]] = field(default_factory=list)
    deadlines: dict[int, int] = field(default_factory=dict)
    closed: Closed | None = None
    # The exception the last `open` raised, which it has reported already: not to count twice.
    open_failure: Exception | None = None
    _queue: Queue = field(default_factory=Queue)
    _reader: gevent.Greenlet | None = None
    _ack_sent_at: dict[int, float] = field(default_factory=dict)
    # The `t` of each ping this client sent and has had no pong for.
    _pings: set[float] = field(default_factory=set)
    _best_rtt: float = float("inf")

    # --- Opening and closing -------------------------------------------------------------

    def open(self, *, name: str = sc.HANDSHAKE) -> dict[str, Any]:
        """Connect and return the first `state`; report the time to it as `name`.

        A failure is reported here, once (and kept in `open_failure`): as `name`, or, for a
        handshake the server refuses by closing before `state`, as `close:<code>` like any
        unexpected close of an honest player (an abuser's stays under its probe's `name`).
        An honest player's 1012 (a stopping server's hand-over) is left to the caller.
        """
        started = time.perf_counter()
        self.open_failure = None
        headers = []
        if self.token is not None:
            headers.append(f"Authorization: Bearer {self.token}")
        try:
            # suppress_origin: a non-browser client sends no Origin unless told to.
            self.ws = websocket.create_connection(
                self.url,
                header=headers,
                origin=self.origin,
                suppress_origin=self.origin is None,
                timeout=self.timeout,
                enable_multithread=True,
            )
            self._queue = Queue()
            self.closed = None
            self._pings.clear()  # an earlier connection's pings get no answer on this one
            self._reader = gevent.spawn(self._read, self.ws)
            state = self.next("state", timeout=self.timeout)
        except Exception as exc:
            self.open_failure = exc
            if isinstance(exc, Closed) and self.honest and exc.code == SERVICE_RESTART:
                # A stopping server sends the player elsewhere (GAME.md): the caller reconnects,
                # and reports the close itself if it gives up.
                self.open_failure = None
            elif isinstance(exc, Closed) and self.honest:
                self.report(f"close:{exc.code}", 0, exc, 0)
            else:
                self.report(name, (time.perf_counter() - started) * 1000, exc, 0)
            self.abort()
            raise
        self.report(name, (time.perf_counter() - started) * 1000, None, 0)
        return state

    def expect_close(self, timeout: float | None = None) -> int:
        """Connect and wait for the server to close the socket; its close code (0 if it didn't)."""
        headers = [f"Authorization: Bearer {self.token}"] if self.token is not None else []
        self.ws = websocket.create_connection(
            self.url,
            header=headers,
            origin=self.origin,
            suppress_origin=self.origin is None,
            timeout=timeout or self.timeout,
        )
        try:
            while True:
                opcode, frame = self.ws.recv_data_frame()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return _close_code(frame.data)
        except websocket.WebSocketTimeoutException:
            return 0
        except websocket.WebSocketConnectionClosedException:
            return 1006
        finally:
            self.abort()

    def close(self) -> None:
        """Close politely (close frame), then stop the reader."""
        if self.ws is not None:
            try:
                # The reader leaves the socket without a timeout, and websocket-client sends
                # the close frame with the socket's own: a full send buffer (a flood the
                # server stopped reading) would hold this player, and Locust's shutdown, forever.
                if self.ws.sock is not None:
                    self.ws.sock.settimeout(2)
                self.ws.close(timeout=2)
            except Exception:  # noqa: S110 - already gone
                pass
        self.abort()

    def abort(self) -> None:
        """Drop the connection without a close frame, as a lost network would."""
        if self.ws is not None:
            try:
                self.ws.shutdown()
            except Exception:  # noqa: S110 - already gone
                pass
        if self._reader is not None:
            self._reader.kill(block=False)
        self.ws = None
        self._reader = None

    # --- Sending --------------------------------------------------------------------------

    def send(self, frame: dict[str, Any]) -> None:
        """Send a JSON frame."""
        if self.ws is None:
            raise Closed(1006, "not connected")
        self.ws.send(json.dumps(frame, separators=(",", ":")))

    def send_raw(self, data: str | bytes) -> None:
        """Send anything (the abuse scenario's malformed frames)."""
        if self.ws is None:
            raise Closed(1006, "not connected")
        if isinstance(data, bytes):
            self.ws.send_binary(data)
        else:
            self.ws.send(data)

    def answer(self, round_number: int, option: int) -> None:
        """Answer a round; the ack's latency is reported when it arrives."""
        self._ack_sent_at[round_number] = time.perf_counter()
        self.send({"type": "answer", "round": round_number, "option": option})

    def ping(self) -> float:
        """Send a ping; its pong is reported as `ping` (and feeds the clock offset) on arrival."""
        t = now_ms()
        self._pings.add(t)
        self.send({"type": "ping", "t": t})
        return t

    def sync_clock(self, samples: int = 3) -> None:
        """Estimate the clock offset from a few pings (the fastest round trip wins)."""
        for _ in range(samples):
            self.ping()
            self.next("pong", timeout=self.timeout)

    # --- Receiving ------------------------------------------------------------------------

    def next(self, kind: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """The next frame (of type `kind`, skipping others); Closed if the socket closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            arrival = self.next_arrival(max(0.0, deadline - time.monotonic()))
            if arrival is None:
                raise TimeoutError(f"no {kind or 'frame'} within {timeout or self.timeout:.0f}s")
            if kind is None or arrival.frame["type"] == kind:
                return arrival.frame

    def next_arrival(self, timeout: float) -> Arrival | None:
        """The next frame with its arrival time, None on timeout; Closed if the socket closed."""
        try:
            item = self._queue.get(timeout=timeout)
        except Empty:
            return None
        if isinstance(item, Closed):
            self._queue.put(item)  # later calls see it too
            raise item
        assert isinstance(item, Arrival)
        return item

    def _read(self, ws: websocket.WebSocket) -> None:
        ws.settimeout(None)
        try:
            while True:
                opcode, frame = ws.recv_data_frame()
                at = now_ms()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    self._closed(Closed(_close_code(frame.data)))
                    return
                data = frame.data
                msg = json.loads(data.decode() if isinstance(data, bytes) else data)
                self._observe(msg, at)
                self._queue.put(Arrival(msg, at))
        except (websocket.WebSocketConnectionClosedException, OSError):
            self._closed(Closed(1006, "connection lost"))
        except gevent.GreenletExit:
            raise
        except Exception as exc:
            self._closed(Closed(1006, f"reader failed: {exc!r}"))

    def _closed(self, exc: Closed) -> None:
        self.closed = exc
        self._queue.put(exc)

    def _observe(self, msg: dict[str, Any], at: float) -> None:
        """Measurements taken the moment a frame arrives."""
        kind = msg.get("type")
        if kind == "state":
            self.last_seq = int(msg["seq"])
            question = msg.get("question")
            if question and msg.get("round") is not None:
                self.deadlines[int(msg["round"])] = int(question["deadline"])
        elif kind in BROADCASTS:
            seq = int(msg["seq"])
            if seq > self.last_seq + 1:
                missing = seq - self.last_seq - 1
                self.lost += missing
                for _ in range(missing):
                    self.report(sc.LOST_FRAME, 0, ProtocolError(f"seq gap before {kind}"), 0)
                self.gaps.append((self.last_seq, seq, str(kind)))
                # The protocol's remedy: ask for a fresh state and carry on from it.
                try:
                    self.send({"type": "sync"})
                except Exception:  # noqa: S110 - the reader will see the socket die
                    pass
            self.last_seq = max(self.last_seq, seq)
        if kind == "error" and self.honest:
            self.report(f"error:{msg.get('code')}", 0, ProtocolError(str(msg.get("message"))), 0)
        if kind == "question":
            self.deadlines[int(msg["round"])] = int(msg["deadline"])
            skew = at + self.clock_offset - float(msg["server_time"])
            self.report(sc.QUESTION_FANOUT, max(0.0, skew), None, 0)
        elif kind == "round_result":
            deadline = self.deadlines.get(int(msg["round"]))
            if deadline is not None and at + self.clock_offset >= deadline:
                self.report(sc.RESULT_AFTER_DEADLINE, at + self.clock_offset - deadline, None, 0)
        elif kind == "answer_ack":
            sent = self._ack_sent_at.pop(int(msg["round"]), None)
            if sent is not None:
                elapsed = (time.perf_counter() - sent) * 1000
                refused = None if msg.get("accepted") else ProtocolError(f"refused: {msg.get('reason')}")
                self.report(sc.ANSWER_ACK, elapsed, refused, 0)
        elif kind == "pong":
            # Only the answer to a ping of this client's own that is still waiting: any other
            # `t` (an abuser's probe sends `t: 1`) would make its round trip the epoch's age.
            t = msg.get("t")
            if isinstance(t, int | float) and t in self._pings:
                self._pings.discard(t)
                rtt = at - t
                self.report(sc.PING, rtt, None, 0)
                if rtt < self._best_rtt:
                    self._best_rtt = rtt
                    self.clock_offset = float(msg["server_time"]) - (t + rtt / 2)


def _close_code(data: bytes | str) -> int:
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) >= 2:
        return int(struct.unpack("!H", raw[:2])[0])
    return 1005
