"""The Makefile's Docker targets on a machine without Docker's compose plugin."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The docker CLI without its compose plugin, as Debian's docker.io package alone installs it.
DOCKER_WITHOUT_COMPOSE = """#!/bin/sh
echo "unknown shorthand flag: 'f' in -f" >&2
exit 125
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize("target", ["up", "down", "deploy", "obs-up", "obs-down"])
def test_docker_targets_say_what_is_missing_and_write_nothing(tmp_path, target):
    # `make down` said only "unknown shorthand flag: 'f' in -f", and `make up` wrote `.env`
    # and a certificate before failing (a README walk).
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "docker").write_text(DOCKER_WITHOUT_COMPOSE)
    (stub / "docker").chmod(0o755)
    work = tmp_path / "checkout"
    (work / "deploy/nginx/certs").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", work / "Makefile")
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}"}
    out = subprocess.run(["make", target], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "compose plugin" in out.stderr, out.stderr
    assert "unknown shorthand flag" not in out.stderr, out.stderr
    assert sorted(p.name for p in work.rglob("*") if p.is_file()) == ["Makefile"]
