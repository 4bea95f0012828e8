"""`make run` as the Makefile writes it: what reaches the game's processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_recipe_honcho() -> list[str]:
    """The honcho command line of the Makefile's `run` recipe (what follows `--`)."""
    makefile = (ROOT / "Makefile").read_text()
    found = re.search(r"(?ms)^run:[^\n]*\n((?:\t[^\n]*\n)+)", makefile)
    assert found, "no `run` target"
    line = next(x for x in found.group(1).splitlines() if "honcho" in x)
    return line.split(" -- ", 1)[1].replace("$(BIN)", str(BIN)).split()


def test_make_run_does_not_load_the_compose_stacks_dotenv(tmp_path):
    # `make up` writes `.env` (SECRET_KEY, FLOWER_BASIC_AUTH) for compose; honcho loads
    # `.env` by default, so a later `make run` swapped its SECRET_KEY (every session and
    # token void) and put Flower behind a log-in nobody told the player about.
    (tmp_path / "Procfile").write_text("probe: echo probe=${NUXTEST_DOTENV_PROBE:-unset}\n")
    (tmp_path / ".env").write_text("NUXTEST_DOTENV_PROBE=leaked\n")
    out = subprocess.run(run_recipe_honcho(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "probe=unset" in out.stdout, out.stdout + out.stderr
