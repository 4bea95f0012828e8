"""docker-compose.obs.yml: parses, mounts files that exist, joins the app's network."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.observability import support
from tests.observability.support import COMPOSE, PROMETHEUS, ROOT, load_yaml

SERVICES = {
    "prometheus",
    "alertmanager",
    "grafana",
    "loki",
    "alloy",
    "otel-collector",
    "tempo",
    "redis-exporter",
    "postgres-exporter",
}
APP_SERVICES = {"web1", "web2", "worker", "beat", "flower", "redis", "postgres"}  # the app's compose file


def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def bind_mounts() -> list[tuple[str, Path, str]]:
    found = []
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                found.append((name, ROOT / source, target))
    return found


def test_compose_file_parses_and_has_the_stack() -> None:
    assert SERVICES <= set(compose()["services"])


def test_every_mounted_file_exists() -> None:
    mounts = bind_mounts()
    assert mounts
    for service, source, _ in mounts:
        assert source.exists(), f"{service} mounts {source}, which does not exist"


def test_every_config_file_a_service_reads_is_mounted() -> None:
    for name, service in compose()["services"].items():
        command = service.get("command", [])
        args = command if isinstance(command, list) else command.split()
        paths = [a.split("=", 1)[1] for a in args if re.match(r"-{1,2}config(\.file)?=", a)]
        paths += [a for a in args if a.endswith(".alloy")]
        targets = {t for s, _, t in bind_mounts() if s == name}
        for path in paths:
            assert any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets), (
                f"{name} reads {path}, which is not mounted"
            )


def test_images_are_pinned() -> None:
    for name, service in compose()["services"].items():
        image = service["image"]
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name}: pin {image} to a version"


def test_the_stack_joins_the_apps_network_and_publishes_on_loopback_only() -> None:
    data = compose()
    assert data["networks"]["nuxtest"] == {"name": "nuxtest", "external": True}
    for name, service in data["services"].items():
        if name.endswith("-init"):
            continue
        assert "nuxtest" in service.get("networks", []), f"{name} is not on the nuxtest network"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_prometheus_targets_are_services_of_either_stack() -> None:
    # The Docker host, where Locust runs a capacity test: only if Prometheus can resolve it.
    hosts_of_prometheus = compose()["services"]["prometheus"].get("extra_hosts", [])
    docker_host = {h.split(":")[0] for h in hosts_of_prometheus if h.endswith(":host-gateway")}
    known = set(compose()["services"]) | APP_SERVICES | {"localhost"} | docker_host
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    hosts = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            hosts |= {t.split(":")[0] for t in static["targets"]}
        for dns in job.get("dns_sd_configs", []):
            hosts |= set(dns["names"])
    for am in config["alerting"]["alertmanagers"]:
        for static in am["static_configs"]:
            hosts |= {t.split(":")[0] for t in static["targets"]}
    assert hosts <= known, f"unknown hosts {hosts - known}"


def test_runbooks_are_served_where_alerts_point() -> None:
    runbooks = compose()["services"]["runbooks"]
    assert "./docs/runbooks:/usr/share/nginx/html/docs/runbooks:ro" in runbooks["volumes"]
    assert "127.0.0.1:8088:8088" in runbooks["ports"]
    assert all(
        r.body["annotations"]["runbook_url"].startswith("http://localhost:8088/docs/runbooks/")
        for r in support.alert_rules()
    )


def test_make_targets_and_readme_point_to_the_stack() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("obs-up", "obs-down"):
        assert re.search(rf"^{target}:", makefile, re.M), f"no `make {target}`"
    assert "docker-compose.obs.yml" in makefile
    assert "observability/README.md" in (ROOT / "README.md").read_text(encoding="utf-8")
