"""Local stand-ins for an OpenTelemetry collector and a Sentry server, for the telemetry tests.

Both are real HTTP servers on free ports: the app's own exporters talk to them exactly as
they would to the real thing (OTLP/HTTP protobuf; Sentry envelopes).
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _attr(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_attr(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]  # only if sentry-sdk picked it

        return bytes(brotli.decompress(body))
    return body


class _Server:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = _decompress(self.rfile.read(length), self.headers.get("Content-Encoding", ""))
                reply = server.receive(self.path, body)
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def receive(self, path: str, body: bytes) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class OtlpReceiver(_Server):
    """Collects the spans sent to POST /v1/traces, decoded with opentelemetry-proto."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        super().__init__()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def receive(self, path: str, body: bytes) -> bytes:
        if path.rstrip("/") == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            decoded = []
            for resource_spans in request.resource_spans:
                resource = {a.key: _attr(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        decoded.append(
                            {
                                "service": resource.get("service.name"),
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex(),
                                "attributes": {a.key: _attr(a.value) for a in span.attributes},
                                "events": [
                                    {a.key: _attr(a.value) for a in e.attributes} for e in span.events
                                ],
                            }
                        )
            with self.lock:
                self.spans.extend(decoded)
        return ExportTraceServiceResponse().SerializeToString()

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.spans)


class SentryReceiver(_Server):
    """Collects the events sent to /api/<project>/envelope/ (and the legacy /store/)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        super().__init__()

    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/1"

    def receive(self, path: str, body: bytes) -> bytes:
        found: list[dict[str, Any]] = []
        if path.rstrip("/").endswith("/envelope"):
            lines = body.split(b"\n")
            # Envelope: a header line, then (item header, payload) pairs.
            i = 1
            while i + 1 < len(lines):
                header = json.loads(lines[i] or b"{}")
                payload = lines[i + 1]
                if header.get("type") == "event":
                    found.append(json.loads(payload))
                i += 2
        elif path.rstrip("/").endswith("/store"):
            found.append(json.loads(body))
        with self.lock:
            self.raw.append(body)
            self.events.extend(found)
        return b"{}"

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)

    def raw_text(self) -> str:
        with self.lock:
            return b"\n".join(self.raw).decode("utf-8", "replace")
