"""`python -m nuxtest.worker [celery worker options]`: a Celery worker with shared task metrics.

prometheus-client's multiprocess mode must be chosen before anything imports it (and the
celery command imports its plugins, Flower's included, first), so this sets
PROMETHEUS_MULTIPROC_DIR to a fresh directory, then runs `celery -A nuxtest worker`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile


def main() -> None:
    """Prepare the metrics directory and hand over to Celery."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        # Files of a previous run would add old counts to the new ones.
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="nuxtest-worker-metrics-")
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", "-A", "nuxtest", "--quiet", "worker", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
