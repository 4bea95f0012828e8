"""Lines that libraries log past the root logger still come out as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.deploy.support import ROOT

# Celery's pool (billiard) reports a pool process that died on the "multiprocessing" logger,
# which never propagates to the root: Python's last-resort handler printed it as bare text.
POOL_PROCESS_DIED = """
import logging.config
import django
django.setup()
from game.telemetry.logs import logging_config
logging.config.dictConfig(logging_config(level="INFO", fmt="json"))
from billiard import util
util.get_logger()
util.error("Process %r pid:%r exited with %r", "ForkPoolWorker-2", 4242, "signal 15 (SIGTERM)", exc_info=0)
"""


def test_a_dead_pool_process_is_reported_in_a_json_line():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "nuxtest.settings", "NUXTEST_SERVICE": "worker"}
    out = subprocess.run(
        [sys.executable, "-c", POOL_PROCESS_DIED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "ForkPoolWorker-2" not in out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if "ForkPoolWorker-2" in line]
    assert len(lines) == 1, out.stdout
    assert lines[0]["event"] == "celery_pool_log" and lines[0]["level"] == "error"
    assert lines[0]["service"] == "worker"
