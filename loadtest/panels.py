"""The dashboards' own figures for a time window, read from Prometheus without Grafana.

    python -m loadtest.panels --prometheus http://127.0.0.1:9090 --since 5m
    python -m loadtest.panels --prometheus URL --dashboard nuxtest-game --start 2026-11-28T08:00:00Z --end ...

Every Prometheus query of every panel in observability/grafana/dashboards/ is filled in as
Grafana fills it (`$env`, `$instance`, `$__rate_interval`, …) and run over the window
(`/api/v1/query_range`); each series the panel would draw is printed with its legend and
its last, lowest, highest and mean value, as Markdown tables, one per dashboard. It is how
a capacity run's report shows "what the dashboards said" (docs/capacity.md), and it tells
a panel that would show "No data". Loki panels are left out.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

DASHBOARDS = Path(__file__).resolve().parent.parent / "observability" / "grafana" / "dashboards"

# Grafana's built-in intervals, and the dashboards' own variables ($env, ${instance}, ...).
_INTERVAL = re.compile(r"\$\{?(__rate_interval|__interval|__auto|__range)\}?")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class PanelQuery:
    """One Prometheus query of one dashboard panel."""

    dashboard: str
    uid: str
    panel: str
    expr: str
    legend: str
    unit: str


@dataclass(frozen=True)
class Series:
    """One series a panel draws over the window: its legend and its values' summary."""

    legend: str
    last: float
    low: float
    high: float
    mean: float


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def panel_queries(directory: Path = DASHBOARDS) -> list[PanelQuery]:
    """Every Prometheus panel query of the dashboards, in file and panel order."""
    found = []
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in iter_panels(board.get("panels", [])):
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit") or "short"
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") != "prometheus":
                    continue
                found.append(
                    PanelQuery(
                        board["title"],
                        board["uid"],
                        panel["title"],
                        target["expr"],
                        target.get("legendFormat", ""),
                        unit,
                    )
                )
    return found


def seconds(duration: str) -> int:
    """'90s', '5m', '1h', '2d' → seconds."""
    match = _DURATION.match(duration.strip())
    if not match:
        raise ValueError(f"not a duration: {duration!r} (say 30s, 5m, 1h)")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def fill(expr: str, *, variables: dict[str, str], interval: str, window: str) -> str:
    """A panel query as Grafana sends it: intervals and the dashboard's variables filled in."""
    expr = _INTERVAL.sub(lambda m: window if m.group(1) == "__range" else interval, expr)

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"no value for ${name} (known: {sorted(variables)})")
        return variables[name]

    return _VARIABLE.sub(value, expr)


def legend(fmt: str, labels: dict[str, str]) -> str:
    """The series' name as the panel's legend format writes it."""
    if fmt and fmt != "__auto":
        return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), fmt)
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + "}" if shown else "value"


def query_range(prometheus: str, expr: str, *, start: float, end: float, step: float) -> list[dict[str, Any]]:
    """Prometheus's /api/v1/query_range result (a matrix)."""
    r = requests.get(
        f"{prometheus.rstrip('/')}/api/v1/query_range",
        params={"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        timeout=30,
    )
    body = r.json()
    if r.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(f"{expr}: {r.status_code} {body.get('error', r.text[:300])}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def summarise(fmt: str, matrix: list[dict[str, Any]]) -> list[Series]:
    """Each series with at least one finite value, summarised."""
    found = []
    for item in matrix:
        values = [float(v) for _, v in item["values"]]
        finite = [v for v in values if math.isfinite(v)]
        if finite:
            found.append(
                Series(
                    legend(fmt, item["metric"]),
                    finite[-1],
                    min(finite),
                    max(finite),
                    sum(finite) / len(finite),
                )
            )
    return sorted(found, key=lambda s: s.legend)


def figures(
    prometheus: str,
    query: PanelQuery,
    *,
    variables: dict[str, str],
    start: float,
    end: float,
    step: float,
    interval: str,
) -> list[Series]:
    """What the panel draws over [start, end]: one Series per line (none: "No data")."""
    expr = fill(query.expr, variables=variables, interval=interval, window=f"{max(1, round(end - start))}s")
    return summarise(query.legend, query_range(prometheus, expr, start=start, end=end, step=step))


def show(value: float, unit: str) -> str:
    """A value in the panel's unit, as a reader wants it."""
    if unit == "s":
        return f"{value * 1000:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"
    if unit == "percentunit":
        return f"{value * 100:.3g} %"
    if unit == "bytes":
        return f"{value / 2**20:.4g} MiB"
    if unit == "reqps":
        return f"{value:.4g}/s"
    if unit == "x":
        return f"{value:.3g}x"
    return f"{value:.4g}"


def _when(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main(argv: list[str] | None = None) -> int:
    """Print the dashboards' figures over a window as Markdown."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--env", default="local", help="the dashboards' $env (prometheus.yml's env label)")
    parser.add_argument("--instance", default=".+", help="the $instance regex (default: all)")
    parser.add_argument("--since", default="5m", help="window ending now (default 5m)")
    parser.add_argument("--start", help="window start (unix seconds or RFC 3339); overrides --since")
    parser.add_argument("--end", help="window end (default now)")
    parser.add_argument("--step", default="15s", help="resolution (default 15s)")
    parser.add_argument("--rate-interval", default="1m", help="$__rate_interval (default 1m)")
    parser.add_argument("--dashboard", action="append", help="only these dashboard uids (repeatable)")
    args = parser.parse_args(argv)

    end = _when(args.end) if args.end else time.time()
    start = _when(args.start) if args.start else end - seconds(args.since)
    variables = {"env": args.env, "instance": args.instance}
    empty = 0
    current = None
    for query in panel_queries():
        if args.dashboard and query.uid not in args.dashboard:
            continue
        if query.uid != current:
            current = query.uid
            print(f"\n### {query.dashboard} (`{query.uid}`)\n")
            print("| panel | series | last | min | max | mean |")
            print("|---|---|---:|---:|---:|---:|")
        found = figures(
            args.prometheus,
            query,
            variables=variables,
            start=start,
            end=end,
            step=seconds(args.step),
            interval=args.rate_interval,
        )
        if not found:
            empty += 1
            print(f"| {query.panel} | *no data* | | | | |")
        for s in found:
            cells = (show(v, query.unit) for v in (s.last, s.low, s.high, s.mean))
            print(f"| {query.panel} | {s.legend} | " + " | ".join(cells) + " |")
    window = " to ".join(datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") for t in (start, end))
    print(
        f"\nWindow {window} UTC, step {args.step}, $__rate_interval {args.rate_interval}; "
        f"{empty} panel queries without data."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
