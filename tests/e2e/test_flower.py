"""Flower, as the Procfile and the compose file run it, forgets a worker that was killed.

A worker killed without its `worker-offline` event (SIGKILL, the OOM killer) stays at 1 in
Flower's `flower_worker_online` for as long as Flower runs, unless Flower purges workers
whose heartbeats have stopped (`--purge_offline_workers`): the Celery dashboard's *Workers
seen by Flower* panel and the runbook's query would show a dead worker as online.
"""

from __future__ import annotations

import re
import signal
import time

import pytest
import requests
import yaml

from tests.e2e.stack import ROOT, free_port, procfile_argv, procfile_command

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PURGE = re.compile(r"--purge_offline_workers=(\d+)")


def flower_argv(port: int, purge_after: int) -> list[str]:
    """The Procfile's Flower command on `port`, its purge delay shortened for the test."""
    argv = procfile_argv("flower", FLOWER_PORT=str(port))
    assert any(PURGE.fullmatch(w) for w in argv), "the Procfile's Flower must purge offline workers"
    return [f"--purge_offline_workers={purge_after}" if PURGE.fullmatch(w) else w for w in argv]


def online(metrics: str, worker: str) -> float | None:
    """flower_worker_online of that worker in a scrape (None: no such series)."""
    match = re.search(rf'^flower_worker_online\{{worker="{re.escape(worker)}"\}} (\S+)$', metrics, re.M)
    return float(match.group(1)) if match else None


def test_the_compose_files_flower_purges_offline_workers_as_the_procfiles_does() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    in_compose = [m.group(1) for w in compose["services"]["flower"]["command"] if (m := PURGE.fullmatch(w))]
    assert in_compose and in_compose == PURGE.findall(procfile_command("flower"))


def test_flower_drops_a_killed_worker_once_its_heartbeats_stop(live) -> None:
    port = free_port()
    live.start("flower", flower_argv(port, purge_after=3))
    live.start_worker("worker_doomed")
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        name = ""
        deadline = time.monotonic() + 60
        while not name and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                scrape = requests.get(url, timeout=2).text
            except requests.RequestException:
                continue
            found = re.findall(r'^flower_worker_online\{worker="(worker_doomed@[^"]+)"\} 1\.0$', scrape, re.M)
            name = found[0] if found else ""
        assert name, "Flower never saw the worker online"

        live.stop("worker_doomed", signal.SIGKILL)  # no worker-offline event
        deadline = time.monotonic() + 40
        value = online(requests.get(url, timeout=2).text, name)
        while value and time.monotonic() < deadline:
            time.sleep(1)
            value = online(requests.get(url, timeout=2).text, name)
        assert not value, f"{name} still online in Flower's metrics 40 s after it was killed"
    finally:
        live.worker_metrics.pop("worker_doomed", None)
        if "worker_doomed" in live.procs:
            live.stop("worker_doomed", signal.SIGKILL)
        live.stop("flower")
