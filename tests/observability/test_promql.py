"""Every PromQL expression (rules, dashboards, runbooks) parses and names only known metrics.

Known: the project's metrics as declared in game/telemetry/metrics.py (read from
prometheus-client's registry, with the _bucket/_sum/_count/_total suffixes of each type),
django-prometheus's, process and python families, Flower's, redis_exporter's and
postgres_exporter's, Prometheus's own (up, ALERTS) and the recording rules' names.
"""

from __future__ import annotations

import re

import promql_parser
import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.utils import floatToGoString

from game.telemetry import metrics as project
from tests.observability import support
from tests.observability.support import TARGET_LABELS, selectors

QUERIES = support.all_promql()

# Label values the project declares as bounded sets (game/telemetry/metrics.py).
BOUNDED: dict[tuple[str, str], set[str]] = {
    ("nuxtest_ws_connects", "outcome"): set(project.CONNECT_OUTCOMES),
    ("nuxtest_ws_frames_received", "type"): set(project.FRAME_TYPES),
    ("nuxtest_ws_message_duration_seconds", "type"): set(project.FRAME_TYPES),
    ("nuxtest_ws_frames_sent", "type"): set(project.SENT_TYPES),
    ("nuxtest_ws_disconnects", "code"): {project.close_code_label(c) for c in project.KNOWN_CLOSE_CODES}
    | {"other"},
    # GAME_ACTIONS' help text: "answer, start" by "ok, refused (client error), server_error".
    ("nuxtest_game_actions", "action"): {"answer", "start"},
    ("nuxtest_game_actions", "outcome"): {"ok", "refused", "server_error"},
}
try:  # the gauges read from Redis at scrape time
    from game.telemetry.collectors import ROOM_STATUSES

    BOUNDED[("nuxtest_rooms", "status")] = set(ROOM_STATUSES)
except ImportError:  # pragma: no cover - before the collectors exist
    pass


def metric_names(selector: promql_parser.VectorSelector, catalogue: support.Catalogue) -> set[str]:
    """The metric names a selector can match (a __name__ regex must match at least one)."""
    if selector.name:
        return {selector.name}
    names: set[str] = set()
    for matcher in selector.matchers.matchers:
        if matcher.name == "__name__":
            names |= {n for n in catalogue.names if re.fullmatch(matcher.value, n)} or {
                f"<no match: {matcher.value}>"
            }
    return names


def test_every_bounded_label_value_has_a_series_before_its_first_event() -> None:
    """docs/telemetry.md: every label combination is created at zero at import. A counter
    whose series appears at 1 is an increase of 0 to rate(): a process's first disconnect
    with 1011 or 4429, often its only one, never showed on *Disconnects by close code*."""
    families = {m._name: m for m in vars(project).values() if isinstance(m, MetricWrapperBase)}
    for (family, label), values in BOUNDED.items():
        metric = families.get(family)
        if metric is None:  # a gauge read from Redis at scrape time
            continue
        seen = {sample.labels.get(label) for found in metric.collect() for sample in found.samples}
        assert values <= seen, (
            f"{family}: no series before the first event for {label}={sorted(values - seen)}"
        )


def test_queries_are_found() -> None:
    where = {q.where.split(":")[0] for q in QUERIES}
    assert {"alerts.yml", "slo.yml"} <= where
    assert {f"{name}" for name in support.dashboards()} <= where
    assert any(w.startswith("docs/runbooks/") for w in where)


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_promql_parses(query: support.Query) -> None:
    promql_parser.parse(query.expr)


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_promql_names_only_known_metrics(query: support.Query, catalogue: support.Catalogue) -> None:
    for selector in selectors(query.expr):
        names = metric_names(selector, catalogue)
        assert names, f"a selector without a metric name: {selector}"
        unknown = names - catalogue.names
        assert not unknown, f"{query.where}: unknown metric(s) {sorted(unknown)} in {query.expr}"


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_project_metrics_are_queried_by_declared_labels_and_values(
    query: support.Query, catalogue: support.Catalogue
) -> None:
    for selector in selectors(query.expr):
        name = selector.name or ""
        info = catalogue.project.get(name)
        if info is None:
            continue
        allowed = set(info["labels"]) | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())
        for matcher in selector.matchers.matchers:
            assert matcher.name in allowed, f"{query.where}: {name} has no label {matcher.name!r}"
            if matcher.name == "le" and matcher.op == promql_parser.MatchOp.Equal:
                bounds = {floatToGoString(b) for b in info["buckets"]}
                assert matcher.value in bounds, f"{query.where}: le={matcher.value!r} is no bucket boundary"
            values = BOUNDED.get((info["family"], matcher.name))
            if values is None:
                continue
            if matcher.op == promql_parser.MatchOp.Equal:
                assert matcher.value in values, (
                    f"{query.where}: {matcher.name}={matcher.value!r} is never exported"
                )
            elif matcher.op == promql_parser.MatchOp.Re:
                assert any(re.fullmatch(matcher.value, v) for v in values), (
                    f"{query.where}: {matcher.name}=~{matcher.value!r} matches no exported value"
                )


def test_every_project_histogram_and_counter_is_on_a_dashboard(catalogue: support.Catalogue) -> None:
    """The dashboards show every family the project declares (none left unwatched)."""
    shown = {
        s.name
        for q in support.dashboard_queries("prometheus")
        for s in selectors(support.grafana_to_promql(q.expr))
    }
    families = {info["family"] for info in catalogue.project.values()}
    on_dashboards = {catalogue.project[n]["family"] for n in shown if n in catalogue.project}
    unseen = families - on_dashboards
    assert not unseen, f"project metrics on no dashboard: {sorted(unseen)}"
