"""A Prometheus on this machine, on the project's own configuration (observability/prometheus/).

Capacity runs (`python -m loadtest.stack --prometheus PORT`) and the live tests
(tests/e2e/test_prometheus_live.py) both run one: the scrape jobs of prometheus.yml (job
names, metrics paths, `env` labels and relabelling kept) pointed at local processes by
static targets, and the rule files. The `prometheus` binary is Debian's package
(`apt-get install prometheus`); nothing here needs Docker.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "observability" / "prometheus"


def binary() -> str | None:
    """The prometheus executable, or None when it is not installed."""
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None


def scrape_jobs() -> dict[str, dict[str, Any]]:
    """prometheus.yml's scrape jobs, by name."""
    source = yaml.safe_load((CONFIG / "prometheus.yml").read_text(encoding="utf-8"))
    return {job["job_name"]: job for job in source["scrape_configs"]}


def local_config(targets: dict[str, list[str]], *, rules: Path, interval: str) -> dict[str, Any]:
    """prometheus.yml with only the jobs named in `targets`, each on those static targets.

    Job names, paths, target labels (`env`) and relabelling stay as they are; service
    discovery gives way to the static targets; no Alertmanager (read alerts from the API).
    """
    source = yaml.safe_load((CONFIG / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in source["scrape_configs"]}
    unknown = set(targets) - set(jobs)
    if unknown:
        raise ValueError(f"prometheus.yml has no job {sorted(unknown)}")
    scrape_configs = []
    for name in sorted(targets):
        job = {k: v for k, v in jobs[name].items() if not k.endswith("_sd_configs")}
        labels: dict[str, str] = {}
        for static in job.pop("static_configs", []):
            labels.update(static.get("labels", {}))
        job["static_configs"] = [{"targets": targets[name], **({"labels": labels} if labels else {})}]
        scrape_configs.append(job)
    return {
        "global": {
            **source["global"],
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "rule_files": [str(rules / "*.yml")],
        "scrape_configs": scrape_configs,
    }


@dataclass
class LocalPrometheus:
    """One Prometheus process with its configuration, rules and storage in `directory`."""

    directory: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: BinaryIO | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "prometheus.yml"

    @property
    def rules_dir(self) -> Path:
        return self.directory / "rules"

    def write_config(self, targets: dict[str, list[str]], *, interval: str = "5s") -> None:
        """The scrape configuration for these targets (`local_config`)."""
        config = local_config(targets, rules=self.rules_dir, interval=interval)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def write_rules(self, transform: Callable[[Path, str], str] | None = None) -> None:
        """The project's rule files, each passed through `transform(path, text)` if given."""
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted((CONFIG / "rules").glob("*.yml")):
            text = path.read_text(encoding="utf-8")
            (self.rules_dir / path.name).write_text(transform(path, text) if transform else text, "utf-8")

    def start(self, *, timeout: float = 30) -> None:
        """Start Prometheus and wait until it is ready."""
        exe = binary()
        if exe is None:
            raise RuntimeError("prometheus is not installed (Debian: apt-get install prometheus)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own argv
            [
                exe,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                # As docker-compose.obs.yml runs it (the web instances then answer in OpenMetrics).
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready in {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop Prometheus (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def reload(self) -> None:
        """Make Prometheus read its configuration and rules again."""
        r = requests.post(f"{self.url}/-/reload", timeout=10)
        if r.status_code != 200:
            raise RuntimeError(f"reload: {r.status_code} {r.text[:300]}")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>: the `data` of a successful answer."""
        r = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
        if r.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {r.status_code} {r.text[:300]}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result
