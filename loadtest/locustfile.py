"""NuxTest load scenarios for Locust: real players over the documented protocol.

    locust -f loadtest/locustfile.py --headless --scenario steady -u 100 -r 10 -t 2m \
        -H http://127.0.0.1:8000

Scenarios (loadtest/scenarios.py): steady, party, spike, reconnect, soak, abuse. Each
WebSocket exchange is reported to Locust with request_type "WS": `handshake`,
`answer_ack`, `question_fanout` (arrival - server_time, after the ping/pong clock
offset), `round_result_after_deadline`, `ping` (a player's own pings only), `reconnect`,
`game`, `lost_frame` (one failure per missing seq), `error:<code>` and `close:<code>`
(failures; a refused handshake is one `close:<code>`), and `abuse:*` (the abusers' own
probes: a success means the server refused them as documented). The run's thresholds are
checked in the `quitting` hook and set the exit code.

Environment: LOADTEST_SCENARIO (or --scenario); LOADTEST_PROMETHEUS_PORT (serve `locust_*`
metrics) and LOADTEST_PROMETHEUS_ADDR (default 127.0.0.1); LOADTEST_ACCOUNTS (account cache
file); LOADTEST_SUMMARY (write the verdict as JSON); LOADTEST_MAX_ERROR_RATIO,
LOADTEST_MAX_P99_ACK_MS, LOADTEST_MAX_LOST_FRAMES, LOADTEST_MAX_MEMORY_GROWTH (soak only)
(override thresholds); LOADTEST_THINK_MIN, LOADTEST_THINK_MAX, LOADTEST_SKIP_PROBABILITY,
LOADTEST_STORM_FRACTION, LOADTEST_STORM_PERIOD (player behaviour).
"""

from __future__ import annotations

# Locust monkey-patches the interpreter with gevent when it is imported: first, before
# requests (and so ssl) is, or importing this file outside the `locust` command recurses.
import locust  # noqa: F401

# isort: split
import base64
import json
import logging
import os
import random
import re
import socket
import string
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
import requests
from gevent.event import Event
from locust import HttpUser, between, events
from locust.clients import HttpSession
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import RequestStats, calculate_response_time_percentile, diff_response_time_dicts

from loadtest import exporter
from loadtest import scenarios as sc
from loadtest.accounts import PASSWORD, accounts_path
from loadtest.client import SERVICE_RESTART, Closed, GameSocket, ProtocolError, ws_url

logger = logging.getLogger("loadtest")

ROOT = Path(__file__).resolve().parent
PARTY_SIZE = 8
PARTY_WAIT_SECONDS = 10.0
# Access tokens live 30 minutes on the server; fetch a new one well before.
TOKEN_MAX_AGE_SECONDS = 20 * 60
# Daphne (Twisted) closes an HTTP connection that has been idle for 60 s. A request sent on
# it at that moment gets no response at all (RemoteDisconnected: status 0 in Locust), and
# a POST is not retried: a player's matchmaking request after a game of about a minute hit
# it about once an hour. A player opens a new connection after this long instead, as a
# proxy with a shorter keep-alive does (deploy/nginx/nginx.conf).
HTTP_IDLE_SECONDS = 30.0
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

SCENARIO: sc.Scenario = sc.scenario_get(os.environ.get("LOADTEST_SCENARIO", "steady"))
STARTED = time.time()
# Set when every user has been spawned: the spike scenario's crowd joins at once then.
CROWD_READY = Event()
# Rooms honest players are in now (targets for the abusers' refused handshakes).
ACTIVE_ROOMS: set[str] = set()
ENVIRONMENT: Environment | None = None
# Per (type, name): response-time counts, requests, untimed requests, failures.
StatsSnapshot = dict[tuple[str, str], tuple[dict[int, int], int, int, int]]
# Locust's statistics when the last user had started (stats_snapshot), for `after_ramp`;
# None until then. Empty when every user started before the first request (a spike).
RAMP_END: StatsSnapshot | None = None


MAX_RESTART_RECONNECTS = 3


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--scenario",
        type=str,
        env_var="LOADTEST_SCENARIO",
        default=os.environ.get("LOADTEST_SCENARIO", "steady"),
        choices=list(sc.SCENARIOS),
        help="NuxTest scenario: " + ", ".join(sc.SCENARIOS),
    )


def report(environment: Environment) -> Any:
    """A client.Report that fires Locust request events of type WS."""

    def fire(name: str, response_time: float, exception: Exception | None, length: int) -> None:
        environment.events.request.fire(
            request_type=sc.WS,
            name=name,
            response_time=response_time,
            response_length=length,
            exception=exception,
            context={},
        )

    return fire


