"""Where a Celery worker starts its span exporter, per pool kind."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from celery.concurrency.prefork import TaskPool as PreforkPool

from game.telemetry import celery_signals


@pytest.mark.parametrize(
    ("pool", "per_process"),
    [("prefork", True), (PreforkPool, True), ("solo", False), ("threads", False), ("no-such-pool", False)],
)
def test_a_forking_pool_starts_tracing_in_each_pool_process(pool, per_process):
    assert celery_signals._pool_forks(SimpleNamespace(pool_cls=pool)) is per_process
