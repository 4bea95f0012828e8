"""Start a NuxTest stack by hand for benchmarks and capacity runs: Redis, web, worker, beat.

    python -m loadtest.stack --port 8001            # one Daphne, a worker, beat; Ctrl-C stops
    python -m loadtest.stack --port 8001 --prometheus 9090   # and a Prometheus scraping them

With --prometheus, a real Prometheus (Debian's `prometheus` package) scrapes the web process,
the worker and itself every 5 s with the project's jobs and rules
(observability/prometheus/, see loadtest/prometheus.py); `python -m loadtest.panels
--prometheus http://127.0.0.1:9090 --since 5m` then prints what the dashboards show. Its
data lives as long as the stack: read it before stopping.

Ctrl-C or SIGTERM stops it; started in the background by a script, only SIGTERM does (a
non-interactive shell starts background jobs with SIGINT ignored).

Redis is REDIS_URL when set (under a random key prefix and Celery queue of the run's own,
whose keys are deleted when the stack stops), else an embedded redis-server
(nuxtest.embedded). The database is DATABASE_URL when set,
else a fresh SQLite file; it is migrated and the question bank loaded. Processes can be
pinned to a CPU (`cpu=`), so that on a 2-core machine the server under test has one core
and the load generator the other.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from loadtest.prometheus import LocalPrometheus
from nuxtest.embedded import redis_argv

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = {cpu % (os.cpu_count() or 1)}

    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin


@dataclass
class Stack:
    """Processes of one run, and the environment they share."""

    logs: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    workdir: Path | None = None

    @classmethod
    def create(cls, logs: Path, *, redis_cpu: int | None = None) -> Stack:
        """Redis and a migrated database with the question bank; no web process yet."""
        logs.mkdir(parents=True, exist_ok=True)
        stack = cls(logs=logs)
        stack.workdir = Path(tempfile.mkdtemp(prefix="nuxtest-stack-"))
        prefix = f"lt-{uuid.uuid4().hex[:8]}:"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "nuxtest.settings",
                "NUXTEST_REDIS_PREFIX": prefix,
                "CELERY_TASK_DEFAULT_QUEUE": prefix.rstrip(":"),
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": env.get("LOG_LEVEL", "WARNING"),
            }
        )
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = f"sqlite:///{stack.workdir / 'db.sqlite3'}"
        stack.env = env
        if not env.get("REDIS_URL"):
            port = free_port()
            stack.start("redis", redis_argv(port, str(stack.workdir)), cpu=redis_cpu)
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            _wait_tcp("127.0.0.1", port, stack.procs["redis"])
        manage = [sys.executable, str(ROOT / "manage.py")]
        for argv in ([*manage, "migrate", "--noinput", "-v0"], [*manage, "seed_questions"]):
            subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: S603
        return stack

    def start(
        self, name: str, argv: list[str], *, cpu: int | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a process with its output in logs/<name>.log."""
        log = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(  # noqa: S603 - our own argv
            argv,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_pin(cpu),
        )
        self.procs[name] = proc
        return proc

    def start_web(
        self,
        name: str,
        *,
        server: str = "daphne",
        app: str = "nuxtest.asgi:application",
        cpu: int | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        health: str = "/healthz",
    ) -> str:
        """Start Daphne (or uvicorn) serving `app`; return its http:// URL once it answers."""
        port = port or free_port()
        if server == "daphne":
            argv = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), app]
        elif server == "uvicorn":
            argv = [
                str(BIN / "uvicorn"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
                app,
            ]
        else:
            raise ValueError(f"unknown server {server!r}")
        proc = self.start(name, argv, cpu=cpu, env=env)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + health, proc, self.logs / f"{name}.log")
        if cpu is not None:
            helpers_elsewhere(proc.pid, cpu)
        return url

    def start_worker(
        self, name: str = "worker", *, cpu: int | None = None, concurrency: int = 2, metrics_port: int = 0
    ) -> None:
        """A Celery worker for the game's timers (metrics on `metrics_port` if not 0); returns when ready."""
        assert self.workdir is not None
        multiproc = {}
        if metrics_port:  # prefork: the pool processes' metrics meet in one directory
            (self.workdir / f"metrics-{name}").mkdir(exist_ok=True)
            multiproc["PROMETHEUS_MULTIPROC_DIR"] = str(self.workdir / f"metrics-{name}")
        proc = self.start(
            name,
            [
                str(BIN / "celery"),
                "-A",
                "nuxtest",
                "worker",
                "--loglevel=INFO",
                f"--concurrency={concurrency}",
                "--without-mingle",
                "--without-gossip",
                "-n",
                f"{name}-{uuid.uuid4().hex[:6]}@%h",
            ],
            cpu=cpu,
            # INFO: readiness is read from the worker's "ready." line. No metrics port unless
            # asked (another worker on this machine may hold the default one).
            env={"LOG_LEVEL": "INFO", "NUXTEST_WORKER_METRICS_PORT": str(metrics_port), **multiproc},
        )
        log = self.logs / f"{name}.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited; see {log}")
            if b" ready." in log.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"celery worker did not start; see {log}")

    def start_beat(self, name: str = "beat", *, cpu: int | None = None) -> None:
        """Celery beat: the sweeper, for timers lost with a worker."""
        assert self.workdir is not None
        self.start(
            name,
            [
                str(BIN / "celery"),
                "-A",
                "nuxtest",
                "beat",
                "--loglevel=WARNING",
                "-s",
                str(self.workdir / "beat-schedule"),
            ],
            cpu=cpu,
        )

    def stop(self, name: str) -> None:
        """Stop one process (its whole session), gently then firmly."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def stop_all(self) -> None:
        """Stop everything this stack started (Redis last) and remove its files."""
        for name in [n for n in self.procs if n != "redis"]:
            self.stop(name)
        if "redis" in self.procs:
            self.stop("redis")
        elif self.env.get("REDIS_URL"):
            self._forget_keys()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _forget_keys(self) -> None:
        """On a shared Redis (REDIS_URL): delete every key of this stack's prefix (game, Celery)."""
        import redis

        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            keys = list(client.scan_iter(match=f"{self.env['NUXTEST_REDIS_PREFIX']}*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        except redis.RedisError:
            pass  # the run is over either way; its keys stay behind
        finally:
            client.close()


def _wait_tcp(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {host}:{port} exited")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{host}:{port} did not open in {timeout}s")


def helpers_elsewhere(pid: int, cpu: int) -> None:
    """Move a pinned web process's children (its span relay) to the other cores.

    The relay does the work an OpenTelemetry Collector sidecar would: it runs beside the
    infrastructure (Redis, the worker, the client), not on the core under test.
    """
    import psutil

    others = [c for c in range(os.cpu_count() or 1) if c != cpu]
    if not others:
        return
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            child.cpu_affinity(others)
        except psutil.Error:
            pass


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Wait until `url` answers 200; fail at once if `proc` exits (see `log`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}; see {log}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout}s; see {log}")


def main(argv: list[str] | None = None) -> int:
    """Run a stack in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=0, help="web port (default: a free one)")
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    parser.add_argument("--web-cpu", type=int, default=None, help="pin the web process to this CPU")
    parser.add_argument("--no-worker", action="store_true", help="no Celery worker and beat")
    parser.add_argument("--prometheus", type=int, default=0, metavar="PORT", help="run a Prometheus on PORT")
    args = parser.parse_args(argv)
    logs = ROOT / "loadtest" / "reports" / "stack-logs"
    stack = Stack.create(logs)
    prometheus = None
    try:
        url = stack.start_web("web", server=args.server, port=args.port or None, cpu=args.web_cpu)
        targets = {"nuxtest-web": [urlsplit(url).netloc]}
        if not args.no_worker:
            worker_port = free_port() if args.prometheus else 0
            stack.start_worker(metrics_port=worker_port)
            stack.start_beat()
            if worker_port:
                targets["nuxtest-celery"] = [f"127.0.0.1:{worker_port}"]
        pid = stack.procs["web"].pid
        print(
            f"NuxTest stack at {url} (web pid {pid}; Redis {stack.env['REDIS_URL']}); Ctrl-C stops",
            flush=True,
        )
        if args.prometheus:
            assert stack.workdir is not None
            prometheus = LocalPrometheus(
                stack.workdir / "prometheus", args.prometheus, logs / "prometheus.log"
            )
            prometheus.write_rules()
            prometheus.write_config({**targets, "prometheus": [f"127.0.0.1:{args.prometheus}"]})
            prometheus.start()
            print(f"Prometheus at {prometheus.url} (scrapes every 5 s)", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(p.poll() is None for p in stack.procs.values()):
            time.sleep(1)
        print("a process of the stack exited; see loadtest/reports/stack-logs/", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if prometheus is not None:
            prometheus.stop()
        stack.stop_all()


if __name__ == "__main__":
    sys.exit(main())