# --- Accounts: sign up once, then reuse (password hashing is the server's dearest call) ----


class AccountPool:
    """Accounts kept in a JSON file per target host, with their refresh tokens."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.free: list[dict[str, str]] = []
        self.used: dict[str, dict[str, str]] = {}

    def load(self, host: str) -> None:
        """Read the cache for `host` once."""
        if self.path is not None:
            return
        self.path = accounts_path(host)
        try:
            self.free = list(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            self.free = []

    def take(self) -> dict[str, str] | None:
        """An account nobody in this process uses, or None."""
        while self.free:
            account = self.free.pop()
            if account["username"] not in self.used:
                self.used[account["username"]] = account
                return account
        return None

    def keep(self, account: dict[str, str]) -> None:
        """Remember an account (new, or with a new refresh token)."""
        self.used[account["username"]] = account

    def save(self) -> None:
        """Write every account back (those of this run first)."""
        if self.path is None:
            return
        accounts = {a["username"]: a for a in self.free}
        accounts.update(self.used)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(list(accounts.values())))


ACCOUNTS = AccountPool()


def _claims(token: str) -> dict[str, Any]:
    """A JWT's claims, read without verifying it (the server verifies; we only look)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def why(r: Any) -> str:
    """A failed response in a line: its status and body, or what went wrong without one."""
    if r.status_code == 0:  # no response at all: the connection failed or was closed
        return f"no response: {r.error!r}"[:300]
    return f"{r.status_code} {r.text[:200]}"


