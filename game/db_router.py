"""Read replicas: the leaderboard and history reads go to the "replica" database when one is set.

`DATABASE_REPLICA_URL` adds the alias "replica" (nuxtest/settings.py). Only reads made inside
`replica_reads()` use it — the leaderboard and a player's history, which tolerate a replica's
lag of a second or two; every write, and every other read (the results writer counting what
is already stored, sessions, auth), stays on "default", as does anything inside a
transaction on "default".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db import connections

REPLICA = "replica"
_replica_reads: ContextVar[bool] = ContextVar("nuxtest_replica_reads", default=False)


@contextmanager
def replica_reads() -> Iterator[None]:
    """Send the reads made inside this block to the replica (when there is one)."""
    token = _replica_reads.set(True)
    try:
        yield
    finally:
        _replica_reads.reset(token)


def has_replica() -> bool:
    """Whether DATABASE_REPLICA_URL configured the replica alias."""
    return REPLICA in settings.DATABASES


class ReplicaRouter:
    """Reads marked by replica_reads() go to "replica"; everything else to "default"."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        if not _replica_reads.get() or not has_replica():
            return None
        if connections["default"].in_atomic_block:
            return None  # read what this transaction wrote
        return REPLICA

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        return "default"

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replica mirrors the primary: same rows

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db == "default"
