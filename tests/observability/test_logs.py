"""Loki and the Alloy pipeline: JSON logs parsed, only service/level/env as labels, trace_id kept."""

from __future__ import annotations

import logging
import re

import pytest

from tests.observability import support
from tests.observability.support import LOKI_LABELS, OBS, load_yaml

ALLOY = OBS / "loki" / "config.alloy"
LOG_FIELDS = {
    "timestamp",
    "level",
    "logger",
    "message",
    "event",
    "service",
    "trace_id",
    "span_id",
    "request_id",
    "user_id",
    "room",
    "round",
}


def block(text: str, header: str) -> str:
    """The body of the first `header { ... }` block of an Alloy file (braces balanced)."""
    start = text.index(header + " {") + len(header) + 2
    depth, i = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start : i - 1]


def keys(body: str) -> set[str]:
    """The keys of `name = value` lines of a block body."""
    return set(re.findall(r"^\s*(\w+)\s*=", body, re.M))


def strings(body: str) -> list[str]:
    return re.findall(r'"([^"]*)"', body)


def alloy() -> str:
    # Comment lines out: only the configuration counts.
    return re.sub(r"(?m)^\s*//.*$", "", ALLOY.read_text(encoding="utf-8"))


def test_loki_keeps_structured_metadata() -> None:
    config = load_yaml(OBS / "loki" / "loki.yml")
    assert config["limits_config"]["allow_structured_metadata"] is True
    (schema,) = config["schema_config"]["configs"]
    assert schema["schema"] == "v13" and schema["store"] == "tsdb"
    assert config["server"]["http_listen_port"] == 3100


def test_alloy_parses_every_field_of_the_json_logs() -> None:
    expressions = block(block(alloy(), "stage.json"), "expressions =")
    assert keys(expressions) == LOG_FIELDS


def test_alloy_keeps_only_service_level_and_env_as_labels() -> None:
    text = alloy()
    assert keys(block(text, "stage.labels")) - {"values"} == {"service", "level"}
    assert keys(block(text, "stage.static_labels")) - {"values"} == {"env"}
    assert set(strings(block(text, "stage.label_keep"))) == LOKI_LABELS


def test_alloy_keeps_trace_id_as_structured_metadata_not_a_label() -> None:
    text = alloy()
    assert {"trace_id", "span_id"} <= keys(block(text, "stage.structured_metadata"))
    assert "trace_id" not in keys(block(text, "stage.labels"))


def test_alloy_uses_the_lines_own_timestamp_and_ships_to_loki() -> None:
    text = alloy()
    timestamp = block(text, "stage.timestamp")
    assert '"timestamp"' in timestamp and "RFC3339" in timestamp
    assert '"http://loki:3100/loki/api/v1/push"' in block(text, 'loki.write "loki"')
    assert 'values = ["nuxtest"]' in block(text, 'discovery.docker "app"')


def test_alloy_stage_order_labels_before_label_keep() -> None:
    text = alloy()
    order = [text.index(s) for s in ("stage.json", "stage.labels", "stage.static_labels", "stage.label_keep")]
    assert order == sorted(order)


STREAM_SELECTOR = re.compile(r"(?<!\{)\{([^{}]*)\}(?!\})")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"')


def logql_queries() -> list[support.Query]:
    return support.dashboard_queries("loki") + support.runbook_queries("logql")


@pytest.mark.parametrize("query", logql_queries(), ids=[q.where for q in logql_queries()])
def test_logql_selects_streams_by_the_shipped_labels_only(query: support.Query) -> None:
    selectors = [s for s in STREAM_SELECTOR.findall(query.expr) if MATCHER.search(s)]
    assert selectors, f"{query.where}: no stream selector in {query.expr}"
    for selector in selectors:
        labels = {name for name, _ in MATCHER.findall(selector)}
        assert labels <= LOKI_LABELS, f"{query.where}: {labels - LOKI_LABELS} are not Loki labels"


def test_otel_collector_sends_traces_to_tempo() -> None:
    collector = load_yaml(OBS / "otel" / "collector.yml")
    pipeline = collector["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    (exporter,) = pipeline["exporters"]
    assert collector["exporters"][exporter]["endpoint"] == "tempo:4317"
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318" and protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    tempo = load_yaml(OBS / "tempo" / "tempo.yml")
    assert tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert tempo["server"]["http_listen_port"] == 3200


def test_celerys_routine_lines_about_the_sweeper_are_left_out_but_other_tasks_and_errors_stay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trace = logging.getLogger("celery.app.trace")
    beat = logging.getLogger("celery.beat")
    with caplog.at_level(logging.INFO):
        fmt = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"
        trace.info(fmt, {"name": "game.tasks.rooms_sweep", "id": "1", "runtime": 0.01, "return_value": {}})
        beat.info("Scheduler: Sending due task %s (%s)", "rooms-sweep", "game.tasks.rooms_sweep")
        trace.info(fmt, {"name": "game.tasks.round_close", "id": "2", "runtime": 0.01, "return_value": True})
        trace.error("Task %s[%s] raised unexpected: %s", "game.tasks.rooms_sweep", "3", "boom")
    assert [r.getMessage()[:30] for r in caplog.records] == [
        "Task game.tasks.round_close[2]",
        "Task game.tasks.rooms_sweep[3]",
    ]
