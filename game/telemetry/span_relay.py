"""Span export out of the web process: finished spans go, as plain tuples, to a child process
that runs OpenTelemetry's own batch processor and OTLP exporter.

Why: in the process that makes it, a span costs about 20 µs to create and end and 40 µs more
to queue, encode into OTLP protobuf and post (`make bench`'s unit costs, docs/performance.md)
— and the encoding runs in the exporter's thread, holding the GIL the event loop waits for.
Handing the span over as a tuple costs a few µs; the encoding and the HTTP post happen in the
relay, on whatever core is free, as in an OpenTelemetry Collector sidecar.

Nothing about configuration changes: the relay inherits the environment, so the standard
OTEL_EXPORTER_OTLP_* and OTEL_BSP_* variables configure its exporter and batches as they
would in the process; the queue here is bounded by OTEL_BSP_MAX_QUEUE_SIZE (spans beyond it
are dropped, as the SDK's batch processor drops them). `force_flush` returns once the relay
has exported what was handed to it. If the relay dies, the next batch starts a new one
(lost spans are logged); the game never waits for it.

Wire format, parent → relay on the relay's stdin: frames of a 4-byte big-endian length and a
pickle — ("hello", resource attributes, schema URL, the parent's logging), ("spans",
[tuples]), ("flush", n); the
relay answers each flush by writing n (4 bytes) to the file descriptor named in its argv.

    python -m game.telemetry.span_relay ACK_FD
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
# How often the parent hands its queue over (the relay batches again for the exporter).
HANDOVER_SECONDS = 0.2
HANDOVER_SPANS = 256
# A relay that dies young (a crash at start) is restarted after 1 s, then 2, 4 … up to 60.
RESTART_BACKOFF_SECONDS = 1.0
RESTART_BACKOFF_MAX_SECONDS = 60.0
HEALTHY_SECONDS = 10.0


def _flatten(span: ReadableSpan) -> tuple[Any, ...]:
    """A finished span as builtins only: cheap to make and to pickle."""
    ctx = span.context
    parent = span.parent
    scope = span.instrumentation_scope
    status = span.status
    return (
        span.name,
        ctx.trace_id,
        ctx.span_id,
        int(ctx.trace_flags),
        list(ctx.trace_state.items()) if ctx.trace_state else None,
        _context_tuple(parent) if parent else None,
        span.kind.value,
        span.start_time,
        span.end_time,
        dict(span.attributes) if span.attributes else None,
        [(e.name, dict(e.attributes) if e.attributes else None, e.timestamp) for e in span.events] or None,
        [
            (_context_tuple(link.context), dict(link.attributes) if link.attributes else None)
            for link in span.links
        ]
        or None,
        status.status_code.value,
        status.description,
        (scope.name, scope.version, scope.schema_url) if scope else None,
    )


def _context_tuple(ctx: SpanContext) -> tuple[int, int, int, bool]:
    return (ctx.trace_id, ctx.span_id, int(ctx.trace_flags), ctx.is_remote)


def _context(
    trace_id: int, span_id: int, flags: int, remote: bool, state: list[tuple[str, str]] | None = None
) -> SpanContext:
    return SpanContext(
        trace_id,
        span_id,
        is_remote=remote,
        trace_flags=TraceFlags(flags),
        trace_state=TraceState(state) if state else None,
    )


class _Rebuilder:
    """Turns tuples back into ReadableSpans (in the relay), sharing resource and scopes."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self._scopes: dict[tuple[Any, ...], InstrumentationScope] = {}

    def span(self, t: tuple[Any, ...]) -> ReadableSpan:
        (
            name,
            trace_id,
            span_id,
            flags,
            state,
            parent,
            kind,
            start,
            end,
            attrs,
            events,
            links,
            code,
            desc,
            scope,
        ) = t
        context = _context(trace_id, span_id, flags, False, state)
        scope_obj = None
        if scope is not None:
            scope_obj = self._scopes.get(scope)
            if scope_obj is None:
                scope_obj = self._scopes[scope] = InstrumentationScope(*scope)
        return ReadableSpan(
            name=name,
            context=context,
            parent=_context(*parent) if parent else None,
            resource=self.resource,
            attributes=attrs,
            events=[Event(n, a, timestamp=ts) for n, a, ts in events or ()],
            links=[Link(_context(*c), a) for c, a in links or ()],
            kind=SpanKind(kind),
            status=Status(StatusCode(code), desc),
            start_time=start,
            end_time=end,
            instrumentation_scope=scope_obj,
        )


