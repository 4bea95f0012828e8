"""NuxTest's Grafana dashboards, as code: writes observability/grafana/dashboards/*.json.

    python observability/grafana/dashboards.py           # (re)write the JSON files
    python observability/grafana/dashboards.py --check   # exit 1 if a committed file is stale

The JSON files are committed (Grafana provisions them as they are); a test fails when they
differ from what this module generates. Plain dictionaries, no SDK: the few panel kinds
used here share one layout, one set of variables and one set of links, which is the point
of generating them. See observability/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"

PROM = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}

# Fixed UIDs: alerts' dashboard_url and the links between dashboards name them.
UIDS = {
    "overview": "nuxtest-overview",
    "game": "nuxtest-game",
    "websockets": "nuxtest-websockets",
    "celery": "nuxtest-celery",
    "django": "nuxtest-django",
    "slos": "nuxtest-slos",
    "logs": "nuxtest-logs",
}
TITLES = {
    "overview": "NuxTest / Overview",
    "game": "NuxTest / Game",
    "websockets": "NuxTest / WebSockets & channel layer",
    "celery": "NuxTest / Celery",
    "django": "NuxTest / Django HTTP & database",
    "slos": "NuxTest / SLOs",
    "logs": "NuxTest / Logs",
}

RATE = "$__rate_interval"
Json = dict[str, Any]


# --- selectors -----------------------------------------------------------------------------
def eq(label: str, value: str) -> str:
    """A `label="value"` matcher."""
    return f'{label}="{value}"'


def matches(label: str, regex: str) -> str:
    """A `label=~"regex"` matcher."""
    return f'{label}=~"{regex}"'


def sel(name: str, *matchers: str, instance: bool = True) -> str:
    """`name{env=~"$env", instance=~"$instance", <matchers>}`: every query follows the variables."""
    parts = ['env=~"$env"']
    if instance:
        parts.append('instance=~"$instance"')
    parts.extend(matchers)
    return f"{name}{{{', '.join(parts)}}}"


def rate(name: str, *matchers: str, by: str = "", instance: bool = True, window: str = RATE) -> str:
    """`sum [by (...)] (rate(selector[$__rate_interval]))` (or over a fixed window)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({sel(name, *matchers, instance=instance)}[{window}]))"


def quantile(q: float, histogram: str, *matchers: str, by: str = "", instance: bool = True) -> str:
    """histogram_quantile over a classic histogram's buckets, grouped by `le` (and `by`)."""
    grouping = f"le, {by}" if by else "le"
    bucket = rate(f"{histogram}_bucket", *matchers, by=grouping, instance=instance)
    return f"histogram_quantile({q}, {bucket})"


def buckets(histogram: str, *matchers: str) -> str:
    """Bucket increases per interval, for a heatmap."""
    return f"sum by (le) (increase({sel(f'{histogram}_bucket', *matchers)}[{RATE}]))"


def or_zero(expr: str, like: str) -> str:
    """`expr`, or 0 for each series of `like` that `expr` lacks.

    An error counter has no series until its first error, so a ratio of errors draws
    "No data" on a healthy system, which reads as a broken panel at 3 a.m.
    """
    return f"({expr} or {like} * 0)"


def or_none(expr: str, label: str = "") -> str:
    """`expr`, or a single 0 series (with `label`="none") when it has no series at all."""
    zero = f'label_replace(vector(0), "{label}", "none", "", "")' if label else "vector(0)"
    return f"({expr} or on() {zero})"


def agg(op: str, expr: str, by: str = "") -> str:
    """`op [by (...)] (expr)`."""
    grouping = f" by ({by})" if by else ""
    return f"{op}{grouping} ({expr})"


# --- targets ---------------------------------------------------------------------------------
# The only histograms observed with trace-id exemplars in a process that keeps them (the web
# processes: game/consumers.py, game/events.py). The worker's histograms are in
# prometheus-client's multiprocess mode, which keeps none (the round-close lag among them);
# django-prometheus's HTTP and database histograms have none. A target asks for exemplars
# only when it reads one of these: anywhere else the switch promises dots that never come.
EXEMPLAR_HISTOGRAMS = (
    "nuxtest_ws_message_duration_seconds",
    "nuxtest_channel_layer_group_send_duration_seconds",
)


def prom(expr: str, legend: str = "__auto", *, exemplar: bool = False, instant: bool = False) -> Json:
    """A Prometheus query; `exemplar` only for a query of an EXEMPLAR_HISTOGRAMS histogram's buckets."""
    target: Json = {"datasource": PROM, "expr": expr, "legendFormat": legend, "range": not instant}
    if instant:
        target["instant"] = True
    if exemplar:
        target["exemplar"] = _exemplars_of(expr)
    return target


def _exemplars_of(expr: str) -> bool:
    """True, for a query of an exemplar histogram's buckets; a ValueError for any other."""
    if not any(f"{h}_bucket" in expr for h in EXEMPLAR_HISTOGRAMS):
        raise ValueError(f"exemplars asked of a query without an exemplar histogram: {expr}")
    return True


def loki(expr: str, legend: str = "", *, query_type: str = "range") -> Json:
    """A Loki (LogQL) query."""
    target: Json = {"datasource": LOKI, "expr": expr, "queryType": query_type}
    if legend:
        target["legendFormat"] = legend
    return target


# --- panels ----------------------------------------------------------------------------------
def _panel(kind: str, title: str, targets: list[Json], description: str, unit: str) -> Json:
    datasource = targets[0]["datasource"] if targets else PROM
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }


def _steps(thresholds: Iterable[tuple[float | None, str]]) -> Json:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in thresholds]}


