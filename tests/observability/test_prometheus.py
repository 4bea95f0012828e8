"""Prometheus and Alertmanager configuration, checked by promtool and amtool."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.observability import support
from tests.observability.support import PROMETHEUS, RULE_TESTS, load_yaml, run, tool

ALERTMANAGER = PROMETHEUS / "alertmanager.yml"


def test_promtool_accepts_the_prometheus_config_and_its_rule_files() -> None:
    result = run(tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    for path in support.rule_files():
        assert f"Checking {path}" in result.stdout, f"{path.name} is not loaded"


def test_promtool_accepts_every_rule_file() -> None:
    result = run(tool("promtool"), "check", "rules", *map(str, support.rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    files = support.rule_test_files()
    assert files, "no promtool unit tests beside the rules"
    result = run(tool("promtool"), "test", "rules", *(p.name for p in files), cwd=RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_file_is_unit_tested() -> None:
    tested = {
        (RULE_TESTS / rule_file).resolve()
        for path in support.rule_test_files()
        for rule_file in load_yaml(path)["rule_files"]
    }
    assert tested == {p.resolve() for p in support.rule_files()}


def test_amtool_accepts_the_alertmanager_config() -> None:
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("labels", "receiver"), [("severity=page", "page"), ("severity=ticket", "ticket")])
def test_pages_and_tickets_go_to_separate_receivers(labels: str, receiver: str) -> None:
    result = run(
        tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", "alertname=X", labels
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_alerts_are_grouped_by_alert_and_instance() -> None:
    route = load_yaml(ALERTMANAGER)["route"]
    assert set(route["group_by"]) >= {"alertname", "instance"}


def _names(matchers: list[str]) -> set[str]:
    names: set[str] = set()
    for matcher in matchers:
        found = re.fullmatch(r'alertname\s*(=~|=)\s*"([^"]+)"', matcher.strip())
        if found:
            names.update(found.group(2).split("|"))
    return names


def test_inhibit_rules_mute_symptoms_while_their_cause_fires() -> None:
    alerts = {r.alert for r in support.alert_rules()}
    inhibit = load_yaml(ALERTMANAGER)["inhibit_rules"]
    causes: dict[str, set[str]] = {}
    for rule in inhibit:
        sources, targets = _names(rule["source_matchers"]), _names(rule["target_matchers"])
        assert sources <= alerts and targets <= alerts, f"unknown alert in {rule}"
        for source in sources:
            causes.setdefault(source, set()).update(targets)
        assert rule.get("equal"), f"an inhibit rule without `equal` mutes every environment: {rule}"
    assert "NuxtestHTTP5xxRatioHigh" in causes["NuxtestWebInstanceDown"]
    assert {"NuxtestChannelLayerFailures", "NuxtestRoundCloseLagHigh"} <= causes["NuxtestRedisDown"]
    assert "NuxtestHTTP5xxRatioHigh" in causes["NuxtestPostgresDown"]


def test_prometheus_scrapes_the_app_and_the_exporters() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"nuxtest-web", "nuxtest-celery", "flower", "redis", "postgres"} <= set(jobs)
    web = [t for sc in jobs["nuxtest-web"]["static_configs"] for t in sc["targets"]]
    assert web == ["web1:8000", "web2:8000"]
    assert jobs["nuxtest-celery"]["dns_sd_configs"][0]["port"] == 9808
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    # Locust's exporter on the Docker host, at the port docs/capacity.md gives it.
    assert jobs["locust"]["static_configs"][0]["targets"] == ["host.docker.internal:9646"]
    for name, job in jobs.items():
        labels = [sc.get("labels", {}) for sc in job.get("static_configs", [])]
        relabelled = [r.get("target_label") for r in job.get("relabel_configs", [])]
        assert all("env" in lab for lab in labels) and (labels or "env" in relabelled), f"{name}: no env"
    targets = [
        t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    loaded = {p for pattern in config["rule_files"] for p in (PROMETHEUS).glob(pattern)}
    assert loaded == set(support.rule_files())


def test_shortening_for_changes_only_the_for_lines(tmp_path: Path) -> None:
    """The closed-loop tests shorten every `for:` textually; nothing else may change."""
    for path in support.rule_files():
        text = path.read_text(encoding="utf-8")
        short = support.shorten_for(text, "5s")
        changed = [(a, b) for a, b in zip(text.splitlines(), short.splitlines(), strict=True) if a != b]
        alerts = [r for r in support.alert_rules() if r.file == path]
        assert len(changed) == len(alerts)
        assert all(re.fullmatch(r"\s+for: 5s", b) for _, b in changed)
        (tmp_path / path.name).write_text(short, encoding="utf-8")
        assert all(
            r["for"] == "5s"
            for g in load_yaml(tmp_path / path.name)["groups"]
            for r in g["rules"]
            if "alert" in r
        )
    result = run(tool("promtool"), "check", "rules", *map(str, sorted(tmp_path.glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr
