"""The web process's span relay: spans exported from a child process arrive as the SDK's own
exporter would send them, a flush waits for them, and a dead or slow relay costs spans, never
the game."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from game.telemetry import span_relay
from tests.e2e.receivers import _Server


class RawReceiver(_Server):
    """Keeps every OTLP span as the protobuf message's dict, with its resource and scope."""

    def __init__(self) -> None:
        self.spans: dict[str, dict[str, Any]] = {}
        super().__init__()

    def receive(self, path: str, body: bytes) -> bytes:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            self.spans.update(spans_of(request))
        return ExportTraceServiceResponse().SerializeToString()


def spans_of(request: ExportTraceServiceRequest) -> dict[str, dict[str, Any]]:
    """span id → {span, resource, scope} as dicts: every field the receiver sees."""
    found = {}
    for rs in request.resource_spans:
        resource = MessageToDict(rs.resource)
        for ss in rs.scope_spans:
            scope = MessageToDict(ss.scope)
            for span in ss.spans:
                found[span.span_id.hex()] = {
                    "span": MessageToDict(span),
                    "resource": resource,
                    "scope": scope,
                    "schema": (rs.schema_url, ss.schema_url),
                }
    return found


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[RawReceiver]:
    server = RawReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    yield server
    server.close()


RESOURCE = Resource.create({"service.name": "nuxtest-test", "service.version": "1.2.3"}, "https://x/schema")


def provider_with_relay() -> tuple[TracerProvider, InMemorySpanExporter, span_relay.RelaySpanProcessor]:
    """Spans go both to memory (what the SDK made) and through the relay (what arrives)."""
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    relay = span_relay.RelaySpanProcessor(RESOURCE)
    provider.add_span_processor(relay)
    return provider, memory, relay


def make_spans(provider: TracerProvider, count: int = 1) -> None:
    tracer = provider.get_tracer("nuxtest.test", "9.9", schema_url="https://x/scope")
    linked = tracer.start_span("linked")
    linked.end()
    for i in range(count):
        with tracer.start_as_current_span(
            "ws.answer",
            kind=SpanKind.SERVER,
            attributes={
                "nuxtest.room": "ABCDEF",
                "nuxtest.round": i,
                "ok": True,
                "ratio": 0.5,
                "tags": ["a", "b"],
            },
            links=[Link(linked.get_span_context(), {"why": "test"})],
        ) as span:
            span.add_event("answered", {"option": 2})
            with tracer.start_as_current_span("EVALSHA", kind=SpanKind.CLIENT) as child:
                child.record_exception(ValueError("boom"))
                child.set_status(Status(StatusCode.ERROR, "boom"))


def test_spans_through_the_relay_arrive_as_the_sdk_would_export_them(receiver: RawReceiver) -> None:
    provider, memory, relay = provider_with_relay()
    try:
        make_spans(provider, count=3)
        assert relay.force_flush(20_000)
        # A flush returns once the relay has exported: no waiting here.
        expected = spans_of(
            ExportTraceServiceRequest(resource_spans=encode_spans(memory.get_finished_spans()).resource_spans)
        )
        assert len(expected) == 7
        assert receiver.spans == expected
    finally:
        provider.shutdown()


def test_shutdown_exports_what_was_not_flushed(receiver: RawReceiver) -> None:
    provider, memory, _ = provider_with_relay()
    make_spans(provider, count=2)
    provider.shutdown()
    assert set(receiver.spans) == {format(s.context.span_id, "016x") for s in memory.get_finished_spans()}


def test_a_killed_relay_is_restarted_and_later_spans_arrive(
    receiver: RawReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    provider, memory, relay = provider_with_relay()
    try:
        make_spans(provider)
        assert relay.force_flush(20_000)
        assert relay._proc is not None
        os.kill(relay._proc.pid, signal.SIGKILL)
        relay._proc.wait(10)
        time.sleep(span_relay.RESTART_BACKOFF_SECONDS)
        memory.clear()
        with caplog.at_level(logging.WARNING, logger="game.telemetry.span_relay"):
            make_spans(provider)
            assert relay.force_flush(20_000)
        later = {format(s.context.span_id, "016x") for s in memory.get_finished_spans()}
        assert later <= set(receiver.spans)
        assert "span_relay_restarted" in [getattr(r, "event", None) for r in caplog.records]
    finally:
        provider.shutdown()


def test_spans_beyond_the_queue_are_dropped_and_logged(
    receiver: RawReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "5")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "5")
    monkeypatch.setattr(span_relay, "HANDOVER_SECONDS", 3600)  # nothing handed over until the flush
    provider, memory, relay = provider_with_relay()
    try:
        with caplog.at_level(logging.WARNING, logger="game.telemetry.span_relay"):
            make_spans(provider, count=5)  # 11 spans
            assert relay.force_flush(20_000)
        assert len(memory.get_finished_spans()) == 11
        assert len(receiver.spans) == 5
        dropped = [
            r.getMessage() for r in caplog.records if getattr(r, "event", None) == "span_relay_dropped"
        ]
        assert dropped == ["span relay queue full: 6 spans dropped"]
    finally:
        provider.shutdown()


def test_relays_that_die_young_are_restarted_after_growing_pauses(receiver: RawReceiver) -> None:
    provider, _, relay = provider_with_relay()
    try:
        assert relay.force_flush(20_000)
        first = relay._backoff
        for _ in range(3):  # relays that die young
            assert relay._proc is not None
            relay._proc.kill()
            relay._proc.wait(10)
            relay._next_start = 0  # no waiting out the pause in a test
            make_spans(provider)
            relay.force_flush(20_000)
        assert relay._backoff == first * 8
    finally:
        provider.shutdown()


def test_a_flush_with_no_relay_reachable_gives_up_in_its_timeout(receiver: RawReceiver) -> None:
    provider, _, relay = provider_with_relay()
    try:
        assert relay._proc is not None
        relay._proc.send_signal(signal.SIGSTOP)  # alive but stuck: the flush is never answered
        try:
            make_spans(provider)
            assert relay.force_flush(500) is False
        finally:
            relay._proc.send_signal(signal.SIGCONT)
    finally:
        provider.shutdown()


# A web process stopped by Ctrl-C at a terminal: the whole foreground process group gets
# SIGINT. Its spans are handed over only at exit here, so that none is exported before.
_CTRL_C_CHILD = """
import time
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from game.telemetry import span_relay

span_relay.HANDOVER_SECONDS = 3600
provider = TracerProvider(resource=Resource.create({"service.name": "nuxtest-test"}))
relay = span_relay.RelaySpanProcessor(provider.resource)
provider.add_span_processor(relay)
tracer = provider.get_tracer("nuxtest.test")
for i in range(50):
    tracer.start_span(f"span-{i}").end()
print(relay._proc.pid, flush=True)
time.sleep(60)
"""


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_ctrl_c_at_a_terminal_loses_no_span_and_leaves_no_relay(receiver: RawReceiver) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CTRL_C_CHILD],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a terminal's foreground job
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        relay_pid = int(child.stdout.readline())
        os.killpg(child.pid, signal.SIGINT)
        child.wait(30)
        for _ in range(300):  # the relay exports, then exits at the end of its input
            if gone(relay_pid):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the relay outlived its web process")
        names = sorted(s["span"]["name"] for s in receiver.spans.values())
        assert names == sorted(f"span-{i}" for i in range(50))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