def timeseries(
    title: str,
    *targets: Json,
    unit: str = "short",
    description: str = "",
    stack: bool = False,
    thresholds: list[tuple[float | None, str]] | None = None,
    minimum: float | None = 0,
    log_scale: bool = False,
) -> Json:
    """A time series graph; thresholds are drawn as lines."""
    panel = _panel("timeseries", title, list(targets), description, unit)
    custom: Json = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 20 if stack else 8,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    if log_scale:
        custom["scaleDistribution"] = {"type": "log", "log": 10}
    defaults = panel["fieldConfig"]["defaults"]
    if thresholds:
        custom["thresholdsStyle"] = {"mode": "dashed"}
        defaults["thresholds"] = _steps(thresholds)
    defaults["custom"] = custom
    if minimum is not None:
        defaults["min"] = minimum
    panel["options"] = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def stat(
    title: str,
    *targets: Json,
    unit: str = "short",
    description: str = "",
    thresholds: list[tuple[float | None, str]] | None = None,
    mappings: list[Json] | None = None,
    text_mode: str = "auto",
    decimals: int | None = None,
) -> Json:
    """A single big number (last value)."""
    panel = _panel("stat", title, list(targets), description, unit)
    defaults = panel["fieldConfig"]["defaults"]
    defaults["thresholds"] = _steps(thresholds or [(None, "green")])
    defaults["color"] = {"mode": "thresholds"}
    if mappings:
        defaults["mappings"] = mappings
    if decimals is not None:
        defaults["decimals"] = decimals
    panel["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background" if thresholds or mappings else "value",
        "graphMode": "none",
        "textMode": text_mode,
        "justifyMode": "auto",
        "orientation": "auto",
    }
    return panel


def heatmap(
    title: str, target: Json, *, description: str = "", unit: str = "s", exemplar: bool = False
) -> Json:
    """A heatmap of a histogram's buckets (target must use format=heatmap).

    `exemplar` only for a histogram of EXEMPLAR_HISTOGRAMS.
    """
    target = {**target, "format": "heatmap"}
    if exemplar:
        target["exemplar"] = _exemplars_of(target["expr"])
    panel = _panel("heatmap", title, [target], description, unit)
    panel["options"] = {
        "calculate": False,
        "yAxis": {"unit": unit},
        "cellGap": 1,
        "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
        "tooltip": {"show": True, "yHistogram": True},
    }
    return panel


def table(title: str, *targets: Json, description: str = "") -> Json:
    """A table of instant values."""
    panel = _panel("table", title, list(targets), description, "short")
    panel["options"] = {"showHeader": True, "cellHeight": "sm"}
    panel["transformations"] = [
        {"id": "labelsToFields", "options": {"mode": "columns"}},
        {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True}}},
    ]
    return panel


def logs(title: str, *targets: Json, description: str = "") -> Json:
    """A log lines panel (trace ids become links through the Loki data source)."""
    panel = _panel("logs", title, list(targets), description, "short")
    panel["options"] = {
        "showTime": True,
        "wrapLogMessage": True,
        "prettifyLogMessage": False,
        "enableLogDetails": True,
        "dedupStrategy": "none",
        "sortOrder": "Descending",
    }
    return panel


def text(title: str, markdown: str) -> Json:
    """A markdown note."""
    return {
        "type": "text",
        "title": title,
        "description": "",
        "options": {"mode": "markdown", "content": markdown},
    }


def link(board: str, title: str | None = None) -> Json:
    """A panel link to another dashboard, keeping the time range and the variables."""
    return {
        "title": title or TITLES[board].split(" / ", 1)[1],
        "url": f"/d/{UIDS[board]}?${{__url_time_range}}&${{env:queryparam}}",
    }


def with_links(panel: Json, *boards: str) -> Json:
    """The panel, with links to the given dashboards."""
    panel["links"] = [link(b) for b in boards]
    return panel


