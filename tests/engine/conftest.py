"""The engine tests are pure: no Redis key space, no Django settings per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def redis_prefix() -> Iterator[str]:
    """Override the suite-wide Redis fixture: nothing here touches Redis."""
    yield ""
