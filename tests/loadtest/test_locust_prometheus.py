"""Locust's figures reach Prometheus and the Game dashboard's "Load test" row draws them.

A real headless Locust run against the e2e stack serves its exporter (loadtest/exporter.py);
a real Prometheus scrapes it as prometheus.yml's `locust` job, beside the web instances;
every query of every panel of that row then draws data, as Grafana would show it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from loadtest.exporter import FAMILIES
from loadtest.panels import PanelQuery, figures, panel_queries
from loadtest.prometheus import LocalPrometheus
from loadtest.prometheus import binary as prometheus_binary
from tests.e2e.stack import LOGS, free_port
from tests.loadtest.test_locustfile import LOCUST, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECONDS = 40


def load_row_queries() -> list[PanelQuery]:
    """Every query of the Game dashboard's panels that read Locust's figures."""
    queries = [q for q in panel_queries() if q.uid == "nuxtest-game"]
    panels = {q.panel for q in queries if "locust_" in q.expr}
    return [q for q in queries if q.panel in panels]


def test_the_load_test_row_draws_a_running_locust_beside_the_server(live, tmp_path: Path) -> None:
    if prometheus_binary() is None:
        if os.environ.get("NUXTEST_REQUIRE_PROMTOOL") == "1":
            pytest.fail("prometheus is not installed; NUXTEST_REQUIRE_PROMTOOL=1 requires it")
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")
    queries = load_row_queries()
    assert len({q.panel for q in queries}) >= 4, queries
    exporter_port = free_port()
    prom = LocalPrometheus(tmp_path / "prom", free_port(), LOGS / "prometheus-locust.log")
    prom.write_config(
        {"locust": [f"127.0.0.1:{exporter_port}"], "nuxtest-web": [urlsplit(live.url).netloc]}, interval="1s"
    )
    prom.write_rules()
    env = {
        **os.environ,
        "LOADTEST_SUMMARY": str(tmp_path / "summary.json"),
        "LOADTEST_ACCOUNTS": str(tmp_path / "accounts.json"),
        "LOADTEST_PROMETHEUS_PORT": str(exporter_port),
        "LOADTEST_THINK_MIN": "0.2",
        "LOADTEST_THINK_MAX": "1.0",
        "LOADTEST_MAX_P99_ACK_MS": "1000",
        "LOADTEST_SKIP_PROBABILITY": "0",
    }
    argv = [str(LOCUST), "-f", "loadtest/locustfile.py", "--headless", "--scenario", "steady"]
    argv += ["-u", "4", "-r", "4", "-t", f"{SECONDS}s", "-H", live.url, "--only-summary"]
    prom.start()
    locust = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        variables = {"env": "local", "instance": ".+"}
        deadline = time.monotonic() + SECONDS - 5
        empty: list[str] = []
        while time.monotonic() < deadline:
            time.sleep(2)
            end = time.time()

            def drawn(q: PanelQuery, end: float = end) -> bool:
                return bool(
                    figures(prom.url, q, variables=variables, start=end - 30, end=end, step=1, interval="5s")
                )

            empty = [f"{q.panel}: {q.expr}" for q in queries if not drawn(q)]
            if not empty:
                break
        assert not empty, "Load test panels with no data while Locust ran:\n" + "\n".join(empty)
        # Every family the exporter declares (the soak's memory gauges aside) is served.
        served = requests.get(f"http://127.0.0.1:{exporter_port}/metrics", timeout=5).text
        for family, kind in FAMILIES.items():
            if "server_rss" not in family:
                named = f"{family}_total" if kind == "counter" else family
                assert f"# TYPE {named} {kind}\n" in served, family
        up = prom.query('up{job="locust"}')
        assert [s["value"][1] for s in up] == ["1"], up
    finally:
        _, err = locust.communicate(timeout=SECONDS + 60)
        prom.stop()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert locust.returncode == 0, (summary, err[-3000:])
    assert summary["answer_acks"] >= 1, summary