# --- variables -------------------------------------------------------------------------------
def env_var() -> Json:
    """The environment, from the `env` target label every scrape job sets."""
    query = 'label_values(up{job=~"nuxtest-.*"}, env)'
    return {
        "type": "query",
        "name": "env",
        "label": "Environment",
        "datasource": PROM,
        "query": {"query": query, "refId": "env"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "includeAll": False,
        "multi": False,
        "current": {},
        "options": [],
    }


def instance_var(jobs: str) -> Json:
    """The instances of the given scrape jobs (regex), all by default."""
    query = f'label_values(up{{env=~"$env", job=~"{jobs}"}}, instance)'
    return {
        "type": "query",
        "name": "instance",
        "label": "Instance",
        "datasource": PROM,
        "query": {"query": query, "refId": "instance"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "includeAll": True,
        "allValue": ".+",
        "multi": True,
        "current": {"text": ["All"], "value": ["$__all"]},
        "options": [],
    }


def loki_label_var(name: str, label: str) -> Json:
    """Values of a Loki stream label (one of service, level, env)."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": LOKI,
        "query": {"type": 1, "label": name, "stream": "", "refId": name},
        "definition": f"label_values({name})",
        "refresh": 2,
        "sort": 1,
        "includeAll": name != "env",
        "allValue": ".+",
        "multi": name != "env",
        "current": {},
        "options": [],
    }


def textbox(name: str, label: str, default: str) -> Json:
    """A free-text variable."""
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "query": default,
        "current": {"text": default, "value": default},
        "options": [{"selected": True, "text": default, "value": default}],
    }


# --- layout ----------------------------------------------------------------------------------
class Board:
    """A dashboard under construction: rows and panels laid out left to right, 24 columns wide."""

    def __init__(self, key: str, description: str, variables: list[Json], tags: Iterable[str] = ()) -> None:
        self.key = key
        self.description = description
        self.variables = variables
        self.tags = ["nuxtest", *tags]
        self.panels: list[Json] = []
        self._x = 0
        self._y = 0
        self._row_height = 0

    def row(self, title: str) -> Board:
        """Start a new (expanded) row."""
        self._newline()
        self.panels.append(
            {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": self._pos(24, 1)}
        )
        self._y += 1
        return self

    def add(self, panel: Json, w: int = 12, h: int = 8) -> Board:
        """Place a panel of width w (of 24) and height h; wrap when the line is full."""
        if self._x + w > 24:
            self._newline()
        panel["gridPos"] = self._pos(w, h)
        self.panels.append(panel)
        self._x += w
        self._row_height = max(self._row_height, h)
        return self

    def _newline(self) -> None:
        self._y += self._row_height
        self._x = 0
        self._row_height = 0

    def _pos(self, w: int, h: int) -> Json:
        return {"x": self._x, "y": self._y, "w": w, "h": h}

    def build(self) -> Json:
        """The dashboard JSON model, with panel ids numbered in order."""
        panels = []
        for number, panel in enumerate(self.panels, start=1):
            panels.append({"id": number, **panel})
        return {
            "uid": UIDS[self.key],
            "title": TITLES[self.key],
            "description": self.description,
            "tags": self.tags,
            "editable": False,
            "graphTooltip": 1,
            "refresh": "30s",
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-3h", "to": "now"},
            "timepicker": {},
            "timezone": "utc",
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "",
            "annotations": {
                "list": [
                    {
                        "builtIn": 1,
                        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                        "enable": True,
                        "hide": True,
                        "iconColor": "rgba(0, 211, 255, 1)",
                        "name": "Annotations & Alerts",
                        "type": "dashboard",
                    },
                    {
                        "datasource": PROM,
                        "enable": True,
                        "iconColor": "red",
                        "name": "Firing alerts",
                        "expr": 'ALERTS{alertstate="firing", env=~"$env"}',
                        "step": "1m",
                        "titleFormat": "{{alertname}}",
                        "textFormat": "{{severity}} {{instance}}",
                        "useValueForTime": False,
                    },
                ]
            },
            "links": [
                {
                    "title": "NuxTest dashboards",
                    "type": "dashboards",
                    "tags": ["nuxtest"],
                    "asDropdown": True,
                    "includeVars": True,
                    "keepTime": True,
                    "icon": "external link",
                    "tooltip": "",
                    "url": "",
                    "targetBlank": False,
                }
            ],
            "templating": {"list": self.variables},
            "panels": panels,
        }


# --- the dashboards ---------------------------------------------------------------------------
WEB = "nuxtest-web"
GAME_JOBS = "nuxtest-web|nuxtest-celery"
# Locust's rows of the players' answer→ack exchange (loadtest/scenarios.py: WS, ANSWER_ACK).
LOCUST_ACKS = ('request_type="WS"', 'name="answer_ack"')
UP_DOWN = [
    {
        "type": "value",
        "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}},
    }
]
OFF_ON = [
    {
        "type": "value",
        "options": {"0": {"text": "off", "color": "green"}, "1": {"text": "ON", "color": "red"}},
    }
]
LAG_THRESHOLDS: list[tuple[float | None, str]] = [(None, "green"), (0.25, "orange"), (1, "red")]
# Django views that are the monitoring's own requests, not players': Prometheus's scrape of
# /metrics (every 15 s per instance) and the probes. Under a capacity run's 50 players they
# were a third of all requests, and the players' p95 (10 ms) read as 21.5 ms with them.
NOT_PLAYERS = 'view!~"metrics|healthz|readyz"'


def overview() -> Json:
    """Golden signals of HTTP, WebSockets and Celery; players online; games in progress."""
    b = Board(
        "overview",
        "Golden signals of HTTP, WebSockets and Celery; players and games. Start here.",
        [env_var(), instance_var(WEB)],
    )
    b.row("Players and games")
    b.add(
        with_links(
            stat("Players online", prom(f"max({sel('nuxtest_players_online', instance=False)})")), "game"
        ),
        w=4,
        h=4,
    )
    b.add(
        with_links(
            stat(
                "Games in progress",
                prom(f"max({sel('nuxtest_rooms', eq('status', 'playing'), instance=False)})"),
            ),
            "game",
        ),
        w=4,
        h=4,
    )
    b.add(
        with_links(
            stat("Open WebSocket connections", prom(f"sum({sel('nuxtest_ws_connections')})")), "websockets"
        ),
        w=4,
        h=4,
    )
    b.add(
        with_links(
            stat(
                "Celery workers online",
                prom(f"max({sel('nuxtest_celery_workers_online', instance=False)})"),
                thresholds=[(None, "red"), (1, "green")],
            ),
            "celery",
        ),
        w=4,
        h=4,
    )
    b.add(
        with_links(
            stat(
                "Availability error budget left (30 d)",
                prom(
                    sel(
                        "slo:period_error_budget_remaining:ratio",
                        'sloth_slo="game-availability"',
                        instance=False,
                    )
                ),
                unit="percentunit",
                thresholds=[(None, "red"), (0, "orange"), (0.25, "green")],
            ),
            "slos",
        ),
        w=4,
        h=4,
    )
    b.add(
        stat(
            "Release",
            prom(f"count by (version, commit) ({sel('nuxtest_build_info')})", "{{version}} ({{commit}})"),
            description="Versions running on the selected web instances: more than one during a deploy.",
            text_mode="name",
        ),
        w=4,
        h=4,
    )

    b.row("HTTP")
    b.add(
        with_links(
            timeseries(
                "HTTP responses by status (/s)",
                prom(rate("django_http_responses_total_by_status_total", by="status"), "{{status}}"),
                unit="reqps",
                stack=True,
            ),
            "django",
        ),
        w=8,
    )
    b.add(
        timeseries(
            "HTTP 5xx ratio",
            prom(
                or_zero(
                    rate("django_http_responses_total_by_status_total", matches("status", "5..")),
                    rate("django_http_responses_total_by_status_total"),
                )
                + f" / {rate('django_http_responses_total_by_status_total')}",
                "5xx",
            ),
            unit="percentunit",
            thresholds=[(None, "green"), (0.05, "red")],
        ),
        w=8,
    )
    b.add(
        timeseries(
            "HTTP latency",
            *[
                prom(
                    quantile(q, "django_http_requests_latency_seconds_by_view_method", NOT_PLAYERS),
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            unit="s",
            description="The players' requests: Prometheus's scrapes of /metrics and the health probes "
            "are left out (Django dashboard: latency by view has them).",
        ),
        w=8,
    )

    b.row("WebSockets")
    b.add(
        with_links(
            timeseries(
                "Frames received by type (/s)",
                prom(rate("nuxtest_ws_frames_received_total", by="type"), "{{type}}"),
                stack=True,
            ),
            "websockets",
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Frame handling p99 by type",
            prom(quantile(0.99, "nuxtest_ws_message_duration_seconds", by="type"), "{{type}}", exemplar=True),
            unit="s",
            thresholds=[(None, "green"), (0.1, "red")],
            description="Time to handle one client frame. Exemplars link to the frame's trace.",
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Refused handshakes and error frames (/s)",
            prom(rate("nuxtest_ws_connects_total", 'outcome=~"refused_.+"', by="outcome"), "{{outcome}}"),
            prom(rate("nuxtest_ws_frame_errors_total", by="code"), "error {{code}}"),
        ),
        w=8,
    )

    b.row("Celery and timers")
    b.add(
        with_links(
            timeseries(
                "Celery tasks by state (/s)",
                prom(rate("nuxtest_celery_tasks_total", by="state", instance=False), "{{state}}"),
                stack=True,
            ),
            "celery",
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Celery queue length",
            prom(f"max by (queue) ({sel('nuxtest_celery_queue_length', instance=False)})", "{{queue}}"),
            thresholds=[(None, "green"), (100, "red")],
        ),
        w=8,
    )
    b.add(
        with_links(
            timeseries(
                "Round-close lag p99",
                prom(quantile(0.99, "nuxtest_round_close_lag_seconds", instance=False), "p99"),
                unit="s",
                thresholds=LAG_THRESHOLDS,
                description="Close time minus deadline, deadline-closed rounds. Objective: p99 under 250 ms.",
            ),
            "game",
        ),
        w=8,
    )

    b.row("Health")
    b.add(
        stat(
            "Scrape targets",
            # The load generator's job is down between capacity tests, which is no fault.
            prom(sel("up", 'job!="locust"', instance=False), "{{job}} {{instance}}"),
            mappings=UP_DOWN,
            thresholds=[(None, "red"), (1, "green")],
        ),
        w=8,
        h=6,
    )
    b.add(
        stat(
            "Fault flags",
            prom(f"max by (flag) ({sel('nuxtest_fault_flag_on', instance=False)})", "{{flag}}"),
            mappings=OFF_ON,
            thresholds=[(None, "green"), (1, "red")],
            description="Operators' drill flags (manage.py faults): any ON degrades the game on purpose.",
        ),
        w=8,
        h=6,
    )
    b.add(
        with_links(
            table(
                "Firing alerts",
                prom(
                    'sum by (alertname, severity, instance) (ALERTS{alertstate="firing", env=~"$env"})',
                    instant=True,
                ),
                description="Each alert's runbook_url is in its annotations (Alertmanager).",
            ),
            "slos",
            "logs",
        ),
        w=8,
        h=6,
    )
    return b.build()


def game() -> Json:
    """Rooms, games, rounds, the round-close lag, answers and matchmaking."""
    b = Board(
        "game",
        "The game: rooms, games, rounds and their timers, answers, matchmaking, results.",
        [env_var(), instance_var(GAME_JOBS)],
    )
    b.row("Rooms and players")
    b.add(
        timeseries(
            "Rooms by status",
            prom(f"max by (status) ({sel('nuxtest_rooms', instance=False)})", "{{status}}"),
            stack=True,
            description="Read from Redis at each scrape (every instance says the same: max). An ended "
            "room (finished, abandoned) stays an hour, readable by reconnects: those are not games.",
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Players online", prom(f"max({sel('nuxtest_players_online', instance=False)})", "players")
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Game actions by outcome (/s)",
            prom(rate("nuxtest_game_actions_total", by="action, outcome"), "{{action}} {{outcome}}"),
            stack=True,
            description="The availability SLI: server_error over all.",
        ),
        w=8,
    )

    b.row("Games and rounds")
    b.add(
        timeseries(
            "Games started by mode (/s)", prom(rate("nuxtest_games_started_total", by="mode"), "{{mode}}")
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Games finished by outcome (/s)",
            prom(rate("nuxtest_games_finished_total", by="outcome"), "{{outcome}}"),
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Rounds closed by trigger (/s)",
            prom(rate("nuxtest_rounds_closed_total", by="trigger"), "{{trigger}}"),
        ),
        w=8,
    )

    b.row("Round-close lag (the timer's health)")
    b.add(
        timeseries(
            "Round-close lag",
            *[
                prom(quantile(q, "nuxtest_round_close_lag_seconds"), f"p{int(q * 100)}")
                for q in (0.5, 0.9, 0.99)
            ],
            unit="s",
            thresholds=LAG_THRESHOLDS,
            description="Actual close time minus the deadline, for rounds closed by their deadline. "
            "p99 must stay under 250 ms; 1 s is a failure. No exemplars (observed in the worker, "
            "whose multiprocess metrics keep none): the late closes' `round_closed` log lines "
            "carry the lag and the trace id (Logs).",
        ),
    )
    b.add(
        heatmap(
            "Round-close lag distribution",
            prom(buckets("nuxtest_round_close_lag_seconds"), "{{le}}"),
        ),
    )

    b.row("Answers and matchmaking")
    b.add(
        timeseries(
            "Answers by outcome (/s)",
            prom(rate("nuxtest_answers_total", by="outcome"), "{{outcome}}"),
            stack=True,
        ),
        w=6,
    )
    b.add(
        timeseries(
            "Answer time",
            *[prom(quantile(q, "nuxtest_answer_time_seconds"), f"p{int(q * 100)}") for q in (0.5, 0.9)],
            unit="s",
            description="From a question's broadcast to an accepted answer: how long players think.",
        ),
        w=6,
    )
    b.add(
        timeseries(
            "Matchmaking wait",
            *[prom(quantile(q, "nuxtest_matchmaking_wait_seconds"), f"p{int(q * 100)}") for q in (0.5, 0.9)],
            unit="s",
        ),
        w=6,
    )
    b.add(
        with_links(
            timeseries("Results written (/s)", prom(rate("nuxtest_results_written_total"), "rows")),
            "django",
            "logs",
        ),
        w=6,
    )

    # loadtest/exporter.py, scraped as job `locust` while a capacity test runs (docs/capacity.md).
    b.row("Load test (Locust, while a capacity test runs)")
    b.add(
        timeseries(
            "Players: simulated by Locust, online on the server",
            prom(agg("sum", sel("locust_users", instance=False)), "Locust users"),
            prom(f"max({sel('nuxtest_players_online', instance=False)})", "server: players online"),
            description="Locust's running users beside the server's own count. Empty between "
            "capacity tests (the `locust` job is down then).",
        ),
        w=6,
    )
    b.add(
        timeseries(
            "Answers (/s): acknowledged to players, received by the server",
            prom(rate("locust_requests_total", *LOCUST_ACKS, instance=False), "players: answer_ack"),
            prom(
                rate("nuxtest_answers_total", 'outcome!="missing"', instance=False),
                "server: answers received",
            ),
            description="The rate players saw acknowledged (Locust) and the rate of answers the server "
            "counted (correct and wrong; not `missing`, a round a player did not answer).",
        ),
        w=6,
    )
    b.add(
        timeseries(
            "Answer → ack p99: seen by players, handled by the server",
            prom(
                "1e-3 * "
                + agg(
                    "max",
                    sel(
                        "locust_current_response_time_milliseconds",
                        *LOCUST_ACKS,
                        'quantile="0.99"',
                        instance=False,
                    ),
                ),
                "players (Locust, last ~10 s)",
            ),
            prom(
                quantile(0.99, "nuxtest_ws_message_duration_seconds", 'type="answer"', instance=False),
                "server: answer handling",
                exemplar=True,
            ),
            unit="s",
            thresholds=[(None, "green"), (0.05, "red")],
            description="The players' p99 includes the network and the client; the capacity "
            "threshold is 50 ms (docs/capacity.md). Exemplars link a slow answer to its trace.",
        ),
        w=6,
    )
    b.add(
        timeseries(
            "Player-seen errors and lost frames (/s)",
            prom(or_none(rate("locust_ws_errors_total", by="code", instance=False), "code"), "{{code}}"),
            prom(rate("locust_lost_frames_total", instance=False), "lost frames"),
            description="Error frames and unexpected close codes players saw (`error:<code>`, "
            "`close:<code>`; none = no error yet), and room broadcasts they never received.",
        ),
        w=6,
    )
    return b.build()


def websockets() -> Json:
    """Connections, frames, handling time and the channel layer."""
    b = Board(
        "websockets",
        "WebSocket connections and frames, handling time per message type, and the channel layer "
        "(used by web instances and, for timer-driven broadcasts, by Celery workers).",
        [env_var(), instance_var(GAME_JOBS)],
    )
    b.row("Connections")
    b.add(
        timeseries(
            "Open connections by instance",
            prom(f"sum by (instance) ({sel('nuxtest_ws_connections')})", "{{instance}}"),
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Handshakes by outcome (/s)",
            prom(rate("nuxtest_ws_connects_total", by="outcome"), "{{outcome}}"),
            stack=True,
            description="accepted, or refused and why (origin, auth, no room, full, too many).",
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Disconnects by close code (/s)",
            prom(rate("nuxtest_ws_disconnects_total", by="code"), "{{code}}"),
            stack=True,
        ),
        w=8,
    )

    b.row("Frames")
    b.add(
        timeseries(
            "Received by type (/s)",
            prom(rate("nuxtest_ws_frames_received_total", by="type"), "{{type}}"),
            stack=True,
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Sent by type (/s)", prom(rate("nuxtest_ws_frames_sent_total", by="type"), "{{type}}"), stack=True
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Error frames by code (/s)",
            prom(rate("nuxtest_ws_frame_errors_total", by="code"), "{{code}}"),
            stack=True,
        ),
        w=8,
    )

    b.row("Handling time")
    b.add(
        timeseries(
            "Frame handling by type",
            prom(
                quantile(0.5, "nuxtest_ws_message_duration_seconds", by="type"), "p50 {{type}}", exemplar=True
            ),
            prom(
                quantile(0.99, "nuxtest_ws_message_duration_seconds", by="type"),
                "p99 {{type}}",
                exemplar=True,
            ),
            unit="s",
            thresholds=[(None, "green"), (0.1, "red")],
            log_scale=True,
            minimum=None,
            description="Exemplars (dots) link to the trace of one frame.",
        ),
        w=8,
    )
    b.add(
        with_links(
            heatmap(
                "Answer handling distribution",
                prom(
                    buckets("nuxtest_ws_message_duration_seconds", eq("type", "answer")),
                    "{{le}}",
                ),
                description="The latency SLI: an answer acknowledged within 100 ms. Exemplars link "
                "to the trace of one answer.",
                exemplar=True,
            ),
            "slos",
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Event loop lag by instance",
            prom(quantile(0.99, "nuxtest_event_loop_lag_seconds", by="instance"), "p99 {{instance}}"),
            prom(
                f"{rate('nuxtest_event_loop_lag_seconds_sum', by='instance')}"
                f" / {rate('nuxtest_event_loop_lag_seconds_count', by='instance')}",
                "mean {{instance}}",
            ),
            unit="s",
            thresholds=[(None, "green"), (0.05, "red")],
            log_scale=True,
            minimum=None,
            description="How late each web process's event loop ran a timer (sampled every 100 ms). "
            "Every frame of the process waits for that loop: a high p99 here with a high answer "
            "latency means the process was held (a slow step, a garbage collection, threads "
            "holding the GIL), not that Redis or the channel layer was slow.",
        ),
        w=8,
    )

    b.row("Channel layer")
    b.add(
        timeseries(
            "group_send duration",
            prom(quantile(0.5, "nuxtest_channel_layer_group_send_duration_seconds"), "p50", exemplar=True),
            prom(quantile(0.99, "nuxtest_channel_layer_group_send_duration_seconds"), "p99", exemplar=True),
            unit="s",
        ),
        w=6,
    )
    b.add(
        timeseries(
            "group_send calls (/s)",
            prom(
                rate("nuxtest_channel_layer_group_send_duration_seconds_count", by="instance"), "{{instance}}"
            ),
        ),
        w=6,
    )
    b.add(
        timeseries(
            "Failures by kind (/s)",
            prom(rate("nuxtest_channel_layer_failures_total", by="kind"), "{{kind}}"),
            thresholds=[(None, "green"), (0.01, "red")],
        ),
        w=6,
    )
    b.add(
        with_links(
            timeseries(
                "Messages dropped over capacity (/s)",
                prom(rate("nuxtest_channel_layer_dropped_messages_total", by="instance"), "{{instance}}"),
                thresholds=[(None, "green"), (0.001, "red")],
                description="channels-redis drops group messages silently past `capacity`.",
            ),
            "logs",
        ),
        w=6,
    )
    b.add(
        with_links(
            timeseries(
                "Broadcast gaps: frames players lost (/s)",
                prom(rate("nuxtest_ws_broadcast_gaps_total", by="instance"), "{{instance}}"),
                thresholds=[(None, "green"), (0.001, "red")],
                description="Broadcasts a connection went on without after the reorder hold (its client "
                "resyncs). Zero in normal operation; see the `broadcast_gap` log lines.",
            ),
            "logs",
        ),
        w=6,
    )
    return b.build()


def celery() -> Json:
    """Workers, queues, tasks (the project's metrics and Flower's)."""
    b = Board(
        "celery",
        "Celery: workers, queue lengths, tasks by name and state, run times; Flower's view of the workers.",
        [env_var(), instance_var("nuxtest-celery")],
    )
    b.row("Workers and queues")
    b.add(
        stat(
            "Workers online",
            prom(f"max({sel('nuxtest_celery_workers_online', instance=False)})"),
            thresholds=[(None, "red"), (1, "green")],
        ),
        w=4,
        h=6,
    )
    b.add(
        timeseries(
            "Queue length",
            prom(f"max by (queue) ({sel('nuxtest_celery_queue_length', instance=False)})", "{{queue}}"),
            thresholds=[(None, "green"), (100, "red")],
        ),
        w=10,
        h=6,
    )
    b.add(
        timeseries(
            "Workers seen by Flower",
            prom(f"sum by (worker) ({sel('flower_worker_online', instance=False)})", "{{worker}}"),
            description="Flower's own view: 1 from a worker's online event or heartbeat until "
            "its offline event. A worker killed without one (SIGKILL, the OOM killer) leaves "
            "this panel 60 s after its last heartbeat (Flower's --purge_offline_workers=60). "
            "Workers online (Redis heartbeats) is the figure the alert reads.",
        ),
        w=10,
        h=6,
    )

    b.row("Tasks")
    b.add(
        timeseries(
            "Tasks by name and state (/s)",
            prom(rate("nuxtest_celery_tasks_total", by="task, state"), "{{task}} {{state}}"),
            stack=True,
        ),
    )
    b.add(
        timeseries(
            "Failure ratio by task",
            prom(
                or_zero(
                    rate("nuxtest_celery_tasks_total", eq("state", "failure"), by="task"),
                    rate("nuxtest_celery_tasks_total", by="task"),
                )
                + f" / {rate('nuxtest_celery_tasks_total', by='task')}",
                "{{task}}",
            ),
            unit="percentunit",
            thresholds=[(None, "green"), (0.05, "red")],
        ),
    )
    b.add(
        timeseries(
            "Task run time p95 by task",
            prom(quantile(0.95, "nuxtest_celery_task_duration_seconds", by="task"), "{{task}}"),
            unit="s",
        ),
    )
    b.add(
        with_links(
            timeseries(
                "Round-close lag p99",
                prom(quantile(0.99, "nuxtest_round_close_lag_seconds", instance=False), "p99"),
                unit="s",
                thresholds=LAG_THRESHOLDS,
                description="A backlog shows here before players complain.",
            ),
            "game",
        ),
    )

    b.row("Timers")
    b.add(
        timeseries(
            "Overdue timers",
            prom(f"max({sel('nuxtest_timers_overdue', instance=False)})", "overdue"),
            thresholds=[(None, "green"), (1, "red")],
            description=(
                "Game timers (deadlines, next questions, quick-match starts, result writes) past due "
                "that no worker's pump has sent. Above 0 for more than a moment: no pump is running "
                "(no worker, or workers that cannot reach Redis or the broker); the sweeper does the "
                "steps about a second late meanwhile."
            ),
        ),
        w=8,
        h=6,
    )
    b.add(
        with_links(
            timeseries(
                "Oldest overdue timer",
                prom(f"max({sel('nuxtest_timers_overdue_seconds', instance=False)})", "late by"),
                unit="s",
                thresholds=LAG_THRESHOLDS,
                description="How long the oldest overdue timer has been due (0: none is).",
            ),
            "game",
        ),
        w=8,
        h=6,
    )
    b.add(
        timeseries(
            "Clock offset from Redis by process",
            prom(sel("nuxtest_clock_offset_seconds", instance=False), "{{job}} {{instance}}"),
            unit="s",
            description=(
                "Each web instance's and worker's clock against Redis's (to within half a round "
                "trip). Deadlines, answers and timers are timed on different hosts: the lines "
                "should lie within a few ms of each other (alert NuxtestClockSkew at 25 ms apart)."
            ),
        ),
        w=8,
        h=6,
    )

    b.row("Flower")
    b.add(
        timeseries(
            "Executing now by worker",
            prom(
                agg(
                    "sum",
                    sel("flower_worker_number_of_currently_executing_tasks", instance=False),
                    by="worker",
                ),
                "{{worker}}",
            ),
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Prefetched (waiting at a worker) by task",
            prom(f"sum by (task) ({sel('flower_worker_prefetched_tasks', instance=False)})", "{{task}}"),
            description="Tasks a worker has taken from the queue and not yet started.",
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Task events by type (/s)",
            prom(rate("flower_events_total", by="type", instance=False), "{{type}}"),
            stack=True,
        ),
        w=8,
    )
    return b.build()


def django() -> Json:
    """HTTP (django-prometheus), the database, the cache, Redis, PostgreSQL and the processes."""
    b = Board(
        "django",
        "Django HTTP and database (django-prometheus), the web processes, Redis and PostgreSQL.",
        [env_var(), instance_var(WEB)],
    )
    b.row("HTTP")
    b.add(
        timeseries(
            "Requests by method (/s)",
            prom(rate("django_http_requests_total_by_method_total", by="method"), "{{method}}"),
            stack=True,
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Responses by status (/s)",
            prom(rate("django_http_responses_total_by_status_total", by="status"), "{{status}}"),
            stack=True,
        ),
        w=8,
    )
    b.add(
        with_links(
            timeseries(
                "Exceptions by type (/s)",
                prom(
                    or_none(rate("django_http_exceptions_total_by_type_total", by="type"), "type"), "{{type}}"
                ),
            ),
            "logs",
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Latency p95 by view",
            prom(
                quantile(0.95, "django_http_requests_latency_seconds_by_view_method", by="view"), "{{view}}"
            ),
            unit="s",
        ),
    )
    b.add(
        timeseries(
            "Latency including middleware",
            *[
                prom(
                    quantile(q, "django_http_requests_latency_including_middlewares_seconds"),
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            unit="s",
        ),
    )

    b.row("Database and cache (from Django)")
    b.add(
        timeseries("Queries by alias (/s)", prom(rate("django_db_execute_total", by="alias"), "{{alias}}")),
        w=6,
    )
    b.add(
        timeseries(
            "Query duration p95",
            prom(quantile(0.95, "django_db_query_duration_seconds", by="alias"), "{{alias}}"),
            unit="s",
        ),
        w=6,
    )
    b.add(
        timeseries(
            "Database errors and new connections (/s)",
            prom(or_none(rate("django_db_errors_total", by="type"), "type"), "error {{type}}"),
            prom(rate("django_db_new_connections_total"), "new connections"),
            prom(or_none(rate("django_db_new_connection_errors_total")), "connection errors"),
        ),
        w=6,
    )
    b.add(
        timeseries(
            "Cache hit ratio",
            prom(f"{rate('django_cache_get_hits_total')} / {rate('django_cache_get_total')}", "hits"),
            unit="percentunit",
            minimum=0,
        ),
        w=6,
    )

    b.row("Web processes")
    b.add(
        timeseries(
            "CPU by instance",
            prom(f"rate({sel('process_cpu_seconds_total', eq('job', WEB))}[{RATE}])", "{{instance}}"),
            unit="percentunit",
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Resident memory by instance",
            prom(sel("process_resident_memory_bytes", eq("job", WEB)), "{{instance}}"),
            unit="bytes",
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Open file descriptors and GC (/s)",
            prom(sel("process_open_fds", eq("job", WEB)), "fds {{instance}}"),
            prom(
                f"sum by (instance) (rate({sel('python_gc_collections_total', eq('job', WEB))}[{RATE}]))",
                "gc {{instance}}",
            ),
        ),
        w=8,
    )

    b.row("Redis")
    b.add(
        stat(
            "Redis",
            prom(sel("redis_up", instance=False), "{{instance}}"),
            mappings=UP_DOWN,
            thresholds=[(None, "red"), (1, "green")],
        ),
        w=4,
    )
    b.add(
        timeseries(
            "Memory used / maxmemory",
            prom(sel("redis_memory_used_bytes", instance=False), "used {{instance}}"),
            prom(sel("redis_memory_max_bytes", instance=False), "max {{instance}}"),
            unit="bytes",
        ),
        w=5,
    )
    b.add(
        timeseries(
            "Commands (/s) and clients",
            prom(
                f"rate({sel('redis_commands_processed_total', instance=False)}[{RATE}])",
                "commands/s {{instance}}",
            ),
            prom(sel("redis_connected_clients", instance=False), "clients {{instance}}"),
        ),
        w=5,
    )
    b.add(
        timeseries(
            "Keys, evictions (/s), rejected connections (/s)",
            prom(f"sum by (instance) ({sel('redis_db_keys', instance=False)})", "keys {{instance}}"),
            prom(f"rate({sel('redis_evicted_keys_total', instance=False)}[{RATE}])", "evicted {{instance}}"),
            prom(
                f"rate({sel('redis_rejected_connections_total', instance=False)}[{RATE}])",
                "rejected {{instance}}",
            ),
            description="Evictions must stay at 0: game state and the broker live here (noeviction).",
        ),
        w=5,
    )
    b.add(
        timeseries(
            "Keyspace hit ratio",
            prom(
                f"rate({sel('redis_keyspace_hits_total', instance=False)}[{RATE}])"
                f" / (rate({sel('redis_keyspace_hits_total', instance=False)}[{RATE}])"
                f" + rate({sel('redis_keyspace_misses_total', instance=False)}[{RATE}]))",
                "{{instance}}",
            ),
            unit="percentunit",
        ),
        w=5,
    )

    b.row("PostgreSQL")
    b.add(
        stat(
            "PostgreSQL",
            prom(sel("pg_up", instance=False), "{{instance}}"),
            mappings=UP_DOWN,
            thresholds=[(None, "red"), (1, "green")],
        ),
        w=4,
    )
    b.add(
        timeseries(
            "Connections / max_connections",
            prom(
                f"sum by (instance) ({sel('pg_stat_database_numbackends', instance=False)})",
                "backends {{instance}}",
            ),
            prom(sel("pg_settings_max_connections", instance=False), "max {{instance}}"),
        ),
        w=5,
    )
    b.add(
        timeseries(
            "Transactions (/s)",
            prom(
                f"sum by (datname) (rate({sel('pg_stat_database_xact_commit', instance=False)}[{RATE}]))",
                "commit {{datname}}",
            ),
            prom(
                f"sum by (datname) (rate({sel('pg_stat_database_xact_rollback', instance=False)}[{RATE}]))",
                "rollback {{datname}}",
            ),
        ),
        w=5,
    )
    b.add(
        timeseries(
            "Deadlocks (/s)",
            prom(
                f"sum by (datname) (rate({sel('pg_stat_database_deadlocks', instance=False)}[{RATE}]))",
                "{{datname}}",
            ),
        ),
        w=5,
    )
    b.add(
        timeseries(
            "Database size",
            prom(sel("pg_database_size_bytes", instance=False), "{{datname}}"),
            unit="bytes",
        ),
        w=5,
    )
    return b.build()


def _answers_slower_than(seconds: str, **kw: Any) -> str:
    """Rate of answers handled in more than `seconds` (a bucket boundary)."""
    histogram = "nuxtest_ws_message_duration_seconds"
    return (
        f"({rate(f'{histogram}_count', eq('type', 'answer'), **kw)}"
        f" - {rate(f'{histogram}_bucket', eq('type', 'answer'), eq('le', seconds), **kw)})"
    )


# Per SLO: title, what it promises, and its SLI's bad and total events per web instance over
# 5 m, from the raw series (the recording rules of rules/slo.yml sum the instances away).
SLOS = {
    "game-availability": (
        "Game availability",
        "Answers and starts handled without a server error. Objective 99.9 % over 30 days.",
        rate("nuxtest_game_actions_total", eq("outcome", "server_error"), by="instance", window="5m"),
        rate("nuxtest_game_actions_total", by="instance", window="5m"),
    ),
    "game-latency": (
        "Game latency",
        "Answers acknowledged within 100 ms. Objective 99 % over 30 days.",
        _answers_slower_than("0.1", by="instance", window="5m"),
        rate("nuxtest_ws_message_duration_seconds_count", eq("type", "answer"), by="instance", window="5m"),
    ),
}
# Every window the burn-rate alerts read (rules/slo.yml): short and long of each pair.
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def slos() -> Json:
    """Objective, error budget left and burn rates for each SLO (Sloth-style recording rules)."""
    b = Board(
        "slos",
        "Service-level objectives: objective, error budget left over 30 days, burn rates by window "
        "and by web instance.",
        [env_var(), instance_var(WEB)],
    )
    for slo, (title, what, bad, total) in SLOS.items():
        match = f'sloth_slo="{slo}"'
        b.row(f"{title}: {what}")
        b.add(
            stat("Objective", prom(f"max(slo:objective:ratio{{{match}}})"), unit="percentunit", decimals=2),
            w=4,
            h=5,
        )
        b.add(
            stat(
                "SLI over 30 days",
                prom(f"1 - {sel('slo:sli_error:ratio_rate30d', match, instance=False)}"),
                unit="percentunit",
                decimals=3,
            ),
            w=4,
            h=5,
        )
        b.add(
            stat(
                "Error budget left (30 d)",
                prom(sel("slo:period_error_budget_remaining:ratio", match, instance=False)),
                unit="percentunit",
                thresholds=[(None, "red"), (0, "orange"), (0.25, "green")],
            ),
            w=4,
            h=5,
        )
        b.add(
            stat(
                "Burn rate now (5 m)",
                prom(sel("slo:current_burn_rate:ratio", match, instance=False)),
                unit="x",
                thresholds=[(None, "green"), (1, "orange"), (6, "red")],
                decimals=2,
            ),
            w=4,
            h=5,
        )
        b.add(
            with_links(
                table(
                    "Burn-rate alerts firing",
                    prom(
                        f'sum by (alertname, severity) (ALERTS{{alertstate="firing", env=~"$env", {match}}})',
                        instant=True,
                    ),
                ),
                "logs",
            ),
            w=8,
            h=5,
        )
        b.add(
            timeseries(
                "Burn rate by window",
                *[
                    prom(
                        f"{sel(f'slo:sli_error:ratio_rate{w}', match, instance=False)}"
                        f" / on (sloth_id) group_left () slo:error_budget:ratio{{{match}}}",
                        w,
                    )
                    for w in WINDOWS
                ],
                unit="x",
                thresholds=[(None, "green"), (1, "yellow"), (3, "orange"), (6, "red"), (14.4, "dark-red")],
                description="Page at 14.4x (1 h and 5 m) or 6x (6 h and 30 m); ticket at 3x (1 d and 2 h) "
                "or 1x (3 d and 6 h).",
            ),
        )
        b.add(
            timeseries(
                "Burn rate by instance (5 m)",
                prom(
                    f"{bad} / ({total} > 0) / on () group_left () slo:error_budget:ratio{{{match}}}",
                    "{{instance}}",
                ),
                unit="x",
                thresholds=[(None, "green"), (1, "yellow"), (3, "orange"), (6, "red"), (14.4, "dark-red")],
                description="Each selected web instance's own 5-minute burn rate, against the same budget: "
                "which instance burns it. The SLO and its alerts are the environment's (the recording "
                "rules sum the instances away); only this panel follows the instance variable.",
            ),
            w=6,
        )
        b.add(
            timeseries(
                "Error budget left (30 d)",
                prom(sel("slo:period_error_budget_remaining:ratio", match, instance=False), "budget left"),
                unit="percentunit",
                minimum=None,
                thresholds=[(None, "red"), (0, "orange"), (0.25, "green")],
            ),
            w=6,
        )
    return b.build()


LOG_STREAM = '{env=~"$env", service=~"$service", level=~"$level"}'


def logs_board() -> Json:
    """Loki: volume by level, errors with trace links, a search by text, room or trace id."""
    b = Board(
        "logs",
        "JSON logs of web, worker and beat (Loki). Labels: service, level, env; trace_id is "
        "structured metadata and links to its trace. Filter by text, room or trace id.",
        [
            loki_label_var("env", "Environment"),
            loki_label_var("service", "Service"),
            loki_label_var("level", "Level"),
            textbox("search", "Text", ""),
            textbox("room", "Room (regex)", ".*"),
            textbox("trace_id", "Trace id (regex)", ".*"),
        ],
    )
    b.row("Volume")
    b.add(
        timeseries(
            "Log lines by level",
            loki(f"sum by (level) (count_over_time({LOG_STREAM} [$__auto]))", "{{level}}"),
            stack=True,
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Log lines by service",
            loki(f"sum by (service) (count_over_time({LOG_STREAM} [$__auto]))", "{{service}}"),
            stack=True,
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Top events",
            loki(
                f'topk(10, sum by (event) (count_over_time({LOG_STREAM} | json event="event" [$__auto])))',
                "{{event}}",
            ),
            description="The stable `event` name of each line.",
        ),
        w=8,
    )
    b.row("Lines")
    b.add(
        with_links(
            logs(
                "Errors",
                loki('{env=~"$env", service=~"$service", level=~"(?i)(error|critical)"} |= "$search"'),
                description="Open a line: its trace_id links to the trace in Tempo.",
            ),
            "overview",
        ),
        w=24,
        h=10,
    )
    b.add(
        logs(
            "All lines",
            loki(f'{LOG_STREAM} |= "$search" | trace_id =~ "$trace_id" | json | room =~ "$room"'),
        ),
        w=24,
        h=14,
    )
    return b.build()


BOARDS = {
    "overview.json": overview,
    "game.json": game,
    "websockets.json": websockets,
    "celery.json": celery,
    "django.json": django,
    "slos.json": slos,
    "logs.json": logs_board,
}


def build() -> dict[str, Json]:
    """Every dashboard, by file name."""
    return {name: make() for name, make in BOARDS.items()}


def render(dashboard: Json) -> str:
    """The JSON text committed for a dashboard."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards, or with --check report the stale ones."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for name, dashboard in build().items():
        path = OUT / name
        content = render(dashboard)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != content:
                stale.append(name)
        else:
            path.write_text(content, encoding="utf-8")
    if stale:
        print("stale dashboards (run python observability/grafana/dashboards.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
