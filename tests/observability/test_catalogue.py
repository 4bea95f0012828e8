"""docs/telemetry.md is the catalogue: it lists exactly what the code exports."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from game.telemetry import collectors, metrics
from loadtest.exporter import FAMILIES as LOCUST_FAMILIES

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "telemetry.md").read_text()
SOURCES = [p for d in ("game", "nuxtest") for p in (ROOT / d).rglob("*.py") if "migrations" not in p.parts]
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def section(title: str) -> str:
    """The text of one `##`/`###` section of the catalogue."""
    start = DOC.index(title)
    following = re.search(r"^#{2,3} ", DOC[start + len(title) :], re.M)
    return DOC[start : start + len(title) + following.start()] if following else DOC[start:]


def first_cell_names(text: str) -> set[str]:
    """Backticked names in the first cell of each table row."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def exported_metrics() -> set[str]:
    names = set()
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            family = obj.describe()[0]
            names.add(family.name + "_total" if family.type == "counter" else family.name)
    for _, cls in inspect.getmembers(collectors, inspect.isclass):
        if cls.__module__ == collectors.__name__ and callable(getattr(cls, "collect", None)):
            names.update(f.name for f in cls().describe())
    return names


def parsed_sources() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in SOURCES]


def logger_calls() -> list[tuple[Path, ast.Call]]:
    calls = []
    for path, tree in parsed_sources():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "logger"
            ):
                calls.append((path, node))
    return calls


def event_of(call: ast.Call) -> str | None:
    for kw in call.keywords:
        if kw.arg == "extra" and isinstance(kw.value, ast.Dict):
            for key, value in zip(kw.value.keys, kw.value.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "event" and isinstance(value, ast.Constant):
                    return str(value.value)
    return None


def test_the_catalogue_lists_exactly_the_metrics_the_code_exports():
    documented = {n for n in first_cell_names(section("### Project metrics")) if n.startswith("nuxtest_")}
    assert documented == exported_metrics()


def test_the_three_fixed_metric_names_exist():
    assert {
        "nuxtest_ws_connections",
        "nuxtest_round_close_lag_seconds",
        "nuxtest_build_info",
    } <= exported_metrics()


def test_every_log_call_of_the_project_names_its_event():
    missing = [f"{p.relative_to(ROOT)}:{c.lineno}" for p, c in logger_calls() if event_of(c) is None]
    assert not missing, f"logger calls without extra={{'event': ...}}: {missing}"


def test_the_catalogue_lists_exactly_the_log_events_the_code_writes():
    written = {e for _, c in logger_calls() if (e := event_of(c))}
    documented = first_cell_names(section("### The project's events"))
    assert documented == written


def test_every_event_name_is_snake_case():
    for name in first_cell_names(section("### The project's events")):
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name


def test_the_catalogue_lists_exactly_the_spans_the_code_starts():
    started = {f"ws.{t}" for t in metrics.FRAME_TYPES}
    for _, tree in parsed_sources():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("span", "failure_span")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "tracing"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                started.add(str(node.args[0].value))
    documented = first_cell_names(section("## Spans"))
    assert documented == started


def test_the_load_generators_metrics_are_catalogued_exactly() -> None:
    served = {f"{name}_total" if kind == "counter" else name for name, kind in LOCUST_FAMILIES.items()}
    assert first_cell_names(section("### The load generator's metrics (Locust)")) == served