class FreshSession(HttpSession):
    """Locust's HttpSession that never reuses a connection idle for HTTP_IDLE_SECONDS."""

    last_used = 0.0

    def request(self, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() - self.last_used > HTTP_IDLE_SECONDS:
            self.close()  # the pools empty; the next request connects anew
        try:
            return super().request(*args, **kwargs)
        finally:
            self.last_used = time.monotonic()


class _Authenticated(HttpUser):
    """An HttpUser with a NuxTest account and a fresh access token."""

    abstract = True
    account: dict[str, str]
    token: str
    token_at: float = 0.0
    user_id: int | None = None
    signed_in = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = FreshSession(
            base_url=self.host,
            request_event=self.environment.events.request,
            user=self,
            pool_manager=self.pool_manager,
        )
        self.client.trust_env = False

    def on_start(self) -> None:
        ACCOUNTS.load(self.host or "")
        try:
            account = ACCOUNTS.take()
            self.account = account or self._signup()
            self._token()
        except StopUser as exc:
            # Raised out of on_start, Locust logs it with a traceback under an empty line
            # (StopUser says nothing); a server that is down would print that per user.
            # One line says where and why; the user stops before its first task.
            logger.error("a user stops: no access token from %s: %s", self.host, exc)
            self.stop()
            return
        self.signed_in = True

    def _signup(self) -> dict[str, str]:
        name = "lt" + uuid.uuid4().hex[:14]
        with self.client.post(
            "/api/auth/signup/",
            json={"username": name, "password": PASSWORD},
            name="/api/auth/signup/",
            catch_response=True,
        ) as r:
            if r.status_code != 201:
                failed = f"signup: {why(r)}"
                r.failure(failed)
                raise StopUser(failed)
        account = {"username": name, "password": PASSWORD, "refresh": ""}
        ACCOUNTS.keep(account)
        return account

    def _token(self) -> None:
        """An access token: from the refresh token if it still works, else by password."""
        if self.account.get("refresh"):
            with self.client.post(
                "/api/auth/token/refresh/",
                json={"refresh": self.account["refresh"]},
                name="/api/auth/token/refresh/",
                catch_response=True,
            ) as r:
                if r.status_code == 200:
                    self.token, self.token_at = r.json()["access"], time.monotonic()
                    return
                if r.status_code != 401:
                    # A busy or failing server, not an unknown account: a failure, and no
                    # sign-up (a crowd of sign-ups is the dearest load there is).
                    failed = f"refresh: {why(r)}"
                    r.failure(failed)
                    raise StopUser(failed)
                r.success()  # an expired or foreign refresh token
                revoked = "password has changed" in r.text  # or issued before that rule
            if not revoked and _claims(self.account["refresh"]).get("exp", 0) > time.time():
                # Unexpired yet refused: this server does not know the account (another
                # database). Sign up anew rather than log in and fail, which login-lockout
                # protection would count against the load generator's address.
                self.account = self._signup()
        for _ in range(2):
            with self.client.post(
                "/api/auth/token/",
                json={"username": self.account["username"], "password": self.account["password"]},
                name="/api/auth/token/",
                catch_response=True,
            ) as r:
                if r.status_code == 200:
                    body = r.json()
                    self.account["refresh"] = body["refresh"]
                    ACCOUNTS.keep(self.account)
                    self.token, self.token_at = body["access"], time.monotonic()
                    return
                if r.status_code != 401:
                    failed = f"token: {why(r)}"
                    r.failure(failed)
                    raise StopUser(failed)
                r.success()  # an account this server does not know (another database)
            self.account = self._signup()
        raise StopUser("token: 401 for an account signed up just now")

    def token_fresh(self) -> str:
        """The access token, renewed when it is old."""
        if time.monotonic() - self.token_at > TOKEN_MAX_AGE_SECONDS:
            self._token()
        return self.token

    def auth(self) -> dict[str, str]:
        """The API's Authorization header."""
        return {"Authorization": f"Bearer {self.token_fresh()}"}

    def socket(self, code: str, **kwargs: Any) -> GameSocket:
        """A GameSocket to room `code` on the target host."""
        return GameSocket(
            ws_url(self.host or "", code), self.token_fresh(), report(self.environment), **kwargs
        )

    def room_create(self, settings: dict[str, Any], name: str = "/api/rooms/") -> str | None:
        """POST /api/rooms/ → the room code (None if refused)."""
        with self.client.post(
            "/api/rooms/", json=settings, headers=self.auth(), name=name, catch_response=True
        ) as r:
            if r.status_code != 201:
                r.failure(why(r))
                return None
            return str(r.json()["code"])


# --- Party rooms: hosts open them, friends take a seat by code -----------------------------


class PartyBoard:
    """Party rooms with free seats, shared by the users of this Locust process."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, int]] = {}

    def open(self, code: str) -> None:
        """A host opened `code` with PARTY_SIZE - 1 seats for friends."""
        self.rooms[code] = {"free": PARTY_SIZE - 1, "taken": 0}

    def take(self) -> str | None:
        """A seat in the oldest open party room, or None."""
        for code, seats in self.rooms.items():
            if seats["free"] > 0:
                seats["free"] -= 1
                seats["taken"] += 1
                return code
        return None

    def close(self, code: str) -> int:
        """No more seats; how many friends took one."""
        seats = self.rooms.pop(code, {"taken": 0})
        return seats["taken"]


PARTY = PartyBoard()


# --- Honest players -------------------------------------------------------------------------


class Player(_Authenticated):
    """An honest player: joins a room, plays whole games, measures every exchange."""

    wait_time = between(0.5, 2.0)
    weight = 4

    def on_start(self) -> None:
        super().on_start()
        if self.signed_in and SCENARIO.burst and not CROWD_READY.is_set():
            CROWD_READY.wait(timeout=600)

    @staticmethod
    def _task(user: Player) -> None:
        user.play_one_game()

    tasks = [_task]

    def play_one_game(self) -> None:
        """Join a room as the scenario says and play it to the end."""
        if SCENARIO.rooms == "party":
            code = PARTY.take()
            if code is not None:
                self.play(code)
                return
            code = self.room_create({"max_players": PARTY_SIZE, "rounds": 5})
            if code is None:
                return
            PARTY.open(code)
            self.play(code, party_host=True)
            return
        code = self.quick_match()
        if code is not None:
            self.play(code)

    def quick_match(self) -> str | None:
        """POST /api/matchmaking/; a busy server's 503 is retried after its Retry-After (twice).

        Each 503 stays a failure in the statistics (the verdict sees it); the retry is what a
        real client does, so the player goes on playing instead of leaving the load.
        """
        for attempt in range(3):
            with self.client.post(
                "/api/matchmaking/", headers=self.auth(), name="/api/matchmaking/", catch_response=True
            ) as r:
                if r.status_code == 200:
                    return str(r.json()["code"])
                r.failure(why(r))
                if r.status_code != 503 or attempt == 2:
                    return None
                try:
                    wait = float(r.headers.get("Retry-After") or 1)
                except ValueError:
                    wait = 1.0
            gevent.sleep(min(wait, 10.0))
        return None

    def play(self, code: str, *, party_host: bool = False) -> None:
        """Play one game in room `code`; report it as `game` when it is over."""
        sock = self.socket(code)
        started = time.perf_counter()
        ACTIVE_ROOMS.add(code)
        try:
            restarts = 0
            # Kept over reconnects: when the game started, as this player saw it.
            progress: dict[str, float] = {}
            restarted_at: float | None = None
            while True:
                try:
                    self._play(sock, code, party_host, progress=progress, restarted_at=restarted_at)
                    break
                except Closed as exc:
                    # A server restarting (close 1012) hands its players over: reconnect — the
                    # load balancer picks another instance — and resume from the `state`.
                    if exc.code != SERVICE_RESTART or restarts >= MAX_RESTART_RECONNECTS:
                        raise
                    restarts += 1
                    if restarted_at is None or progress.get("resumed_at", 0.0) > restarted_at:
                        # A new cut-off; a 1012 answering the reconnect itself (a stopping
                        # server reached again) is the same one, timed from its first close.
                        restarted_at = time.perf_counter()
                    sock.abort()
                    gevent.sleep(random.uniform(0, 0.5))
                    sock.token = self.token_fresh()
        except Exception as exc:
            # A failed handshake has been reported by `open` (a refusal as close:<code>):
            # reported again here, one refusal would count as two failures.
            if exc is not sock.open_failure:
                self._report_end(exc, started)
        finally:
            if sock.gaps:
                logger.warning("room %s: seq gaps (last seen, arrived, type) %s", code, sock.gaps)
            ACTIVE_ROOMS.discard(code)
            if party_host:
                PARTY.close(code)
            sock.close()

    def _report_end(self, exc: Exception, started: float) -> None:
        """Report what ended a game early: an unexpected close, a stall or a socket error."""
        fire = report(self.environment)
        if isinstance(exc, Closed):
            fire(f"close:{exc.code}", 0, exc, 0)
        elif isinstance(exc, TimeoutError):
            fire("stalled", (time.perf_counter() - started) * 1000, exc, 0)
        else:  # a socket error: count it, then play the next game
            fire(f"exception:{type(exc).__name__}", 0, exc, 0)

    def _play(
        self,
        sock: GameSocket,
        code: str,
        party_host: bool,
        *,
        progress: dict[str, float],
        restarted_at: float | None = None,
    ) -> None:
        state = sock.open()
        if restarted_at is not None:
            # How long the player was cut off: from the 1012 to the new connection's `state`.
            progress["resumed_at"] = time.perf_counter()
            report(self.environment)(
                "reconnect_after_restart", (progress["resumed_at"] - restarted_at) * 1000, None, 0
            )
        sock.sync_clock()
        members = {p["id"] for p in state["players"]}
        status = state["status"]
        rounds = int(state["settings"]["rounds"])
        answer_seconds = float(state["settings"]["answer_seconds"])
        reveal_seconds = float(state["settings"]["reveal_seconds"])
        idle_limit = answer_seconds + reveal_seconds + 20
        if status in ("finished", "abandoned"):
            return
        joined_at = time.monotonic()
        game_started_at = progress.setdefault("game_started_at", time.perf_counter())
        pending: tuple[float, int, int] | None = None  # (due, round, option)
        answered: set[int] = set()
        closing_party = False
        storm_epoch = self._storm_epoch()
        pending = self._maybe_schedule(state, answered)
        last_frame = time.monotonic()
        while True:
            now = time.monotonic()
            if pending is not None and now >= pending[0]:
                _, number, option = pending
                pending = None
                if number not in answered:
                    answered.add(number)
                    sock.answer(number, option)
                continue
            if SCENARIO.storm_fraction and status == "playing":
                epoch = self._storm_epoch()
                if epoch != storm_epoch:
                    storm_epoch = epoch
                    if random.random() < SCENARIO.storm_fraction:
                        state = self._reconnect(sock)
                        status = state["status"]
                        if status in ("finished", "abandoned"):
                            return
                        pending = self._maybe_schedule(state, answered)
                        last_frame = time.monotonic()
                        continue
            if status == "lobby":
                waited = now - joined_at
                if party_host:
                    if not closing_party and (len(members) >= PARTY_SIZE or waited > PARTY_WAIT_SECONDS):
                        # No more seats; start once every friend who took one is here.
                        closing_party = True
                        expected = 1 + PARTY.close(code)
                        party_deadline = now + 20
                    if closing_party and (len(members) >= expected or now > party_deadline):
                        sock.send({"type": "start"})
                        party_host = False
                # A quick-match room starts by itself once a second player is in (nobody
                # hosts it); a player alone waits for company, as a real one would.
            timeout = 1.0 if status == "lobby" else max(0.05, idle_limit - (now - last_frame))
            if pending is not None:
                timeout = min(timeout, max(0.0, pending[0] - now))
            if SCENARIO.storm_fraction:
                timeout = min(timeout, self._until_next_storm())
            arrival = sock.next_arrival(timeout)
            if arrival is None:
                if status != "lobby" and pending is None and time.monotonic() - last_frame > idle_limit:
                    raise TimeoutError(f"room {code}: no frame for {idle_limit:.0f}s while {status}")
                if status == "lobby" and len(members) >= 2 and time.monotonic() - joined_at > 120:
                    raise TimeoutError(f"room {code}: the game did not start in 120s")
                continue
            last_frame = time.monotonic()
            frame = arrival.frame
            kind = frame["type"]
            if kind == "player_joined":
                members.add(frame["player"]["id"])
            elif kind == "game_started":
                status = "playing"
                game_started_at = progress["game_started_at"] = time.perf_counter()
            elif kind == "question":
                status = "playing"
                pending = self._schedule(int(frame["round"]), answer_seconds, answered)
            elif kind == "state":  # after a sync
                state = frame
                status = frame["status"]
                if status in ("finished", "abandoned"):
                    # The game ended within the gap that made us sync: its game_over went
                    # out before this state and will not come again.
                    return
                members |= {p["id"] for p in frame["players"]}
                pending = self._maybe_schedule(frame, answered) or pending
            elif kind == "round_result":
                if pending is not None and pending[1] == frame["round"]:
                    pending = None
            elif kind == "game_over":
                report(self.environment)(
                    sc.GAME, (time.perf_counter() - game_started_at) * 1000, None, rounds
                )
                return

    def _schedule(
        self, number: int, answer_seconds: float, answered: set[int]
    ) -> tuple[float, int, int] | None:
        """When to answer round `number` (None: this player skips it)."""
        if number in answered or random.random() < SCENARIO.skip_probability:
            return None
        think = random.uniform(SCENARIO.think_min, min(SCENARIO.think_max, answer_seconds * 0.9))
        return (time.monotonic() + think, number, random.randrange(4))

    def _maybe_schedule(self, state: dict[str, Any], answered: set[int]) -> tuple[float, int, int] | None:
        """After a `state`: answer the open round if this player has not yet."""
        question = state.get("question")
        if state["status"] != "playing" or not question or question.get("answered"):
            return None
        number = int(state["round"])
        if number in answered:
            return None
        remaining = (question["deadline"] - time.time() * 1000) / 1000
        if remaining < 0.5:
            return None
        think = random.uniform(0.1, min(remaining * 0.5, SCENARIO.think_max))
        return (time.monotonic() + think, number, random.randrange(4))

    def _reconnect(self, sock: GameSocket) -> dict[str, Any]:
        """Drop the socket as a lost network would, come back, and report the time to `state`."""
        sock.abort()
        gevent.sleep(random.uniform(0, SCENARIO.reconnect_delay))
        sock.token = self.token_fresh()
        state = sock.open(name=sc.RECONNECT)
        return state

    @staticmethod
    def _storm_epoch() -> int:
        return int((time.time() - STARTED) / SCENARIO.storm_period)

    @staticmethod
    def _until_next_storm() -> float:
        elapsed = time.time() - STARTED
        return max(0.05, SCENARIO.storm_period - elapsed % SCENARIO.storm_period + 0.01)


# --- Abusers --------------------------------------------------------------------------------


class Abuser(_Authenticated):
    """Malformed frames, floods and bad handshakes; each probe passes if it is refused as documented."""

    wait_time = between(0.5, 2.0)
    weight = 1
    room: str | None = None

    @staticmethod
    def _task(user: Abuser) -> None:
        random.choice(
            [
                user.bad_token,
                user.no_origin_no_token,
                user.bad_origin,
                user.no_room,
                user.malformed_frames,
                user.flood,
                user.too_many_connections,
                user.garbage_upgrade,
            ]
        )()

    tasks = [_task]

    def probe(self, name: str, started: float, ok: bool, detail: str) -> None:
        """Report one abuse probe as WS `abuse:<name>`."""
        report(self.environment)(
            sc.ABUSE_PREFIX + name,
            (time.perf_counter() - started) * 1000,
            None if ok else ProtocolError(detail),
            0,
        )

    def target_room(self) -> str:
        """An honest room if one is being played, else a room of the abuser's own."""
        if ACTIVE_ROOMS and random.random() < 0.5:
            return random.choice(sorted(ACTIVE_ROOMS))
        return self.own_room() or "ABCDEF"

    def own_room(self) -> str | None:
        """A lobby room of the abuser's own (created once)."""
        if self.room is None:
            self.room = self.room_create({"rounds": 1}, name="/api/rooms/ (abuser)")
        return self.room

    def _expect_close(self, name: str, code: str, want: int, **kwargs: Any) -> None:
        started = time.perf_counter()
        sock = GameSocket(
            ws_url(self.host or "", code), honest=False, report=report(self.environment), **kwargs
        )
        try:
            got = sock.expect_close(timeout=10)
        except Exception as exc:
            self.probe(name, started, False, f"handshake failed: {exc!r}")
            return
        self.probe(name, started, got == want, f"closed {got}, expected {want}")

    def bad_token(self) -> None:
        """A forged bearer token → 4401."""
        forged = "not.a.jwt"
        self._expect_close("bad_token", self.target_room(), 4401, token=forged)

    def no_origin_no_token(self) -> None:
        """No Origin and no token (not a browser, not authenticated) → 4403."""
        self._expect_close("no_origin_no_token", self.target_room(), 4403, token=None)

    def bad_origin(self) -> None:
        """A valid token from a foreign Origin → 4403."""
        self._expect_close(
            "bad_origin", self.target_room(), 4403, token=self.token_fresh(), origin="http://evil.invalid"
        )

    def no_room(self) -> None:
        """A room that does not exist → 4404."""
        code = "".join(random.choice(CODE_ALPHABET) for _ in range(6))
        self._expect_close("no_room", code, 4404, token=self.token_fresh())

    def _own_socket(self) -> GameSocket | None:
        code = self.own_room()
        if code is None:
            return None
        sock = self.socket(code, honest=False)
        sock.open(name=sc.ABUSE_PREFIX + "handshake")
        return sock

    def malformed_frames(self) -> None:
        """Each malformed frame gets its documented error; the connection stays open."""
        sock = self._own_socket()
        if sock is None:
            return
        cases: list[tuple[str, str | bytes]] = [
            ("bad_json", "{oops"),
            ("bad_json", "[1, 2, 3]"),
            ("bad_json", b"\xff\xfe"),
            ("unknown_type", json.dumps({"type": "teleport"})),
            ("invalid_field", json.dumps({"no": "type"})),
            ("invalid_field", json.dumps({"type": "answer", "round": "1", "option": 1})),
            ("invalid_field", json.dumps({"type": "answer", "round": 1, "option": 9})),
            ("invalid_field", json.dumps({"type": "ping", "t": "soon"})),
            ("message_too_large", json.dumps({"type": "ping", "pad": "x" * 70_000})),
        ]
        try:
            for want, raw in cases:
                started = time.perf_counter()
                sock.send_raw(raw)
                try:
                    frame = sock.next("error", timeout=10)
                except (TimeoutError, Closed) as exc:
                    self.probe(want, started, False, repr(exc))
                    return
                self.probe(want, started, frame.get("code") == want, f"got {frame.get('code')}")
            started = time.perf_counter()
            sock.send({"type": "ping", "t": 1})
            pong = sock.next("pong", timeout=10)
            self.probe("still_open", started, pong.get("t") == 1, "no pong after the bad frames")
        except Closed as exc:
            self.probe("still_open", time.perf_counter(), False, repr(exc))
        finally:
            sock.close()

    def flood(self) -> None:
        """Frames far over the rate limit → `rate_limited`, then close 4429."""
        sock = self._own_socket()
        if sock is None:
            return
        started = time.perf_counter()
        limited = False
        code = 0
        try:
            for _ in range(200):
                sock.send({"type": "ping"})
        except Exception:  # noqa: S110 - the server closed while we still wrote: read on
            pass
        try:
            while True:
                frame = sock.next("error", timeout=10)
                limited = limited or frame.get("code") == "rate_limited"
        except Closed as exc:
            code = exc.code
        except TimeoutError:
            pass
        finally:
            sock.close()
        self.probe("flood", started, limited and code == 4429, f"rate_limited={limited} close={code}")

    def too_many_connections(self) -> None:
        """One account, six sockets at once: the sixth is closed with 4429."""
        code = self.own_room()
        if code is None:
            return
        gevent.sleep(0.5)  # the server forgets this account's earlier sockets first
        started = time.perf_counter()
        socks: list[GameSocket] = []
        try:
            for _ in range(5):
                sock = self.socket(code, honest=False)
                sock.open(name=sc.ABUSE_PREFIX + "handshake")
                socks.append(sock)
            extra = GameSocket(ws_url(self.host or "", code), self.token_fresh(), report(self.environment))
            got = extra.expect_close(timeout=10)
            self.probe("too_many_connections", started, got == 4429, f"closed {got}, expected 4429")
        except Exception as exc:
            self.probe("too_many_connections", started, False, repr(exc))
        finally:
            for sock in socks:
                sock.close()

    def garbage_upgrade(self) -> None:
        """Bytes that are not HTTP at all on the WebSocket port: the server hangs up."""
        parts = urlsplit(self.host or "")
        started = time.perf_counter()
        try:
            with socket.create_connection((parts.hostname, parts.port or 80), timeout=10) as s:
                s.sendall(
                    ("GET /ws/rooms/ABCDEF/ HTTP/1.1\r\nUpgrade: websocket\r\n" + "X" * 100).encode()
                    + bytes(random.choice(string.printable.encode()) for _ in range(50))
                    + b"\r\n\r\n\x00\xff\x00\xff\r\n\r\n"
                )
                reply = s.recv(200)
            ok = reply == b"" or reply.startswith(b"HTTP/1.1 4")
        except (TimeoutError, OSError) as exc:
            self.probe("garbage_upgrade", started, isinstance(exc, ConnectionError), repr(exc))
            return
        self.probe("garbage_upgrade", started, ok, f"reply {reply[:40]!r}")


# --- Hooks: pick the scenario, export metrics, judge the run --------------------------------


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    global SCENARIO, ENVIRONMENT
    ENVIRONMENT = environment
    options = environment.parsed_options
    name = getattr(options, "scenario", None) or os.environ.get("LOADTEST_SCENARIO", "steady")
    SCENARIO = sc.scenario_get(name)
    if SCENARIO.abuse_share > 0:
        Player.weight = max(1, round((1 - SCENARIO.abuse_share) * 100))
        Abuser.weight = max(1, round(SCENARIO.abuse_share * 100))
    else:
        environment.user_classes[:] = [c for c in environment.user_classes if c is not Abuser]
    logger.info("NuxTest scenario %s: %s", SCENARIO.name, SCENARIO.description)
    if isinstance(environment.runner, WorkerRunner):
        return
    port = int(os.environ.get("LOADTEST_PROMETHEUS_PORT") or 0)
    if port:
        addr = os.environ.get("LOADTEST_PROMETHEUS_ADDR", "127.0.0.1")
        exporter.start(environment, port, SCENARIO.name, addr)
        logger.info("locust_* metrics on http://%s:%d/metrics", addr, port)
    if SCENARIO.watch_memory:
        MEMORY.url = (environment.host or "").rstrip("/") + "/metrics"
        gevent.spawn(MEMORY.watch)


@events.spawning_complete.add_listener
def _on_spawned(**_: Any) -> None:
    global RAMP_END
    CROWD_READY.set()
    # The figures once the last player has started: the run is judged on all of it, and the
    # summary also says how the full crowd fared without the ramp's joins (docs/capacity.md).
    if ENVIRONMENT is not None and not isinstance(ENVIRONMENT.runner, WorkerRunner):
        RAMP_END = stats_snapshot(ENVIRONMENT.stats)
        if SCENARIO.watch_memory:
            MEMORY.after_ramp = []
            gevent.spawn(MEMORY.sample)


class MemoryWatch:
    """Soak: the server's resident memory, from its /metrics every 30 s, when the last
    player has started and when the run ends.

    The growth judged is the last sample after the ramp over the first: the ramp's own
    growth (rooms, caches, the allocator's first arenas) is not a leak.
    """

    def __init__(self) -> None:
        self.url = ""
        self.first: float | None = None
        # The samples since the last player started; None until then.
        self.after_ramp: list[float] | None = None

    def watch(self) -> None:
        """Sample every 30 s, for the whole run."""
        while True:
            self.sample()
            gevent.sleep(30)

    def sample(self) -> None:
        """Read process_resident_memory_bytes once (nothing if /metrics cannot be read)."""
        try:
            text = requests.get(self.url, timeout=5).text
        except requests.RequestException:
            return
        match = re.search(r"^process_resident_memory_bytes(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
        if match is None:
            return
        rss = float(match.group(1))
        self.first = self.first or rss
        if self.after_ramp is not None:
            self.after_ramp.append(rss)
        exporter.extra_gauges["server_rss_bytes"] = rss
        exporter.extra_gauges["server_rss_growth_ratio"] = rss / self.first

    def growth_after_ramp(self) -> float | None:
        """The last sample after the ramp over the first; None with fewer than two."""
        if self.after_ramp is None or len(self.after_ramp) < 2:
            return None
        return self.after_ramp[-1] / self.after_ramp[0]


MEMORY = MemoryWatch()


def stats_snapshot(stats: RequestStats) -> StatsSnapshot:
    """Each entry's response-time counts, requests, untimed requests and failures, now."""
    return {
        (e.method or "", e.name): (
            dict(e.response_times),
            e.num_requests,
            e.num_none_requests,
            e.num_failures,
        )
        for e in stats.entries.values()
    }


def stats_rows(
    stats: RequestStats, since: StatsSnapshot | None = None
) -> list[tuple[str, str, int, int, float | None]]:
    """Locust's statistics as rows for scenarios.verdict; with `since`, only what came after it."""
    rows = []
    for entry in stats.entries.values():
        before, n0, none0, failures0 = (since or {}).get((entry.method or "", entry.name), ({}, 0, 0, 0))
        timed = (entry.num_requests - entry.num_none_requests) - (n0 - none0)
        times = diff_response_time_dicts(entry.response_times, before) if since else entry.response_times
        p99 = float(calculate_response_time_percentile(times, timed, 0.99)) if timed > 0 else None
        rows.append(
            (entry.method or "", entry.name, entry.num_requests - n0, entry.num_failures - failures0, p99)
        )
    return rows


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    ACCOUNTS.save()
    if isinstance(environment.runner, WorkerRunner):
        return
    growth = None
    if SCENARIO.watch_memory:
        MEMORY.sample()  # the last sample: the run's end
        growth = MEMORY.growth_after_ramp()
    result = sc.verdict(SCENARIO.thresholds, stats_rows(environment.stats), growth)
    # An empty snapshot is a ramp that ended before the first request: judge all of it.
    after_ramp = (
        None
        if RAMP_END is None
        else sc.verdict(SCENARIO.thresholds, stats_rows(environment.stats, RAMP_END), growth)
    )
    ws_entries = {
        e.name: e for e in environment.stats.entries.values() if e.method == sc.WS and e.num_requests
    }
    summary = {
        "scenario": SCENARIO.name,
        "passed": result.passed,
        "missed": result.missed,
        "requests": result.requests,
        "failures": result.failures,
        "error_ratio": result.error_ratio,
        "answer_acks": result.answer_acks,
        "p99_answer_ack_ms": result.p99_answer_ack_ms,
        "lost_frames": result.lost_frames,
        "thresholds": SCENARIO.thresholds.__dict__,
        "ws": {
            name: {
                "count": e.num_requests,
                "failures": e.num_failures,
                "p50_ms": e.get_response_time_percentile(0.5),
                "p95_ms": e.get_response_time_percentile(0.95),
                "p99_ms": e.get_response_time_percentile(0.99),
                "max_ms": e.max_response_time,
            }
            for name, e in sorted(ws_entries.items())
        },
        # The same judgement over what happened after the last player started (None if the
        # run ended first): the full crowd's steady state, without the ramp's joins.
        "after_ramp": None
        if after_ramp is None
        else {
            "passed": after_ramp.passed,
            "missed": after_ramp.missed,
            "requests": after_ramp.requests,
            "failures": after_ramp.failures,
            "answer_acks": after_ramp.answer_acks,
            "p99_answer_ack_ms": after_ramp.p99_answer_ack_ms,
            "lost_frames": after_ramp.lost_frames,
        },
        "server_rss_growth_ratio": exporter.extra_gauges.get("server_rss_growth_ratio"),
        # The one judged (max_memory_growth): last sample after the ramp / first after it.
        "server_rss_growth_after_ramp": growth,
        "master": isinstance(environment.runner, MasterRunner),
    }
    path = os.environ.get("LOADTEST_SUMMARY")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(summary, indent=2, default=str))
    verdict = "PASSED" if result.passed else "FAILED: " + "; ".join(result.missed)
    logger.info("scenario %s %s (%s)", SCENARIO.name, verdict, _figures(result))
    if after_ramp is not None:
        logger.info(
            "after the ramp: %s (%s)",
            "would pass" if after_ramp.passed else "would fail: " + "; ".join(after_ramp.missed),
            _figures(after_ramp),
        )
    environment.process_exit_code = 0 if result.passed else 1


def _figures(result: sc.Verdict) -> str:
    """The figures of a verdict, for its log line."""
    figures = (
        f"requests {result.requests}, failures {result.failures}, answer acks {result.answer_acks}, "
        f"p99 ack {result.p99_answer_ack_ms} ms, lost frames {result.lost_frames}"
    )
    if SCENARIO.watch_memory:
        growth = "not measured" if result.memory_growth is None else f"{result.memory_growth:.2f}"
        figures += f", server memory growth after the ramp {growth}"
    return figures
