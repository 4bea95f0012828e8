"""Real processes for end-to-end tests: two Daphne instances, a Celery worker and beat.

A plugin of the whole suite (`pytest_plugins` in tests/conftest.py), so that the e2e and
the load-scenario tests share one stack: fixtures copied into a second conftest are
fixtures of their own, and started a second stack beside the first, writing the same logs.

They share the test database (pytest-django's, reached by a DATABASE_URL built from its
settings) and the suite's Redis under a key prefix and Celery queue of their own.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from loadtest.stack import wait_http
from tests.e2e.receivers import OtlpReceiver, SentryReceiver

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# One folder per test run, so that concurrent runs in one checkout keep their own logs.
LOGS = ROOT / "tests" / "artifacts" / "e2e-logs" / f"run-{os.getpid()}"


def procfile_command(process: str) -> str:
    """The command line of a process of the Procfile, as written there."""
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith(f"{process}:"))
    return line.split(":", 1)[1].strip()


def procfile_argv(process: str, **values: str) -> list[str]:
    """A process of the Procfile as `make run` starts it: its command, `${VAR:-default}`
    filled from `values` (else the default), `VAR=value` prefixes left to the caller's
    environment, and the program taken from this virtualenv."""
    command = re.sub(
        r"\$\{(\w+):-([^}]*)\}", lambda m: values.get(m.group(1), m.group(2)), procfile_command(process)
    )
    words = [w for w in shlex.split(command) if not re.fullmatch(r"[A-Z_]+=.*", w)]
    return [str(BIN / words[0]), *words[1:]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url(db: dict[str, Any]) -> str:
    """A DATABASE_URL naming the test database pytest-django created."""
    engine = db["ENGINE"].rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"sqlite:///{db['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[engine]
    auth = quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"{scheme}://{auth}@{host}{port}/{db['NAME']}"


@dataclass
class Stack:
    """The running processes and how to reach them."""

    env: dict[str, str]
    web_urls: list[str] = field(default_factory=list)
    worker_metrics: dict[str, str] = field(default_factory=dict)
    worker_nodes: dict[str, str] = field(default_factory=dict)  # name -> Celery node name
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.web_urls[0]

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(LOGS / f"{name}.log", "wb")
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_web(self, name: str) -> str:
        port = free_port()
        self.start(
            name,
            [str(BIN / "daphne"), "-v", "0", "-b", "127.0.0.1", "-p", str(port), "nuxtest.asgi:application"],
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", self.procs[name], LOGS, timeout=30)
        self.web_urls.append(url)
        return url

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        port = free_port()
        self.worker_metrics[name] = f"http://127.0.0.1:{port}/metrics"
        self.worker_nodes[name] = f"{name}@{socket.gethostname()}"
        proc = self.start(
            name,
            [
                str(BIN / "python"),
                "-m",
                "nuxtest.worker",
                "--loglevel=INFO",
                "--concurrency=2",
                "--without-mingle",
                "--without-gossip",
                "-n",
                f"{name}@%h",
            ],
            env={
                "NUXTEST_WORKER_METRICS_PORT": str(port),
                "PROMETHEUS_MULTIPROC_DIR": str(LOGS / f"metrics-{name}-{uuid.uuid4().hex[:6]}"),
            },
        )
        wait_worker(name, proc)
        return proc

    def rename_worker(self, name: str, new_name: str) -> None:
        """Keep a worker under another name (later tests expect a `worker1`)."""
        self.procs[new_name] = self.procs.pop(name)
        self.worker_metrics[new_name] = self.worker_metrics.pop(name)
        self.worker_nodes[new_name] = self.worker_nodes.pop(name)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def wait_worker(name: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until the worker logs that it is ready."""
    deadline = time.monotonic() + timeout
    log = LOGS / f"{name}.log"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited with {proc.returncode}; see {log}")
        with open(log, "rb") as f:
            if b" ready." in f.read():
                return
        time.sleep(0.1)
    raise RuntimeError(f"celery worker did not start in {timeout}s; see {log}")


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    """The OTLP/HTTP receiver every stack process exports its spans to."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def sentry_server() -> Iterator[SentryReceiver]:
    """The Sentry stand-in every stack process reports its errors to."""
    receiver = SentryReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def stack(
    django_db_setup: None, django_db_blocker: Any, otlp: OtlpReceiver, sentry_server: SentryReceiver
) -> Iterator[Stack]:
    """Two Daphne processes, a Celery worker and beat, on the test database, telemetry on."""
    prefix = f"e2e-{uuid.uuid4().hex[:8]}:"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nuxtest.settings",
        "DATABASE_URL": database_url(connection.settings_dict),
        "REDIS_URL": settings.REDIS_URL,
        "NUXTEST_REDIS_PREFIX": prefix,
        "CELERY_TASK_DEFAULT_QUEUE": prefix.rstrip(":"),
        "NUXTEST_SWEEP_INTERVAL_SECONDS": "0.5",
        "PYTHONUNBUFFERED": "1",
        # Every signal on, to local receivers: the tests read what the processes emit.
        "NUXTEST_LOG_FORMAT": "json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "SENTRY_DSN": sentry_server.dsn(),
        "NUXTEST_FAULTS_CACHE_SECONDS": "0.2",
    }
    stack = Stack(env=env)
    try:
        stack.start_web("web1")
        stack.start_web("web2")
        stack.start_worker("worker1")
        stack.start(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "nuxtest",
                "--quiet",
                "beat",
                "--loglevel=INFO",
                "-s",
                str(LOGS / f"beat-schedule-{prefix.rstrip(':')}"),
            ],
        )
        yield stack
    finally:
        for name in list(stack.procs):
            stack.stop(name)


@pytest.fixture
def live(stack: Stack, transactional_db: None) -> Stack:
    """The running stack, with the question bank loaded in the (flushed) test database."""
    call_command("loaddata", "questions", verbosity=0)
    return stack
