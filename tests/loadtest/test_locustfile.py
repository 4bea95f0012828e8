"""The load scenarios cannot rot: the locustfile loads, and each scenario plays real games.

Locust is run as a child process: importing it monkey-patches the interpreter with gevent,
which the rest of the suite (asyncio, Django) must not inherit.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loadtest import scenarios as sc
from loadtest.client import GameSocket

ROOT = Path(__file__).resolve().parents[2]
LOCUST = Path(sys.executable).parent / "locust"


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a child interpreter (importing Locust patches it with gevent)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_scenario_name_resolves_with_its_thresholds():
    assert set(sc.SCENARIOS) == {"steady", "party", "spike", "reconnect", "soak", "abuse"}
    for name in sc.SCENARIOS:
        scenario = sc.scenario_get(name)
        assert scenario.name == name
        assert scenario.thresholds.max_p99_answer_ack_ms > 0


def test_the_verdict_is_computed_from_locust_rows_and_ignores_abusers_probes():
    t = sc.Thresholds(max_error_ratio=0.0, max_p99_answer_ack_ms=50, max_lost_frames=0)
    ok = sc.verdict(t, [("WS", "answer_ack", 10, 0, 12.0), ("WS", "abuse:flood", 3, 3, 5.0)])
    assert ok.passed and ok.answer_acks == 10 and ok.error_ratio == 0
    slow = sc.verdict(t, [("WS", "answer_ack", 10, 0, 80.0), ("WS", "lost_frame", 1, 1, 0.0)])
    assert not slow.passed
    assert any("p99" in m for m in slow.missed) and any("lost frames" in m for m in slow.missed)


def test_a_run_in_which_no_answer_was_acknowledged_misses_its_threshold():
    # Every scenario plays the game: without an ack (a run too short, too few players) it
    # measured nothing it is judged on, and must not pass.
    t = sc.Thresholds(max_error_ratio=0.0, max_p99_answer_ack_ms=50, max_lost_frames=0)
    rows = [("POST", "/api/matchmaking/", 4, 0, 12.0), ("WS", "handshake", 4, 0, 8.0)]
    result = sc.verdict(t, rows)
    assert not result.passed
    assert result.missed == ["no answer was acknowledged: run longer or with more users"]
    assert result.answer_acks == 0 and result.p99_answer_ack_ms is None


def test_soak_judges_the_server_memory_growth_after_the_ramp(monkeypatch):
    soak = sc.scenario_get("soak").thresholds
    assert soak.max_memory_growth == 1.25
    assert sc.scenario_get("steady").thresholds.max_memory_growth is None
    acks = [("WS", "answer_ack", 10, 0, 12.0)]
    assert sc.verdict(soak, acks, 1.1).passed
    grew = sc.verdict(soak, acks, 1.3)
    assert grew.missed == ["server memory growth 1.30 > 1.25"] and grew.memory_growth == 1.3
    # No two samples of /metrics after the ramp: the soak says so, and does not pass.
    unmeasured = sc.verdict(soak, acks, None)
    assert len(unmeasured.missed) == 1 and "memory growth not measured" in unmeasured.missed[0]
    # Elsewhere the memory is not sampled, and not judged.
    assert sc.verdict(sc.scenario_get("steady").thresholds, acks, None).passed
    monkeypatch.setenv("LOADTEST_MAX_MEMORY_GROWTH", "1.5")
    assert sc.scenario_get("soak").thresholds.max_memory_growth == 1.5
    assert sc.scenario_get("steady").thresholds.max_memory_growth is None


class Sent:
    """A connected socket's sending side, for a GameSocket without a server."""

    def __init__(self) -> None:
        self.frames: list[dict] = []

    def send(self, data: str) -> None:
        self.frames.append(json.loads(data))


def test_a_pong_is_a_ping_round_trip_only_when_it_answers_a_ping_of_this_client():
    reports: list[tuple] = []
    sock = GameSocket("ws://127.0.0.1:1/ws/rooms/ABCDEF/", "token", lambda *r: reports.append(r))
    sock.ws = Sent()
    # The abuse scenario's probe sends {"type": "ping", "t": 1}: its pong is no round trip
    # (it was reported as one of 1.8e12 ms), and says nothing about the clock either.
    sock._observe({"type": "pong", "t": 1, "server_time": 1_000.0}, 1_800_000_000_000.0)
    assert reports == [] and sock.clock_offset == 0
    t = sock.ping()
    assert sock.ws.frames == [{"type": "ping", "t": t}]
    sock._observe({"type": "pong", "t": t, "server_time": t + 5_010}, t + 20)
    sock._observe({"type": "pong", "t": t, "server_time": t + 5_030}, t + 60)  # answered already
    assert [(name, rtt, exc) for name, rtt, exc, _ in reports] == [("ping", pytest.approx(20), None)]
    assert sock.clock_offset == pytest.approx(5_000)


