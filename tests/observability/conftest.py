"""Fixtures for the observability checks: files only, no database, no Redis."""

from __future__ import annotations

import pytest

from tests.observability import support


@pytest.fixture(autouse=True)
def redis_prefix() -> str:
    """Override the suite's per-test Redis key space: these tests read files only."""
    return ""


@pytest.fixture(scope="session")
def catalogue() -> support.Catalogue:
    """Every metric name a query may use (project registry, exporters, recording rules)."""
    return support.catalogue()