class RelaySpanProcessor(SpanProcessor):
    """Hands finished, sampled spans to the relay process (started here, restarted if it dies)."""

    @staticmethod
    def check_config() -> None:
        """Fail here, as the SDK would in process, on OTEL_* values the relay could not use."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        BatchSpanProcessor(OTLPSpanExporter()).shutdown()

    def __init__(self, resource: Resource) -> None:
        hello = ("hello", dict(resource.attributes), resource.schema_url, _parent_logging())
        self._hello = pickle.dumps(hello)
        self._max_queue = int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") or 2048)
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._dropped = 0
        self._lock = threading.Lock()  # the pipe and the relay process
        self._proc: subprocess.Popen[bytes] | None = None
        self._ack_read = -1
        self._starts = 0
        self._flushes = 0
        self._next_start = 0.0
        self._started_at = 0.0
        self._backoff = RESTART_BACKOFF_SECONDS
        self._closing = False
        self._wake = threading.Event()
        with self._lock:
            self._start()
        self._thread = threading.Thread(target=self._run, name="span-relay", daemon=True)
        self._thread.start()

    # --- SpanProcessor ----------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the finished span (dropped, and counted, when the queue is full)."""
        if self._closing or not span.context.trace_flags.sampled:
            return
        if len(self._queue) >= self._max_queue:
            self._dropped += 1
            return
        self._queue.append(_flatten(span))
        if len(self._queue) >= HANDOVER_SPANS:
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Hand everything over and wait until the relay has exported it."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            self._handover()
            self._flushes += 1
            number = self._flushes
            if not self._send(pickle.dumps(("flush", number))):
                return False
            return self._await_ack(number, deadline)

    def shutdown(self) -> None:
        """Hand over what is left and let the relay export it and exit."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        self._thread.join(5)
        if not self._lock.acquire(timeout=10):
            # The hand-over is stuck writing to a relay that does not read (stopped): end
            # it, which fails that write and lets the process exit.
            proc = self._proc
            if proc is not None:
                proc.kill()
            return
        try:
            self._handover()
            self._stop(wait=10)
        finally:
            self._lock.release()

    # --- The parent's side ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(HANDOVER_SECONDS)
            self._wake.clear()
            with self._lock:
                self._handover()

    def _handover(self) -> None:
        """Send the queued spans (under the lock)."""
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            logger.warning(
                "span relay queue full: %d spans dropped", dropped, extra={"event": "span_relay_dropped"}
            )
        if not self._queue:
            return
        spans = []
        while self._queue:
            spans.append(self._queue.popleft())
        if not self._send(pickle.dumps(("spans", spans), protocol=pickle.HIGHEST_PROTOCOL)):
            logger.warning(
                "span relay unavailable: %d spans dropped", len(spans), extra={"event": "span_relay_dropped"}
            )

    def _send(self, payload: bytes) -> bool:
        """Write one frame to the relay, starting it first if needed; False if it is gone."""
        if self._proc is None or self._proc.poll() is not None:
            if time.monotonic() < self._next_start or not self._start():
                return False
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(_LENGTH.pack(len(payload)) + payload)
            self._proc.stdin.flush()
            return True
        except OSError:  # BrokenPipeError and the like: the relay died
            self._stop(wait=0)
            return False

    def _start(self) -> bool:
        """Start the relay and greet it with the resource (under the lock)."""
        now = time.monotonic()
        if self._started_at and now - self._started_at < HEALTHY_SECONDS:
            self._backoff = min(self._backoff * 2, RESTART_BACKOFF_MAX_SECONDS)
        else:
            self._backoff = RESTART_BACKOFF_SECONDS
        self._started_at = now
        self._next_start = now + self._backoff
        ack_read, ack_write = os.pipe()
        try:
            proc = subprocess.Popen(  # noqa: S603 - this interpreter, this module
                [sys.executable, "-m", "game.telemetry.span_relay", str(ack_write)],
                stdin=subprocess.PIPE,
                pass_fds=(ack_write,),
                # Out of the terminal's process group: Ctrl-C stops the web process, whose
                # exit ends the relay's input; the relay then exports what it holds.
                start_new_session=True,
            )
        except OSError:
            os.close(ack_read)
            logger.exception("span relay could not start", extra={"event": "span_relay_failed"})
            return False
        finally:
            os.close(ack_write)  # the relay holds its own copy
        self._stop(wait=0)
        self._proc, self._ack_read = proc, ack_read
        self._starts += 1
        assert proc.stdin is not None
        try:
            proc.stdin.write(_LENGTH.pack(len(self._hello)) + self._hello)
            proc.stdin.flush()
        except OSError:
            self._stop(wait=0)
            return False
        if self._starts > 1:
            logger.warning("span relay restarted", extra={"event": "span_relay_restarted"})
        return True

    def _await_ack(self, number: int, deadline: float) -> bool:
        buffer = b""
        # poll, not select: a web process holds thousands of sockets, and a relay restarted
        # then gets a descriptor above select's limit.
        poller = select.poll()
        poller.register(self._ack_read, select.POLLIN)
        while time.monotonic() < deadline:
            if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                return False
            chunk = os.read(self._ack_read, 4096)
            if not chunk:  # the relay exited
                return False
            buffer += chunk
            while len(buffer) >= _LENGTH.size:
                (got,), buffer = _LENGTH.unpack(buffer[: _LENGTH.size]), buffer[_LENGTH.size :]
                if got >= number:
                    return True
        return False

    def _stop(self, *, wait: float) -> None:
        proc, self._proc = self._proc, None
        if self._ack_read >= 0:
            os.close(self._ack_read)
            self._ack_read = -1
        if proc is None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()  # end of input: the relay exports what it has and exits
        except OSError:
            pass
        if not wait:
            return  # it exits by itself at the end of its input
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- The relay's side -------------------------------------------------------------------------


def _read_frame(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)  # noqa: S301 - frames from the parent process, over its own pipe


def _parent_logging() -> dict[str, Any] | None:
    """This process's logging (the settings' LOGGING, service and environment), for the relay."""
    from django.conf import settings

    from game.telemetry import logs

    if not settings.configured:
        return None
    return {"config": settings.LOGGING, "service": logs.SERVICE, "env": logs.ENVIRONMENT}


def _logging(parent: dict[str, Any] | None) -> None:
    """The relay's own lines (an exporter that cannot reach its endpoint) as its parent's are."""
    if parent is None:
        return
    import logging.config

    from game.telemetry import logs

    logs.SERVICE, logs.ENVIRONMENT = parent["service"], parent["env"]
    logging.captureWarnings(True)
    logging.config.dictConfig(parent["config"])


def serve(stream: IO[bytes], ack_fd: int) -> None:
    """Export what the parent hands over until its end of input."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    hello = _read_frame(stream)
    if not hello or hello[0] != "hello":
        return
    _logging(hello[3])
    rebuild = _Rebuilder(Resource(hello[1], hello[2]))
    processor = BatchSpanProcessor(OTLPSpanExporter())
    try:
        while (frame := _read_frame(stream)) is not None:
            if frame[0] == "spans":
                for t in frame[1]:
                    processor.on_end(rebuild.span(t))
            elif frame[0] == "flush":
                processor.force_flush()
                os.write(ack_fd, _LENGTH.pack(frame[1]))
    finally:
        processor.shutdown()


def main() -> None:
    """The relay process: `python -m game.telemetry.span_relay ACK_FD`."""
    # It stops at the end of its input, when its web process has gone, never on a signal
    # meant for that process: the spans handed over last would be lost.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(sys.stdin.buffer, int(sys.argv[1]))


if __name__ == "__main__":
    main()