# A Locust player against a scripted server (a fake socket per connection): the script
# defines `Server`, a `Scripted` whose `frames` queue is what the server sends.
PLAYER_AGAINST = """
import json, struct, time, types
import gevent, gevent.queue
import loadtest.locustfile as lf
from loadtest import client
from locust.env import Environment

TEXT = client.websocket.ABNF.OPCODE_TEXT


def close_frame(code):
    return client.websocket.ABNF.OPCODE_CLOSE, types.SimpleNamespace(data=struct.pack("!H", code))


class Scripted:
    sock = None

    def __init__(self):
        self.frames = gevent.queue.Queue()

    def send(self, data):
        pass

    def recv_data_frame(self):
        return self.frames.get()

    def settimeout(self, timeout):
        pass

    def shutdown(self):
        pass
"""

PLAY = """
client.websocket.create_connection = lambda *args, **kwargs: Server()
env = Environment(user_classes=[lf.Player])
env.create_local_runner()
lf.Player.host = "http://127.0.0.1:1"
player = lf.Player(env)
player.token, player.token_at = "token", time.monotonic()
lf.random.uniform = lambda low, high: 0.0  # a player sent away reconnects at once
player.play("ABCDEF")
"""


def player_against(server: str, then: str) -> subprocess.CompletedProcess[str]:
    """Run one Locust player's game against `server`, then `then` (which prints the result)."""
    return python(PLAYER_AGAINST + textwrap.dedent(server) + PLAY + textwrap.dedent(then))


def test_a_refused_handshake_is_one_failure_under_its_close_code():
    # The server accepts the upgrade and closes with 1013 before any `state` (the
    # handshake_refuse fault flag): one failure, not a `handshake` and a `close:1013` each.
    out = player_against(
        """
        class Server(Scripted):
            def __init__(self):
                super().__init__()
                self.frames.put(close_frame(1013))
        """,
        """
        # An abuser's refused handshake stays its probe's (out of the error ratio).
        abuser = client.GameSocket("ws://127.0.0.1:1/ws/rooms/ABCDEF/", None, lf.report(env), honest=False)
        try:
            abuser.open(name="abuse:handshake")
        except client.Closed:
            pass
        rows = {e.name: [e.num_requests, e.num_failures] for e in env.stats.entries.values()}
        print(json.dumps([rows, env.stats.total.num_failures]))
        """,
    )
    assert out.returncode == 0, out.stderr
    rows, failures = json.loads(out.stdout.splitlines()[-1])
    assert rows == {"close:1013": [1, 1], "abuse:handshake": [1, 1]}
    assert failures == 2  # the player's refusal and the abuser's probe, each once


def test_a_player_cut_off_by_a_restart_reports_how_long_and_its_whole_game():
    # A server restarting closes with 1012; the player reconnects (to another instance) and
    # plays on. `reconnect_after_restart` is the time it was cut off: from the close to the
    # new connection's `state` (it was only the client's own pause before the reconnect);
    # the `game` row counts from the game's start, not from the reconnect. A reconnect that
    # reaches the stopping server again is answered 1012 before any `state`: no failure,
    # the player tries again, and the cut-off is timed from the first close.
    out = player_against(
        """
        PAUSE = 0.3  # the server's time to take the player back, on the third connection


        def state():
            return {"type": "state", "room": "ABCDEF", "status": "playing", "host": 1,
                    "settings": {"rounds": 1, "answer_seconds": 30, "reveal_seconds": 0},
                    "players": [{"id": 1, "name": "p", "connected": True, "score": 0}],
                    "round": 1, "question": None, "seq": 1, "server_time": time.time() * 1000}


        class Server(Scripted):
            # Pongs for pings; the first connection is closed with 1012 once the clock is
            # synced, the second (the stopping server again) at once, the third sends the
            # game's end after its pause.
            connections = 0

            def __init__(self):
                super().__init__()
                Server.connections += 1
                self.number = Server.connections
                self.pongs = 0
                if self.number == 2:
                    self.frames.put(close_frame(1012))
                    return
                if self.number == 3:
                    gevent.sleep(PAUSE)
                self.text(state())

            def text(self, frame):
                self.frames.put((TEXT, types.SimpleNamespace(data=json.dumps(frame))))

            def send(self, data):
                frame = json.loads(data)
                if frame["type"] == "ping":
                    self.text({"type": "pong", "t": frame["t"], "server_time": time.time() * 1000})
                    self.pongs += 1
                    if self.pongs == 3 and self.number == 1:
                        self.frames.put(close_frame(1012))
                    if self.pongs == 3 and self.number == 3:
                        self.text({"type": "game_over", "seq": 2, "standings": []})
        """,
        """
        stats = env.stats.entries.values()
        print(json.dumps({e.name: [e.num_requests, e.num_failures, e.max_response_time] for e in stats}))
        """,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout.splitlines()[-1])
    assert "close:1012" not in rows, rows
    assert rows["reconnect_after_restart"][:2] == [1, 0]
    assert rows["reconnect_after_restart"][2] >= 300, rows  # the server's pause before `state`
    assert rows["game"][:2] == [1, 0]
    assert rows["game"][2] >= 300, rows  # the game went on through the player's 0.3 s away
    assert rows["handshake"][:2] == [2, 0]


