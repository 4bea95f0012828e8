"""The operators' command-line tools: where they write, and what they say about it."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.core.management import call_command

from game import faults, store
from game.aio import run_sync
from nuxtest import embedded

ROOT = Path(__file__).resolve().parents[2]

# Prints the REDIS_URL the settings choose for a process started without one.
_PRINT_REDIS_URL = """
import os, subprocess, sys
env = dict(os.environ)
published = env.pop("REDIS_URL")
code = "import django; django.setup(); from django.conf import settings; print(settings.REDIS_URL)"
env["DJANGO_SETTINGS_MODULE"] = "nuxtest.settings"
chosen = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
print(published, chosen.stdout.strip())
"""


def test_make_runs_embedded_redis_is_what_another_shell_reaches_while_it_runs():
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = subprocess.run(
        [sys.executable, "-m", "nuxtest.embedded", "--publish", "--", sys.executable, "-c", _PRINT_REDIS_URL],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    published, chosen = out.stdout.split()
    assert published.startswith("redis://127.0.0.1:") and chosen == published
    # Gone with the game: a later process falls back to the machine's Redis.
    assert not embedded.PUBLISHED.exists()
    assert embedded.published_url() is None


@pytest.fixture
def runner() -> Iterator[int]:
    """A live process whose command line is a runner's (`python -m nuxtest.embedded ...`)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "nuxtest.embedded"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_stale_address_left_by_a_killed_runner_is_ignored(tmp_path, monkeypatch, runner):
    stale = tmp_path / "url"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale.write_text(f"redis://127.0.0.1:1/0 {dead.pid}\n")
    monkeypatch.setattr(embedded, "PUBLISHED", stale)
    assert embedded.published_url() is None
    # Its PID taken by another process since (this one): still not a runner.
    stale.write_text(f"redis://127.0.0.1:1/0 {os.getpid()}\n")
    assert embedded.published_url() is None
    stale.write_text(f"redis://127.0.0.1:1/0 {runner}\n")
    assert embedded.published_url() == "redis://127.0.0.1:1/0"


def test_fault_flags_set_where_no_game_runs_say_so_and_are_kept():
    err = io.StringIO()
    call_command("faults", "set", "answer_delay_ms=300", stdout=io.StringIO(), stderr=err)
    assert "no web process or worker is running against this Redis" in err.getvalue()
    # With a web process's heartbeat in that Redis, the same command says nothing more.
    run_sync(store.instance_heartbeat("web-test", 30))
    err = io.StringIO()
    out = io.StringIO()
    call_command("faults", "clear", stdout=out, stderr=err)
    assert err.getvalue() == "" and '"answer_delay_ms": 0' in out.getvalue()


def test_the_metrics_show_which_fault_flags_are_on(client):
    def flags() -> dict[str, float]:
        body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
        found = re.findall(r'^nuxtest_fault_flag_on\{flag="(\w+)"\} (\S+)$', body, re.MULTILINE)
        return {flag: float(value) for flag, value in found}

    off = dict.fromkeys(faults.NAMES, 0.0)
    assert flags() == off
    call_command("faults", "set", "answer_delay_ms=300", "handshake_refuse=true", stdout=io.StringIO())
    try:
        assert flags() == {**off, "answer_delay_ms": 1.0, "handshake_refuse": 1.0}
    finally:
        call_command("faults", "clear", stdout=io.StringIO())
    assert flags() == off


def test_a_second_runner_leaves_the_first_ones_address_alone(tmp_path, monkeypatch, runner):
    first = tmp_path / "url"
    first.write_text(f"redis://127.0.0.1:1/0 {runner}\n")  # a live runner
    monkeypatch.setattr(embedded, "PUBLISHED", first)
    monkeypatch.delenv("REDIS_URL", raising=False)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert embedded.main(["--publish", "--", sys.executable, "-c", "pass"]) == 0
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert first.read_text() == f"redis://127.0.0.1:1/0 {runner}\n"


# Stands in for the game under `make run`: on Ctrl-C it still uses Redis while it stops (as
# the worker's pump and heartbeat do), and says whether Redis answered.
_STOPS_SLOWLY = """
import os, signal, sys, time
import redis
client = redis.Redis.from_url(os.environ["REDIS_URL"])
client.ping()
got = []
signal.signal(signal.SIGINT, lambda *_: got.append(1))  # before "ready": the test's Ctrl-C follows it
print("ready", os.environ["REDIS_URL"], flush=True)
while not got:
    time.sleep(0.05)
time.sleep(0.3)
try:
    client.ping()
    print("redis answered while stopping", flush=True)
except redis.RedisError as exc:
    print("redis gone while stopping:", exc, flush=True)
"""


def _runner(command: str) -> tuple[subprocess.Popen[str], str]:
    """`python -m nuxtest.embedded -- python -c command` in a process group of its own, as a
    terminal's foreground job is; returns it and its embedded Redis URL once ready."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nuxtest.embedded", "--", sys.executable, "-c", command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline().split()
    assert ready[0] == "ready", ready
    return proc, ready[1]


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def test_ctrl_c_stops_the_game_before_its_embedded_redis():
    proc, url = _runner(_STOPS_SLOWLY)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C at the terminal does
        out, _ = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert out.strip() == "redis answered while stopping"
    assert not _redis_answers(url), "the runner stops its Redis once the game has stopped"


_SLEEPS = "import os, time; print('ready', os.environ['REDIS_URL'], flush=True); time.sleep(90)"


def test_the_embedded_redis_does_not_outlive_a_killed_runner():
    proc, url = _runner(_SLEEPS)
    try:
        assert _redis_answers(url)
        proc.kill()  # the runner only: no chance to stop its Redis
        proc.wait(10)
        for _ in range(100):
            if not _redis_answers(url):
                break
            time.sleep(0.1)
        assert not _redis_answers(url)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the runner's child, left alone


# Like honcho: the game's process in a session of its own, so a terminal's signals miss it.
_STARTS_A_GAME_PROCESS = """
import os, subprocess, sys
game = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(90)"], start_new_session=True)
print("ready", os.environ["REDIS_URL"], flush=True)
print(game.pid, flush=True)
game.wait()
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adopting orphans is Linux's")
def test_closing_the_terminal_stops_the_game_and_its_embedded_redis():
    # A closed terminal sends SIGHUP to `make run`'s process group: honcho died of it and
    # left Daphne, the worker, beat and Flower running on their ports, so the next `make run`
    # failed with "Address already in use" (a README walk).
    proc, url = _runner(_STARTS_A_GAME_PROCESS)
    assert proc.stdout is not None
    game = int(proc.stdout.readline())
    try:
        assert _alive(game)
        os.killpg(proc.pid, signal.SIGHUP)  # what the shell of a closed terminal sends
        proc.wait(30)
        assert not _alive(game), "the game's process outlived its terminal"
        assert not _redis_answers(url)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(game, signal.SIGKILL)
