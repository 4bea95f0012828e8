"""Log records as one JSON object per line, with trace ids and the bound context.

Every record gets `service`, `env`, `event`, `trace_id`, `span_id` and whatever
`game.telemetry.context` holds (request_id, user_id, room, round). The project's own
lines name their `event` (extra={"event": ...}); other libraries' lines get
`<library>_log`. NUXTEST_LOG_FORMAT=text gives human-readable lines instead.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.orjson import OrjsonFormatter

from game.telemetry import context, tracing

# Set by game.telemetry.setup for this process (web, worker, beat, manage); Flower, which
# does not run that set-up, is named by NUXTEST_SERVICE alone.
SERVICE = os.environ.get("NUXTEST_SERVICE", "nuxtest")
# Lines written before that set-up (or in Flower) said "development" in production.
ENVIRONMENT = os.environ.get("NUXTEST_ENV", "development")

# Names that must never reach a log line as a field.
SECRET_FIELDS = re.compile(r"pass(word)?|token|secret|authorization|cookie|session|csrf|jwt", re.I)

# Library loggers whose lines have a known event name.
_LIBRARY_EVENTS = {
    "celery.app.trace": "celery_task_log",
    "celery.worker.strategy": "celery_task_received",
    "django.request": "django_request_error",
    "py.warnings": "python_warning",
    "daphne.server": "daphne_server",
    "channels_redis.core": "channel_layer_log",
    "daphne.http_protocol": "daphne_http",
    "daphne.ws_protocol": "daphne_ws",
    "multiprocessing": "celery_pool_log",
}


def _event_for(name: str) -> str:
    event = _LIBRARY_EVENTS.get(name)
    if event is not None:
        return event
    top = name.split(".", 1)[0] or "root"
    return f"{re.sub(r'[^a-z0-9]+', '_', top.lower())}_log"


class ContextFilter(logging.Filter):
    """Adds service, env, event, trace and context fields to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = SERVICE
        record.env = ENVIRONMENT
        if not getattr(record, "event", None):
            record.event = _event_for(record.name)
        pair = tracing.ids()
        record.trace_id, record.span_id = pair if pair else ("", "")
        for key, value in context.current().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


@functools.lru_cache(maxsize=1024)
def _secret(key: str) -> bool:
    # A line's field names come from a small set: each is matched once per process.
    return SECRET_FIELDS.search(key) is not None


@functools.lru_cache(maxsize=4)
def _second(epoch_second: int) -> str:
    return datetime.fromtimestamp(epoch_second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def timestamp(created: float) -> str:
    """RFC 3339 in UTC to the millisecond (the second's text is made once per second)."""
    second = int(created)
    return f"{_second(second)}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(OrjsonFormatter):
    """python-json-logger with the field names and order of OBSERVABILITY.md.

    Encoded by orjson (UTF-8, not ASCII escapes), with the timestamp's second and the
    secret-name check made once: a line per answer is formatted in 7.6 µs instead of 17.8
    (a micro-benchmark; at the bench's full answer rate the change is within its noise).
    """

    def add_fields(
        self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_record["timestamp"] = timestamp(record.created)
        log_record["level"] = record.levelname.lower()
        log_record["logger"] = record.name
        log_record["message"] = record.getMessage()
        for key in ("event", "service", "env", "trace_id", "span_id", *context.FIELDS):
            value = getattr(record, key, None)
            if value is not None and value != "":
                log_record[key] = value
        super().add_fields(log_record, record, message_dict)
        for key in list(log_record):
            if _secret(key):
                log_record[key] = "[Filtered]"
        for key in ("trace_id", "span_id"):
            # On every line (OBSERVABILITY.md), null where no span is active (tracing off, or
            # a line logged outside any span): a missing field reads as a broken logger.
            if not log_record.get(key):
                log_record[key] = None
        if record.exc_info and "exc_info" in log_record:
            log_record["exception"] = log_record.pop("exc_info")


class TextFormatter(logging.Formatter):
    """Human-readable lines for local development, with the event and room when known."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={getattr(record, key)}"
            for key in ("event", "room", "round", "trace_id")
            if getattr(record, key, None) not in (None, "")
        ]
        return f"{line} [{' '.join(extras)}]" if extras else line


# Celery's own INFO lines about these tasks (received, succeeded, sent by beat) are left
# out: the sweeper runs every second, and they were two thirds of an idle game's log.
ROUTINE_TASKS = ("game.tasks.rooms_sweep",)
_ROUTINE_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")


class RoutineTaskFilter(logging.Filter):
    """Drops Celery's INFO lines about routine tasks (kept at LOG_LEVEL=DEBUG, and any error)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        message = record.getMessage()
        return not any(task in message for task in ROUTINE_TASKS)


class ChannelLayerDropCounter(logging.Handler):
    """Counts the group messages channels-redis drops over capacity (it only logs them, at INFO)."""

    def emit(self, record: logging.LogRecord) -> None:
        if "over capacity" not in str(record.msg) or not record.args:
            return
        from game.telemetry import metrics

        args = record.args if isinstance(record.args, tuple) else (record.args,)
        try:
            dropped = int(str(args[0]))  # "%s of %s channels over capacity in group %s"
        except (TypeError, ValueError):
            return
        metrics.CHANNEL_LAYER_DROPPED.inc(dropped)


def logging_config(*, level: str, fmt: str) -> dict[str, Any]:
    """The LOGGING dict for Django settings: JSON (default) or text on stdout."""
    # Python warnings become log records too, so that stdout stays one JSON object per line.
    logging.captureWarnings(True)
    formatter = (
        {"()": "game.telemetry.logs.JsonFormatter"}
        if fmt == "json"
        else {
            "()": "game.telemetry.logs.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        }
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "game.telemetry.logs.ContextFilter"},
            "routine": {"()": "game.telemetry.logs.RoutineTaskFilter"},
        },
        "formatters": {"main": formatter},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "main",
                "filters": ["context"],
            },
            "channel_layer_drops": {"class": "game.telemetry.logs.ChannelLayerDropCounter", "level": "INFO"},
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            # channels-redis reports drops only at INFO: always count them, whatever LOG_LEVEL says.
            "channels_redis.core": {"handlers": ["channel_layer_drops"], "level": "INFO", "propagate": True},
            # Celery's pool (billiard) logs under "multiprocessing", a logger that never
            # propagates: with no handler of its own, Python's last-resort handler printed its
            # errors ("Process 'ForkPoolWorker-2' pid:… exited with 'signal 15 (SIGTERM)'")
            # as bare text on stderr, the worker's one non-JSON line.
            "multiprocessing": {"handlers": ["stdout"], "propagate": False},
            **{name: {"filters": ["routine"]} for name in _ROUTINE_LOGGERS},
            # Django's warning for every 4xx ("Not Found: ...", "Unauthorized: ...") repeats
            # the access line (`http_request`, with its status) of each refused request; its
            # errors (5xx) always show, its warnings with LOG_LEVEL=DEBUG.
            "django.request": {"level": "DEBUG" if level.upper() == "DEBUG" else "ERROR"},
            # Django logs every request naming a Host outside ALLOWED_HOSTS at ERROR (a Sentry
            # event each): that is what internet scanners send, and the access line already
            # records its 400. Shown with LOG_LEVEL=DEBUG.
            "django.security.DisallowedHost": {"level": "DEBUG" if level.upper() == "DEBUG" else "CRITICAL"},
        },
    }
