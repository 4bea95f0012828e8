"""deploy/rollout.sh, the workers' step of `make deploy`: new containers first, then the old stopped.

Docker cannot run on this machine, so the script runs against a stand-in `docker` on PATH
that keeps the containers of a compose project in a file and journals every call: what
is checked is the script's own order of steps and choice of containers. What the real
Docker does with those commands (`up --no-recreate --scale` adds containers of the new
image beside the old ones) is docker-rollout's pattern, which the script names. That the
game keeps its deadlines through such a hand-over is the e2e test
test_a_worker_replaced_by_one_started_beside_it_keeps_every_deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.support import ROOT

SCRIPT = ROOT / "deploy/rollout.sh"

FAKE_DOCKER = r"""
import json, os, sys

state_file = os.environ["FAKE_DOCKER_STATE"]
with open(state_file) as f:
    state = json.load(f)
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_JOURNAL"], "a") as f:
    f.write(json.dumps(args) + "\n")


def save():
    with open(state_file, "w") as f:
        json.dump(state, f)


def running(service):
    return [c for c in state["containers"] if c["service"] == service and c["running"]]


def new_container(service):
    state["next"] += 1
    id_ = f"c{state['next']:04d}"
    release = os.environ["FAKE_RELEASE"]
    state["containers"].append({"id": id_, "service": service, "release": release, "running": True})


if args[0] == "compose":
    args = args[1:]
    while args[0] == "-f":
        args = args[2:]
    command, rest = args[0], args[1:]
    service = rest[-1]
    if command == "ps":
        assert "--quiet" in rest
        print("\n".join(c["id"] for c in running(service)))
    elif command == "up":
        assert "--detach" in rest and "--no-deps" in rest
        scale = next((int(a.split("=")[1]) for a in rest if a.startswith(f"{service}=")), None)
        current = running(service)
        if "--no-recreate" not in rest:  # compose replaces every old container at once
            for c in current:
                c["running"] = False
            state["containers"] = [c for c in state["containers"] if c not in current]
            current = []
        target = scale if scale is not None else max(1, len(current))
        for _ in range(target - len(current)):
            new_container(service)
        save()
        if "--wait" in rest and os.environ.get("FAKE_UNHEALTHY"):
            print(f"container {service} is unhealthy", file=sys.stderr)
            sys.exit(1)
    else:
        sys.exit(f"fake docker: compose {command} not expected")
elif args[0] == "exec":
    id_, command = args[1], args[2:]
    assert any(c["id"] == id_ and c["running"] for c in state["containers"]), id_
    assert command[:2] == ["sh", "-c"], command
    if os.environ.get("FAKE_PRESTOP_FAILS"):
        sys.exit(1)
elif args[0] in ("stop", "rm"):
    ids = [a for a in args[1:] if a.startswith("c")]
    for c in state["containers"]:
        if c["id"] in ids:
            if args[0] == "rm":
                assert not c["running"], "docker rm of a running container fails"
            c["running"] = False
    if args[0] == "rm":
        state["containers"] = [c for c in state["containers"] if c["id"] not in ids]
    save()
else:
    sys.exit(f"fake docker: {args[0]} not expected")
"""


def rollout(
    tmp_path: Path, old: int, *, unhealthy: bool = False, pre_stop: str = "", pre_stop_fails: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]], list[list[str]]]:
    """Run the script with `old` workers (and beat, which it must leave alone) running."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!{sys.executable}\n{FAKE_DOCKER}")
    docker.chmod(0o755)
    containers = [
        {"id": f"c{n:04d}", "service": "worker", "release": "old", "running": True} for n in range(old)
    ]
    containers.append({"id": "c0900", "service": "beat", "release": "old", "running": True})
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"containers": containers, "next": 100}))
    journal = tmp_path / "journal"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "COMPOSE": "docker compose -f docker-compose.yml",
        "FAKE_DOCKER_STATE": str(state),
        "FAKE_DOCKER_JOURNAL": str(journal),
        "FAKE_RELEASE": "new",
    }
    if unhealthy:
        env["FAKE_UNHEALTHY"] = "1"
    if pre_stop_fails:
        env["FAKE_PRESTOP_FAILS"] = "1"
    argv = ["sh", str(SCRIPT), "worker", *([pre_stop] if pre_stop else [])]
    result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    calls = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
    return result, json.loads(state.read_text())["containers"], calls


@pytest.mark.parametrize("old", [1, 3])
def test_new_workers_are_healthy_before_any_old_one_is_stopped(tmp_path, old):
    result, containers, calls = rollout(tmp_path, old)
    assert result.returncode == 0, result.stderr
    workers = [c for c in containers if c["service"] == "worker"]
    assert [c["release"] for c in workers] == ["new"] * old, containers
    assert all(c["running"] for c in containers)
    assert [c for c in containers if c["service"] == "beat"] == [
        {"id": "c0900", "service": "beat", "release": "old", "running": True}
    ]
    up = next(i for i, call in enumerate(calls) if "up" in call)
    stop = next(i for i, call in enumerate(calls) if call[0] == "stop")
    assert up < stop
    assert f"worker={2 * old}" in calls[up] and "--no-recreate" in calls[up] and "--wait" in calls[up]
    # The old ones only, with time for a warm shutdown (compose's stop_grace_period is 60 s).
    old_ids = [f"c{n:04d}" for n in range(old)]
    assert calls[stop][1:] == ["--time", "60", *old_ids]
    assert calls[-1] == ["rm", *old_ids]


def test_unhealthy_new_workers_are_removed_and_the_old_ones_keep_running(tmp_path):
    result, containers, calls = rollout(tmp_path, 2, unhealthy=True)
    assert result.returncode == 1
    assert "not healthy" in result.stderr
    assert [(c["id"], c["running"]) for c in containers if c["service"] == "worker"] == [
        ("c0000", True),
        ("c0001", True),
    ]
    stopped = [id_ for call in calls if call[0] == "stop" for id_ in call[1:] if id_.startswith("c")]
    assert stopped == ["c0101", "c0102"]


def test_with_no_worker_running_one_is_started(tmp_path):
    result, containers, calls = rollout(tmp_path, 0)
    assert result.returncode == 0, result.stderr
    assert [c["release"] for c in containers if c["service"] == "worker"] == ["new"]
    assert not [call for call in calls if call[0] in ("stop", "rm")]


@pytest.mark.parametrize("fails", [False, True])
def test_the_pre_stop_command_runs_in_each_old_worker_before_it_is_stopped(tmp_path, fails):
    drain = "python -m nuxtest.worker_drain"
    result, containers, calls = rollout(tmp_path, 2, pre_stop=drain, pre_stop_fails=fails)
    assert result.returncode == 0, result.stderr
    up = next(i for i, call in enumerate(calls) if "up" in call)
    execs = [i for i, call in enumerate(calls) if call[0] == "exec"]
    stop = next(i for i, call in enumerate(calls) if call[0] == "stop")
    assert sorted(calls[i][1] for i in execs) == ["c0000", "c0001"]
    assert all(calls[i][2:] == ["sh", "-c", drain] for i in execs)
    assert up < min(execs) and max(execs) < stop
    # A failed drain is reported, and the old worker still gets its warm shutdown.
    assert ("pre-stop command failed" in result.stderr) is fails
    assert [c["release"] for c in containers if c["service"] == "worker"] == ["new", "new"]
