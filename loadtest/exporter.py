"""Locust's own figures as Prometheus metrics (names prefixed `locust_`).

Read from Locust's aggregated statistics at scrape time, so the figures are the same as
the ones in Locust's tables and CSVs, on a standalone run or on the master of a
distributed one. Started from the locustfile's `init` hook when LOADTEST_PROMETHEUS_PORT
is set; the Game dashboard's "Load test" row then shows the load beside the server's own
metrics (Prometheus's `locust` job, observability/prometheus/prometheus.yml).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from loadtest import scenarios as sc

QUANTILES = (0.5, 0.95, 0.99)

# Every family this exporter serves, by type: the Game dashboard's "Load test" row reads
# them, and the PromQL tests know them from here. The last two are the soak scenario's
# (`extra_gauges`), served once it has sampled the server's memory.
FAMILIES = {
    "locust_users": "gauge",
    "locust_requests": "counter",
    "locust_failures": "counter",
    "locust_current_rps": "gauge",
    "locust_response_time_milliseconds": "gauge",
    "locust_current_response_time_milliseconds": "gauge",
    "locust_ws_errors": "counter",
    "locust_lost_frames": "counter",
    "locust_fail_ratio": "gauge",
    "locust_server_rss_bytes": "gauge",
    "locust_server_rss_growth_ratio": "gauge",
}

# Figures that are not requests (the soak scenario's server memory samples, …).
extra_gauges: dict[str, float] = {}


class LocustCollector(Collector):
    """Collects Locust's statistics from one Environment."""

    def __init__(self, environment: Any, scenario: str) -> None:
        self.environment = environment
        self.scenario = scenario

    def collect(self) -> Iterator[Any]:
        """Yield the metric families (called at each scrape)."""
        env = self.environment
        stats = env.stats
        runner = env.runner
        users = GaugeMetricFamily("locust_users", "Simulated users running", labels=["scenario"])
        users.add_metric([self.scenario], float(runner.user_count if runner is not None else 0))
        yield users

        requests = CounterMetricFamily(
            "locust_requests", "Requests (and WebSocket exchanges) made", labels=["request_type", "name"]
        )
        failures = CounterMetricFamily(
            "locust_failures", "Requests that failed", labels=["request_type", "name"]
        )
        rps = GaugeMetricFamily(
            "locust_current_rps", "Requests per second (recent)", labels=["request_type", "name"]
        )
        latency = GaugeMetricFamily(
            "locust_response_time_milliseconds",
            "Response time percentiles over the whole run",
            labels=["request_type", "name", "quantile"],
        )
        current = GaugeMetricFamily(
            "locust_current_response_time_milliseconds",
            "Response time percentiles over the last ~10 s (Locust's current window)",
            labels=["request_type", "name", "quantile"],
        )
        errors = CounterMetricFamily(
            "locust_ws_errors", "Error frames and unexpected close codes seen by players", labels=["code"]
        )
        lost = 0
        for entry in list(stats.entries.values()):
            key = [entry.method or "", entry.name]
            requests.add_metric(key, float(entry.num_requests))
            failures.add_metric(key, float(entry.num_failures))
            rps.add_metric(key, float(entry.current_rps))
            if entry.num_requests:
                for q in QUANTILES:
                    latency.add_metric([*key, str(q)], float(entry.get_response_time_percentile(q)))
                    recent = _current_percentile(entry, q)
                    if recent is not None:
                        current.add_metric([*key, str(q)], float(recent))
            if entry.method == sc.WS and entry.name == sc.LOST_FRAME:
                lost += entry.num_failures
            if entry.name.startswith(("error:", "close:")):
                errors.add_metric([entry.name], float(entry.num_failures))
        yield requests
        yield failures
        yield rps
        yield latency
        yield current
        yield errors
        yield CounterMetricFamily("locust_lost_frames", "Room broadcasts players never received", value=lost)
        ratio = GaugeMetricFamily("locust_fail_ratio", "Failures / requests over the run")
        ratio.add_metric([], float(stats.total.fail_ratio))
        yield ratio
        for name, value in list(extra_gauges.items()):
            yield GaugeMetricFamily(f"locust_{name}", f"locust_{name}", value=value)


def _current_percentile(entry: Any, q: float) -> float | None:
    """Locust's percentile over its last ~10 s, or None before it has that window (or when
    its statistics keep no response-time cache)."""
    if not entry.use_response_times_cache:
        return None
    value = entry.get_current_response_time_percentile(q)
    return None if value is None else float(value)


def start(environment: Any, port: int, scenario: str, addr: str = "127.0.0.1") -> CollectorRegistry:
    """Serve the collector on addr:port (loopback unless told otherwise)."""
    registry = CollectorRegistry()
    registry.register(LocustCollector(environment, scenario))
    start_http_server(port, addr=addr, registry=registry)
    return registry
