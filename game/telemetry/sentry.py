"""Sentry: on only with SENTRY_DSN; no personal data, and a scrubber for what slips through."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sentry_sdk
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

from game.telemetry import context, tracing
from nuxtest.env import env_bool

_SENSITIVE_NAMES = (
    r"pass(?:word|wd)?|token|secret|authorization|cookie|session|csrf|jwt|api[-_]?key|refresh|access"
)
# A key of the event (anywhere in it) whose value is dropped.
_SECRET_KEY = re.compile(_SENSITIVE_NAMES, re.I)
# A bearer value or a JWT inside free text (a message, a URL, a local variable's repr), and
# the value of a secret-named key in it: `?password=…`, `password1=…` (the sign-up form's),
# `sessionid=…`, `password%3D…` (URL-encoded), `{'password': '…'}` (a dict's repr). In text
# the short `pwd` and `auth` count too, followed by `=` or `:` as they are there.
_NAME_IN_TEXT = rf"(?:{_SENSITIVE_NAMES}|pwd|auth)[A-Za-z0-9_-]*"
_SECRET_TEXT = re.compile(
    r"(Bearer\s+)[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9._-]+"
    rf"|({_NAME_IN_TEXT}(?:=|%3D))[^&\s\"',;]+"
    rf"|(['\"]{_NAME_IN_TEXT}['\"]\s*:\s*['\"]?)[^'\"\s,}}]+",
    re.I,
)
FILTERED = "[Filtered]"
_enabled = False


def enabled() -> bool:
    """Whether this process reports to Sentry."""
    return _enabled


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 20:
        return value
    if isinstance(value, dict):
        return {
            k: FILTERED if isinstance(k, str) and _SECRET_KEY.search(k) else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        # Header lists arrive as [name, value] pairs.
        if len(value) == 2 and isinstance(value[0], str) and _SECRET_KEY.search(value[0]):
            return [value[0], FILTERED]
        return [_scrub(v, depth + 1) for v in value]
    if isinstance(value, str):
        return _SECRET_TEXT.sub(lambda m: (m.group(1) or m.group(2) or m.group(3) or "") + FILTERED, value)
    return value


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Drop cookies and the user's details; filter secret-looking keys and values everywhere."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("cookies", None)
        request.pop("data", None)
    event.pop("user", None)
    # The room, round and trace of the work that failed, wherever it is captured from.
    tags = event.setdefault("tags", {})
    if isinstance(tags, dict):
        for key, value in _tags().items():
            tags.setdefault(key, value)
    # Sentry's own trace context is the OpenTelemetry trace's: with Sentry's tracing off it
    # held one made-up trace per process, which Sentry would link every error of it to.
    pair = tracing.ids()
    contexts = event.setdefault("contexts", {})
    if pair and isinstance(contexts, dict):
        trace = contexts.get("trace")
        trace = dict(trace) if isinstance(trace, dict) else {}
        trace.pop("parent_span_id", None)
        trace.update(trace_id=pair[0], span_id=pair[1])
        contexts["trace"] = trace
    scrubbed: dict[str, Any] = _scrub(event)
    return scrubbed


def setup(service: str, *, release: str, environment: str) -> bool:
    """Initialise sentry-sdk when SENTRY_DSN is set; True if it is on."""
    global _enabled
    dsn = os.environ.get("SENTRY_DSN", "").strip()
    if _enabled or not dsn:
        return _enabled
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.redis import RedisIntegration

    traces_rate = float(os.environ.get("SENTRY_TRACES_SAMPLE_RATE", "0"))
    redis_breadcrumbs = env_bool("NUXTEST_SENTRY_REDIS", True)
    sentry_sdk.init(
        dsn=dsn,
        environment=os.environ.get("SENTRY_ENVIRONMENT", environment),
        release=os.environ.get("SENTRY_RELEASE", release),
        server_name=service,
        send_default_pii=False,
        # Local variables would carry rooms' player lists and question plans into events.
        include_local_variables=False,
        max_request_body_size="never",
        # Errors only by default: traces go to OpenTelemetry.
        traces_sample_rate=traces_rate,
        # ... and then Sentry's integrations make no spans of their own ("otel": the spans
        # are OpenTelemetry's), only breadcrumbs. Otherwise they build one per Redis command,
        # sampled or not, at several per cent of the game's throughput (docs/performance.md).
        instrumenter="sentry" if traces_rate > 0 else "otel",
        event_scrubber=EventScrubber(
            denylist=[*DEFAULT_DENYLIST, "refresh", "access", "jwt", "bearer"], recursive=True
        ),
        before_send=before_send,  # type: ignore[arg-type]
        integrations=[
            DjangoIntegration(),
            CeleryIntegration(),
            RedisIntegration(),
            # Breadcrumbs and error events from log records; not Sentry's own log product
            # (`sentry_logs_level=None`): the lines go to Loki, and its handler cost every
            # line ~8 µs of logger-name matching even when off (docs/performance.md).
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR, sentry_logs_level=None),
        ],
        # NUXTEST_SENTRY_REDIS=false: no breadcrumb per Redis command (the integration is
        # the largest part of Sentry's cost per answer, docs/performance.md).
        disabled_integrations=[] if redis_breadcrumbs else [RedisIntegration()],
    )
    sentry_sdk.set_tag("service", service)
    _enabled = True
    return True


def _tags() -> dict[str, str]:
    fields = context.current()
    tags = {k: str(fields[k]) for k in ("room", "round") if fields.get(k) is not None}
    pair = tracing.ids()
    if pair:
        tags["trace_id"] = pair[0]
    return tags


@contextmanager
def error_scope() -> Iterator[None]:
    """A Sentry scope tagged with the room, round and trace id, for reporting one error."""
    if not _enabled:
        yield
        return
    with sentry_sdk.new_scope() as scope:
        for key, value in _tags().items():
            scope.set_tag(key, value)
        yield


def tag_current(**extra: str) -> None:
    """Tag the current scope (a Celery task's) with the room, round and trace id."""
    if not _enabled:
        return
    for key, value in {**_tags(), **extra}.items():
        sentry_sdk.set_tag(key, value)
