"""The span sampler: client calls outside any operation are not traces of their own."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from game.telemetry.tracing import _NoRootClientSpans


def tracer_with(sampler):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=_NoRootClientSpans(sampler))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def names(exporter):
    return sorted(s.name for s in exporter.get_finished_spans())


def test_a_redis_command_outside_any_operation_is_dropped():
    tracer, exporter = tracer_with(ParentBased(ALWAYS_ON))
    with tracer.start_as_current_span("BZPOPMIN", kind=trace.SpanKind.CLIENT):
        pass
    assert names(exporter) == []


def test_a_client_call_inside_an_operation_stays_in_its_trace():
    tracer, exporter = tracer_with(ParentBased(ALWAYS_ON))
    with tracer.start_as_current_span("ws.answer") as parent:
        with tracer.start_as_current_span("EVALSHA", kind=trace.SpanKind.CLIENT) as child:
            assert child.get_span_context().trace_id == parent.get_span_context().trace_id
    assert names(exporter) == ["EVALSHA", "ws.answer"]


def test_other_root_spans_follow_the_configured_sampler():
    tracer, exporter = tracer_with(ParentBased(ALWAYS_ON))
    with tracer.start_as_current_span("GET /healthz", kind=trace.SpanKind.SERVER):
        pass
    with tracer.start_as_current_span("apply_async/game.tasks.rooms_sweep", kind=trace.SpanKind.PRODUCER):
        pass
    assert names(exporter) == ["GET /healthz", "apply_async/game.tasks.rooms_sweep"]
    quiet, nothing = tracer_with(ALWAYS_OFF)
    with quiet.start_as_current_span("ws.answer"):
        pass
    assert names(nothing) == []