def test_the_locustfile_imports_and_lists_its_users():
    code = (
        "import loadtest.locustfile as lf, loadtest.scenarios as sc;"
        "[sc.scenario_get(n) for n in sc.SCENARIOS];"
        "print(lf.Player.__name__, lf.Abuser.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Player", "Abuser"]


def test_the_run_after_its_ramp_is_judged_from_the_statistics_since_the_last_player_started():
    # Locust's own statistics object; in a subprocess, as importing Locust patches with gevent.
    code = textwrap.dedent(
        """
        import json
        import loadtest.locustfile as lf, loadtest.scenarios as sc
        from locust.stats import RequestStats
        stats = RequestStats()
        for _ in range(100):  # the ramp: slow acks, a lost frame
            stats.log_request("WS", "answer_ack", 200, 0)
        stats.log_error("WS", "lost_frame", "seq gap")
        stats.log_request("WS", "lost_frame", 0, 0)
        at_ramp_end = lf.stats_snapshot(stats)
        for _ in range(100):  # the full crowd: quick acks, nothing lost
            stats.log_request("WS", "answer_ack", 10, 0)
        t = sc.Thresholds(max_error_ratio=0.0, max_p99_answer_ack_ms=50, max_lost_frames=0)
        whole = sc.verdict(t, lf.stats_rows(stats))
        after = sc.verdict(t, lf.stats_rows(stats, at_ramp_end))
        print(json.dumps([whole.answer_acks, whole.p99_answer_ack_ms, whole.lost_frames, whole.passed,
                          after.answer_acks, after.p99_answer_ack_ms, after.lost_frames, after.passed]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [200, 200.0, 1, False, 100, 10.0, 0, True]


def test_after_ramp_is_judged_when_every_player_started_before_the_first_request(tmp_path):
    # SPAWN_RATE >= USERS (a spike): the statistics at the ramp's end are empty, and what
    # came after it is the whole run, not "no ramp end".
    summary = tmp_path / "summary.json"
    out = python(
        """
        import json, os
        import loadtest.locustfile as lf
        from locust.env import Environment
        env = Environment(user_classes=[lf.Player])
        env.create_local_runner()
        lf.ENVIRONMENT = env
        summary = os.environ["LOADTEST_SUMMARY"]
        lf._on_quitting(env)  # the ramp never ended
        never = json.load(open(summary))["after_ramp"]
        lf._on_spawned()
        for _ in range(10):
            env.stats.log_request("WS", "answer_ack", 10, 0)
        lf._on_quitting(env)
        after = json.load(open(summary))["after_ramp"]
        print(json.dumps([never, after["requests"], after["answer_acks"], after["passed"]]))
        """,
        LOADTEST_SUMMARY=str(summary),
        LOADTEST_SCENARIO="steady",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [None, 10, 10, True]


def test_a_server_that_is_not_there_is_one_line_per_user_without_a_traceback(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {
        **os.environ,
        "LOADTEST_SUMMARY": str(tmp_path / "summary.json"),
        "LOADTEST_ACCOUNTS": str(tmp_path / "accounts.json"),
    }
    argv = [str(LOCUST), "-f", "loadtest/locustfile.py", "--headless", "--scenario", "steady"]
    argv += ["-u", "2", "-r", "2", "-t", "2s", "-H", host, "--only-summary"]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and "StopUser" not in out.stderr, out.stderr
    stopped = [line for line in out.stderr.splitlines() if "a user stops" in line]
    assert len(stopped) == 2, out.stderr
    assert all(host in line and "signup: no response" in line for line in stopped), stopped
    assert not re.search(r"/ERROR/[\w.]+: *$", out.stderr, re.M), out.stderr


def test_a_player_opens_a_new_http_connection_after_an_idle_pause():
    # A server closes idle keep-alive connections (Daphne after 60 s); a request sent on one
    # as it closes gets no response. Here the pause is 0.5 s and the server counts connections.
    code = textwrap.dedent(
        """
        import threading, time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import loadtest.locustfile as lf
        from locust.env import Environment

        opened = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                opened.append(self.client_address)

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        lf.HTTP_IDLE_SECONDS = 0.5
        lf.Player.host = f"http://127.0.0.1:{server.server_port}"
        player = lf.Player(Environment(user_classes=[lf.Player]))
        counts = []
        for pause in (0, 0.1, 0.1, 1.0, 0.1):
            time.sleep(pause)
            assert player.client.get("/").status_code == 200
            counts.append(len(opened))
        print(counts)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "[1, 1, 1, 2, 2]"


# Each scenario, a few users for a few seconds: (scenario, users, seconds, extra environment).
SMOKE = [
    ("steady", 2, 20, {}),
    ("party", 2, 20, {}),
    ("spike", 2, 20, {}),
    ("reconnect", 2, 25, {"LOADTEST_STORM_FRACTION": "1", "LOADTEST_STORM_PERIOD": "10"}),
    ("soak", 2, 15, {}),
    ("abuse", 3, 20, {}),
]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("scenario", "users", "seconds", "extra"), SMOKE, ids=[s[0] for s in SMOKE])
def test_a_tiny_headless_run_plays_with_no_failure(live, tmp_path, scenario, users, seconds, extra):
    summary = tmp_path / "summary.json"
    env = {
        **os.environ,
        "LOADTEST_SUMMARY": str(summary),
        "LOADTEST_ACCOUNTS": str(tmp_path / "accounts.json"),
        # Quick answers so that a few seconds see several rounds; a shared CI machine is
        # slow now and then, so the latency bar is loose here (capacity runs keep 50 ms).
        "LOADTEST_THINK_MIN": "0.2",
        "LOADTEST_THINK_MAX": "1.0",
        "LOADTEST_MAX_P99_ACK_MS": "1000",
        # Every player answers every round: with the scenarios' 10 % skips, both players of a
        # room skipped the first round now and then (1 run in 100), and its deadline (10 s)
        # outlasted the run, which then saw no answer at all.
        "LOADTEST_SKIP_PROBABILITY": "0",
        **extra,
    }
    # One user a second: players arrive one after another, as they do in production.
    argv = [str(LOCUST), "-f", "loadtest/locustfile.py", "--headless", "--scenario", scenario]
    argv += ["-u", str(users), "-r", "1", "-t", f"{seconds}s", "-H", live.url, "--only-summary"]
    argv += ["--csv", str(tmp_path / scenario)]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 60)
    result = json.loads(summary.read_text())
    log = out.stderr[-4000:]
    assert result["failures"] == 0, (result, log)
    assert out.returncode == 0, (result, log)
    assert result["answer_acks"] >= 1, (result, log)
    assert result["ws"]["handshake"]["count"] >= 1
    # Every player started within the run: its steady part is judged apart too.
    after = result["after_ramp"]
    assert after is not None and 0 < after["requests"] <= result["requests"], result
    assert after["answer_acks"] <= result["answer_acks"]
    # The thresholds were judged from Locust's own statistics, which the CSV holds too.
    stats = (tmp_path / f"{scenario}_stats.csv").read_text()
    assert "answer_ack" in stats
    if scenario == "reconnect":
        assert result["ws"].get("reconnect", {}).get("count", 0) >= 1, result
    if scenario == "soak":  # sampled when the last player started and when the run ended
        assert result["server_rss_growth_after_ramp"] is not None, result
    if scenario == "abuse":
        probes = [name for name in result["ws"] if name.startswith("abuse:")]
        assert probes, result
        assert all(result["ws"][p]["failures"] == 0 for p in probes), result
