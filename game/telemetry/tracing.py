"""OpenTelemetry: set up once per process from the standard OTEL_* variables; cheap helpers.

With no exporter configured (no OTEL_EXPORTER_OTLP_*ENDPOINT, or OTEL_TRACES_EXPORTER=none,
or OTEL_SDK_DISABLED=true) nothing is set up: `span()` is a null context and costs
nothing on the hot path, and logs carry no trace id.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace.status import Status, StatusCode

from nuxtest.env import env_bool

logger = logging.getLogger(__name__)

tracer = trace.get_tracer("nuxtest")
_enabled = False


def enabled() -> bool:
    """Whether this process exports spans."""
    return _enabled


def wanted() -> bool:
    """Whether the environment asks for traces to be exported."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = os.environ.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return exporters.strip().lower() not in {"", "none"}
    return any(
        os.environ.get(name) for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(service: str, *, version: str, environment: str, relay: bool = False) -> bool:
    """Install the tracer provider and the library instrumentations; True if tracing is on.

    `relay`: export from a child process (`span_relay`) instead of this one's thread — for
    the web process, whose CPU is the game's; NUXTEST_SPAN_RELAY=false keeps it in process.
    """
    global _enabled
    if _enabled or not wanted():
        return _enabled
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over these.
    resource = Resource.create(
        {
            "service.name": f"nuxtest-{service}",
            "service.namespace": "nuxtest",
            "service.version": version,
            "deployment.environment.name": environment,
        }
    )
    # The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, wrapped so that
    # a client call made outside any operation is not a trace of its own.
    provider = TracerProvider(resource=resource, sampler=_NoRootClientSpans(_configured_sampler()))
    if relay and env_bool("NUXTEST_SPAN_RELAY", True):
        from game.telemetry.span_relay import RelaySpanProcessor

        RelaySpanProcessor.check_config()
        provider.add_span_processor(RelaySpanProcessor(resource))
    else:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _instrument_libraries()
    _enabled = True
    logger.info("tracing on", extra={"event": "tracing_enabled"})
    return True


def _configured_sampler() -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER[_ARG] names (the SDK's own reading of them)."""
    try:
        from opentelemetry.sdk.trace.sampling import _get_from_env_or_default
    except ImportError:  # pragma: no cover - a future SDK renaming its helper
        from opentelemetry.sdk.trace.sampling import DEFAULT_ON

        return DEFAULT_ON
    return _get_from_env_or_default()


class _NoRootClientSpans(Sampler):
    """Drops CLIENT spans that have no parent, and defers every other decision.

    Redis commands issued outside any operation — the channel layer's receive loop
    (BZPOPMIN/ZPOPMIN, one per delivered message), the heartbeats, the scrape-time
    census — would each be a one-span trace that nobody can use, and they were a third of
    the spans exported under load (docs/performance.md). A command made inside a frame, a
    task or a request keeps its span, as a child of that operation.
    """

    def __init__(self, inner: Sampler) -> None:
        self._inner = inner

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> Any:
        if (
            kind is trace.SpanKind.CLIENT
            and not trace.get_current_span(parent_context).get_span_context().is_valid
        ):
            return SamplingResult(Decision.DROP)
        return self._inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoRootClientSpans{{{self._inner.get_description()}}}"


def flush(timeout_seconds: float = 5.0) -> None:
    """Export the spans still queued (a process about to exit without running atexit)."""
    if not _enabled:
        return
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(int(timeout_seconds * 1000))


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # The standard variable of OpenTelemetry's auto-instrumentation, honoured here too:
    # e.g. "redis" drops the span per Redis command, the costliest on the hot path.
    disabled = {
        name.strip()
        for name in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")
        if name.strip()
    }
    if "django" not in disabled:
        # Must run before the ASGI handler loads MIDDLEWARE (nuxtest/asgi.py does).
        DjangoInstrumentor().instrument(is_sql_commentor_enabled=False)
    if "celery" not in disabled:
        CeleryInstrumentor().instrument()
    if "redis" not in disabled:
        RedisInstrumentor().instrument()
    if "psycopg" not in disabled:
        PsycopgInstrumentor().instrument(enable_commenter=False)


def span(
    name: str, attributes: Mapping[str, Any] | None = None, **kwargs: Any
) -> AbstractContextManager[Any]:
    """A current span named `name`, or a null context when tracing is off."""
    if not _enabled:
        return nullcontext()
    return tracer.start_as_current_span(name, attributes=attributes, **kwargs)


def annotate(attributes: Mapping[str, Any]) -> None:
    """Set attributes on the current span (a library's: Django's request span), if any."""
    if _enabled:
        trace.get_current_span().set_attributes(attributes)


@contextmanager
def failure_span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[None]:
    """A span for work that has just failed outside any span (the exception being handled
    is recorded on it), so that its log line and Sentry event have a trace to point at."""
    if not _enabled:
        yield
        return
    exc = sys.exc_info()[1]
    with tracer.start_as_current_span(name, attributes=attributes) as current:
        if exc is not None:
            current.record_exception(exc)
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        yield


# OTLP carries integer attributes as int64: a larger one fails the encoding of the whole
# batch it is in, and so loses every other span of that batch.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def round_attribute(value: Any) -> int | None:
    """`value` as a `nuxtest.round` span attribute: an integer OTLP can carry, else None (a
    client may name any round up to 2**64 - 1, and is answered wrong_round)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def broadcast_attributes(code: str, frame: Mapping[str, Any]) -> dict[str, Any]:
    """A room broadcast's span attributes: its room, its frame's type and seq, and the round
    the frame belongs to where it names one."""
    attributes = {
        "nuxtest.room": code,
        "nuxtest.event": frame.get("type", ""),
        "nuxtest.seq": frame.get("seq", 0),
    }
    number = round_attribute(frame.get("round"))
    if number is not None:
        attributes["nuxtest.round"] = number
    return attributes


def quiet() -> AbstractContextManager[Any]:
    """A with-block whose library calls make no spans (the enclosing span stands for them)."""
    if not _enabled:
        return nullcontext()
    return suppress_instrumentation()


def ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the active span, as hex, or None."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def exemplar() -> dict[str, str] | None:
    """A trace-id exemplar for a histogram observation, when the active span is sampled."""
    if not _enabled:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return {"trace_id": format(ctx.trace_id, "032x")}


def carrier() -> dict[str, str] | None:
    """The active context as W3C headers (`traceparent`), to cross a hop; None if none."""
    if not _enabled:
        return None
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers or None


def attach_remote(headers: Mapping[str, str] | None) -> AbstractContextManager[Any]:
    """A with-block in which the context carried by `headers` is the parent."""
    if not _enabled or not headers:
        return nullcontext()
    return _Attached(propagate.extract(headers))


class _Attached:
    def __init__(self, ctx: otel_context.Context) -> None:
        self._ctx = ctx
        self._token: object | None = None

    def __enter__(self) -> None:
        self._token = otel_context.attach(self._ctx)

    def __exit__(self, *exc: object) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]
