"""Helpers for the observability checks: the files, the queries in them, the metric catalogue."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from loadtest.exporter import FAMILIES as LOCUST_FAMILIES
from loadtest.panels import iter_panels

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "observability"
PROMETHEUS = OBS / "prometheus"
RULES = PROMETHEUS / "rules"
RULE_TESTS = PROMETHEUS / "tests"
GRAFANA = OBS / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"
RUNBOOKS = ROOT / "docs" / "runbooks"
COMPOSE = ROOT / "docker-compose.obs.yml"

SEVERITIES = {"page", "ticket"}
ANNOTATIONS = {"summary", "description", "dashboard_url", "runbook_url"}
LOKI_LABELS = {"service", "level", "env"}
# Labels Prometheus attaches to every scraped series (target labels of prometheus.yml).
TARGET_LABELS = {"job", "instance", "env"}

# Series Prometheus itself makes.
PROMETHEUS_SYNTHETIC = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}
# oliver006/redis_exporter and prometheus-community/postgres_exporter: the names the rules,
# dashboards and runbooks may use, each checked against a running exporter's /metrics.
REDIS_EXPORTER = {
    "redis_up",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "redis_memory_used_rss_bytes",
    "redis_mem_fragmentation_ratio",
    "redis_connected_clients",
    "redis_blocked_clients",
    "redis_rejected_connections_total",
    "redis_commands_processed_total",
    "redis_commands_total",
    "redis_commands_duration_seconds_total",
    "redis_db_keys",
    "redis_db_keys_expiring",
    "redis_evicted_keys_total",
    "redis_expired_keys_total",
    "redis_keyspace_hits_total",
    "redis_keyspace_misses_total",
    "redis_net_input_bytes_total",
    "redis_net_output_bytes_total",
    "redis_uptime_in_seconds",
    "redis_instance_info",
}
POSTGRES_EXPORTER = {
    "pg_up",
    "pg_database_size_bytes",
    "pg_settings_max_connections",
    "pg_stat_activity_count",
    "pg_locks_count",
    "pg_stat_database_numbackends",
    "pg_stat_database_xact_commit",
    "pg_stat_database_xact_rollback",
    "pg_stat_database_deadlocks",
    "pg_stat_database_blks_hit",
    "pg_stat_database_blks_read",
    "pg_stat_database_tup_fetched",
    "pg_stat_database_tup_inserted",
    "pg_stat_database_tup_updated",
    "pg_stat_database_tup_deleted",
}


# --- files -------------------------------------------------------------------------------------
def load_yaml(path: Path) -> Any:
    """A YAML file's content."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_files() -> list[Path]:
    """The rule files Prometheus loads."""
    return sorted(RULES.glob("*.yml"))


def rule_test_files() -> list[Path]:
    """The promtool unit-test files beside the rules."""
    return sorted(RULE_TESTS.glob("*.yml"))


@dataclass(frozen=True)
class Rule:
    """One alerting or recording rule, with where it lives."""

    file: Path
    group: str
    body: dict[str, Any]

    @property
    def alert(self) -> str | None:
        return self.body.get("alert")

    @property
    def record(self) -> str | None:
        return self.body.get("record")

    @property
    def expr(self) -> str:
        return str(self.body["expr"])


def rules() -> list[Rule]:
    """Every rule of every rule file."""
    found: list[Rule] = []
    for path in rule_files():
        for group in load_yaml(path)["groups"]:
            found.extend(Rule(path, group["name"], body) for body in group["rules"])
    return found


def alert_rules() -> list[Rule]:
    """The alerting rules."""
    return [r for r in rules() if r.alert]


def recording_names() -> set[str]:
    """Names of the series the recording rules make."""
    return {r.record for r in rules() if r.record}


def dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards, by file name."""
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def shorten_for(text: str, duration: str) -> str:
    """A rule file's text with every alert's `for:` replaced by `duration` (closed-loop tests)."""
    return re.sub(r"(?m)^(\s+for: )\S+$", rf"\g<1>{duration}", text)


def fenced_blocks(markdown: str, language: str) -> list[str]:
    """The contents of the ```language fenced blocks of a Markdown text."""
    return [m.group(1).strip() for m in re.finditer(rf"```{language}\n(.*?)```", markdown, re.S)]


# --- queries -----------------------------------------------------------------------------------
GRAFANA_INTERVALS = re.compile(
    r"\$(?:__rate_interval|__interval|__range|__auto)\b|\$\{(?:__rate_interval|__interval)\}"
)
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def variables_used(expr: str) -> set[str]:
    """Dashboard variables a query refers to (Grafana's built-in `__` ones excluded)."""
    names = {a or b for a, b in GRAFANA_VARIABLE.findall(expr)}
    return {n for n in names if not n.startswith("__")}


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    """Every vector selector of a parsed expression (matrix selectors' included)."""
    found: list[promql_parser.VectorSelector] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as Prometheus would receive it (intervals and variables filled in)."""
    return GRAFANA_VARIABLE.sub("x", GRAFANA_INTERVALS.sub("5m", expr))


LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$", re.S)


@dataclass(frozen=True)
class Query:
    """A query found in a file, and where."""

    where: str
    expr: str


def dashboard_queries(datasource_type: str) -> list[Query]:
    """Every query of the given data source type in the dashboards: panels, variables, annotations."""
    found = []
    for name, board in dashboards().items():
        for panel in iter_panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") == datasource_type:
                    found.append(Query(f"{name}: panel {panel['title']!r}", target["expr"]))
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("datasource", {}).get("type") != datasource_type:
                continue
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            match = LABEL_VALUES.match(text.strip())
            if match and match.group(1):
                found.append(Query(f"{name}: variable {variable['name']!r}", match.group(1)))
        for annotation in board.get("annotations", {}).get("list", []):
            if annotation.get("datasource", {}).get("type") == datasource_type and annotation.get("expr"):
                found.append(Query(f"{name}: annotation {annotation['name']!r}", annotation["expr"]))
    return found


def runbook_queries(language: str) -> list[Query]:
    """The fenced query blocks of every runbook."""
    found = []
    for path in sorted(RUNBOOKS.glob("*.md")):
        for block in fenced_blocks(path.read_text(encoding="utf-8"), language):
            found.append(Query(f"docs/runbooks/{path.name}", block))
    return found


def all_promql() -> list[Query]:
    """Every PromQL expression of the repository: rules, dashboards, runbooks."""
    found = [Query(f"{r.file.name}: {r.alert or r.record}", r.expr) for r in rules()]
    found += [Query(q.where, grafana_to_promql(q.expr)) for q in dashboard_queries("prometheus")]
    found += runbook_queries("promql")
    return found


# --- the metric catalogue ----------------------------------------------------------------------
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}

# Run in a child process, so the test process's default registry stays as the app left it:
# import what each exporting process imports, then read prometheus-client's registry.
_READ_REGISTRY = r"""
import importlib, inspect, json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nuxtest.settings")
import django
django.setup()
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
import game.telemetry.metrics as project
import django_prometheus.middleware, django_prometheus.db.metrics, django_prometheus.cache.metrics
django_prometheus.middleware.Metrics.get_instance()
from flower.events import get_prometheus_metrics
get_prometheus_metrics()
families = {family.name: family.type for family in REGISTRY.collect()}
ours = {}
for value in vars(project).values():
    if isinstance(value, MetricWrapperBase):
        for family in value.describe():
            ours[family.name] = {
                "type": family.type,
                "labels": list(value._labelnames),
                "buckets": list(getattr(value, "_upper_bounds", [])),
            }
# Gauges read at scrape time by custom collectors: declared by describe(), no Redis read.
try:
    collectors = importlib.import_module("game.telemetry.collectors")
except ImportError:
    collectors = None
for _, cls in inspect.getmembers(collectors or object(), inspect.isclass):
    if cls.__module__ == "game.telemetry.collectors" and callable(getattr(cls, "describe", None)):
        for family in cls().describe():
            families[family.name] = family.type
            ours[family.name] = {"type": family.type, "labels": list(family._labelnames), "buckets": []}
print(json.dumps({"families": families, "project": ours}))
"""


@dataclass
class Catalogue:
    """Series names a query may name, and what the project declares about its own."""

    names: set[str]
    project: dict[str, dict[str, Any]]  # series name -> {"family", "type", "labels", "buckets"}
    sources: dict[str, str] = field(default_factory=dict)  # series name -> where it comes from


def series_names(family: str, kind: str) -> list[str]:
    """The series names of a metric family in the exposition, by its type."""
    return [family + suffix for suffix in SUFFIXES.get(kind, ("",))]


@cache
def _registry() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        [sys.executable, "-c", _READ_REGISTRY], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"reading the metric registry failed:\n{result.stderr}"
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def catalogue() -> Catalogue:
    """Every metric name a query may use, and the project's declared labels and buckets."""
    registry = _registry()
    names: set[str] = set()
    sources: dict[str, str] = {}
    for family, kind in registry["families"].items():
        origin = "project" if family in registry["project"] else "registry"
        for name in series_names(family, kind):
            names.add(name)
            sources[name] = origin
    project: dict[str, dict[str, Any]] = {}
    for family, info in registry["project"].items():
        for name in series_names(family, info["type"]):
            project[name] = {"family": family, **info}
    for group, origin in (
        (PROMETHEUS_SYNTHETIC, "prometheus"),
        (REDIS_EXPORTER, "redis_exporter"),
        (POSTGRES_EXPORTER, "postgres_exporter"),
        (recording_names(), "recording rule"),
        # The load generator's exporter (loadtest/exporter.py), while a capacity test runs.
        ({n for f, kind in LOCUST_FAMILIES.items() for n in series_names(f, kind)}, "locust"),
    ):
        for name in group:
            names.add(name)
            sources[name] = origin
    return Catalogue(names=names, project=project, sources=sources)


# --- external tools ----------------------------------------------------------------------------
def tool(name: str) -> str:
    """The path of promtool or amtool; skip without it, unless NUXTEST_REQUIRE_PROMTOOL=1 (CI)."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian: apt-get install prometheus prometheus-alertmanager)"
    if os.environ.get("NUXTEST_REQUIRE_PROMTOOL") == "1":
        pytest.fail(message + "; NUXTEST_REQUIRE_PROMTOOL=1 requires it")
    pytest.skip(message)


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output."""
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)
