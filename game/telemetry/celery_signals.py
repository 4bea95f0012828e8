"""Celery signal handlers: logging, telemetry, task metrics, worker metrics, heartbeat, timer pump.

Task metrics are counted in the prefork children and served by the worker's main process
on NUXTEST_WORKER_METRICS_PORT, with prometheus-client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set by `python -m nuxtest.worker`). Why this and not Flower's
metrics: Flower sees tasks through events, only while it runs and only if events are on;
the worker itself always knows.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import logging.config
import os
import socket
import threading
import time
from typing import Any

from celery import Task, signals
from django.conf import settings

from game import store
from game.telemetry import context, metrics, sentry, tracing
from game.telemetry.setup import telemetry_setup, traces_setup

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
HEARTBEAT_TTL_SECONDS = 30
# Task arguments that name the room and round a task works on.
_CONTEXT_ARGS = {"code": "room", "round_number": "round"}

_started: dict[str, tuple[float, Any]] = {}
_hostname = ""
# Pools whose processes are forked from the main one and announce themselves by
# worker_process_init: each of those processes starts its own span exporter.
_FORKING_POOLS = {"celery.concurrency.prefork"}
_traces_per_process = False
_stop = threading.Event()
# The final states a task's metrics count (task_postrun's state, lower-cased) made at zero.
TASK_STATES = ("success", "failure", "retry")
_STDOUT = 1  # the file descriptor Celery writes its notices to (sys.__stdout__)


@signals.setup_logging.connect
def _logging_setup(**_: Any) -> None:
    # Celery keeps Django's LOGGING (JSON on stdout) instead of installing its own handlers.
    logging.config.dictConfig(settings.LOGGING)
    from celery.apps import worker as celery_worker

    celery_worker.safe_say = _say  # type: ignore[attr-defined]  # (celery's stubs lack it)


def _say(msg: str, f: Any = None) -> None:
    """Celery's own notices to the terminal ("worker: Warm shutdown (MainProcess)") as log lines.

    Celery writes them from its signal handlers with a bare os.write, past logging: they
    were the worker's only lines that were not JSON. They are formatted here by the stdout
    handler and written the same way, so no lock is taken inside a signal handler.
    """
    text = msg.strip()
    notices = logging.getLogger("celery.apps.worker")
    if not text or not notices.isEnabledFor(logging.INFO):
        return
    record = notices.makeRecord(notices.name, logging.INFO, __file__, 0, text, (), None)
    record.event = "celery_worker_notice"
    line = text
    for handler in logging.getLogger().handlers:
        if handler.get_name() == "stdout":
            handler.filter(record)
            line = handler.format(record)
    try:
        os.write(_STDOUT, f"{line}\n".encode())
    except OSError:
        pass  # no terminal left: the notice is not worth failing the shutdown for


@signals.beat_init.connect
def _beat_init(**_: Any) -> None:
    telemetry_setup("beat")


@signals.worker_init.connect
def _worker_init(sender: Any = None, **_: Any) -> None:
    global _hostname, _traces_per_process
    _traces_per_process = _pool_forks(sender)
    telemetry_setup("worker", traces=not _traces_per_process)
    _hostname = getattr(sender, "hostname", None) or f"worker@{socket.gethostname()}"
    _metrics_server_start()
    threading.Thread(target=_heartbeat_forever, name="nuxtest-worker-heartbeat", daemon=True).start()
    # Imported here: game.scheduler imports the Celery app, whose module imports this one.
    from game import scheduler

    threading.Thread(
        target=scheduler.pump_forever, args=(_stop,), name="nuxtest-timer-pump", daemon=True
    ).start()


def _pool_forks(worker: Any) -> bool:
    from celery.concurrency import get_implementation

    pool = getattr(worker, "pool_cls", None)
    try:
        cls = get_implementation(pool) if isinstance(pool, str) else pool
    except Exception:  # an alias Celery will refuse itself a moment later
        return False
    return getattr(cls, "__module__", "") in _FORKING_POOLS


@signals.worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    # Every game task's outcomes at zero (as metrics._labels_init does for the web's): rate()
    # cannot count a series' first value, so a task's first failure went unseen by
    # NuxtestCeleryTaskFailures. Here, not at worker_init: the tasks are registered by now.
    app = getattr(sender, "app", None)
    for name in list(getattr(app, "tasks", {})):
        if name.startswith("game."):
            for state in TASK_STATES:
                metrics.CELERY_TASKS.labels(task=name, state=state)


@signals.worker_process_init.connect
def _worker_process_init(**_: Any) -> None:
    # Tracing starts in each pool process, not before the fork: a BatchSpanProcessor's
    # export thread inherited through fork can leave the child's exporter stuck on a
    # lock held at the moment of the fork, and every span of that child is lost (seen
    # in the e2e trace test: only the main process's Redis spans arrived). This is the
    # set-up that OpenTelemetry's Celery instrumentation documents for prefork.
    if _traces_per_process:
        traces_setup("worker")


@signals.worker_shutdown.connect
def _worker_shutdown(**_: Any) -> None:
    _stop.set()
    if _hostname:
        try:
            store.worker_gone(_hostname)
        except Exception:
            logger.warning(
                "worker heartbeat not removed", exc_info=True, extra={"event": "worker_heartbeat_failed"}
            )


@signals.worker_process_shutdown.connect
def _worker_process_shutdown(pid: int | None = None, **_: Any) -> None:
    # A pool process leaves by os._exit: atexit handlers (the span exporter's) never run.
    tracing.flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


def _metrics_server_start() -> None:
    port = settings.NUXTEST_WORKER_METRICS_PORT
    if not port:
        return
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    from game.telemetry.collectors import ClockOffsetCollector

    registry: Any = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    # The worker's clock decides when its pump sends the game's timers: its offset is served
    # beside the web instances' (alert NuxtestClockSkew).
    with contextlib.suppress(ValueError):  # already registered in this process
        (registry or REGISTRY).register(ClockOffsetCollector())
    try:
        if registry is None:
            start_http_server(port, addr=settings.NUXTEST_WORKER_METRICS_ADDR)
        else:
            start_http_server(port, addr=settings.NUXTEST_WORKER_METRICS_ADDR, registry=registry)
    except OSError:
        logger.exception("worker metrics port %s unavailable", port, extra={"event": "worker_metrics_failed"})
        return
    logger.info("worker metrics on port %s", port, extra={"event": "worker_metrics_started"})


def _heartbeat_forever() -> None:
    while not _stop.is_set():
        try:
            store.worker_heartbeat(_hostname, ttl_seconds=HEARTBEAT_TTL_SECONDS, now=time.time())
        except Exception:
            logger.warning(
                "worker heartbeat failed", exc_info=True, extra={"event": "worker_heartbeat_failed"}
            )
        _stop.wait(HEARTBEAT_SECONDS)


def _task_context(task: Task, args: Any, kwargs: Any) -> dict[str, Any]:
    try:
        bound = inspect.signature(task.run).bind_partial(*(args or ()), **(kwargs or {}))
    except (TypeError, ValueError):
        return {}
    return {field: bound.arguments[name] for name, field in _CONTEXT_ARGS.items() if name in bound.arguments}


@signals.task_prerun.connect
def _task_prerun(
    task_id: str = "", task: Task | None = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    if task is None:
        return
    token = context.bind(**_task_context(task, args, kwargs))
    sentry.tag_current(task=task.name)
    _started[task_id] = (time.perf_counter(), token)


@signals.task_postrun.connect
def _task_postrun(task_id: str = "", task: Task | None = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if task is None or started is None:
        return
    at, token = started
    metrics.CELERY_TASK_DURATION.labels(task=task.name).observe(time.perf_counter() - at)
    metrics.CELERY_TASKS.labels(task=task.name, state=(state or "unknown").lower()).inc()
    try:
        context.unbind(token)
    except ValueError:
        pass  # reset from another context: nothing left to undo
