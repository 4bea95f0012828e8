"""The fault flags' per-process cache: one Redis read per period, and a write never undone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from game import faults, store


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Counts the flags' Redis reads (each still made), and can hold one back once read."""
    seen: dict[str, Any] = {"n": 0, "gate": None}
    real = store.faults_get

    async def counted() -> dict[str, str]:
        seen["n"] += 1
        raw = await real()
        if seen["gate"] is not None:
            await seen["gate"].wait()
        return raw

    monkeypatch.setattr(store, "faults_get", counted)
    monkeypatch.setattr(faults, "_cached_until", 0.0)
    return seen


async def test_callers_of_one_moment_share_one_read(reads: dict[str, Any]) -> None:
    # Another process switches a flag on; the cache here has expired. Fifty handlers ask at
    # once: one reads Redis, the others keep the flags they had until that read is back.
    await store.faults_set({"answer_delay_ms": "25"})
    seen = await asyncio.gather(*(faults.current() for _ in range(50)))
    assert reads["n"] == 1
    assert seen[0].answer_delay_ms == 25
    assert {f.answer_delay_ms for f in seen[1:]} == {0}
    assert (await faults.current()).answer_delay_ms == 25
    assert reads["n"] == 1


async def test_a_read_begun_before_a_write_here_does_not_undo_it(reads: dict[str, Any]) -> None:
    # A handler's read gets the flags, then is slow to come back; meanwhile the operator's
    # write lands through this process. The old flags must not be put back for a period.
    gate = asyncio.Event()
    reads["gate"] = gate
    stale = asyncio.create_task(faults.current())
    await asyncio.sleep(0.05)
    assert reads["n"] == 1 and not stale.done()
    reads["gate"] = None
    await faults.update({"round_close_fail": True})
    try:
        gate.set()
        assert (await stale).round_close_fail
        assert (await faults.current()).round_close_fail
    finally:
        await faults.clear()


async def test_each_process_logs_the_flags_it_comes_to_see_once_per_change(
    reads: dict[str, Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator's command runs in a process of its own (its `faults_changed` line is its
    # output, not a served process's log): the processes that act on the flags say so.
    monkeypatch.setattr(faults, "_cached", faults.NONE)
    await store.faults_set({"channel_layer_delay_ms": "300"})
    try:
        with caplog.at_level("WARNING", logger="game.faults"):
            await faults.current()
            monkeypatch.setattr(faults, "_cached_until", 0.0)
            await faults.current()  # read again, unchanged: no second line
            await store.faults_clear()
            monkeypatch.setattr(faults, "_cached_until", 0.0)
            await faults.current()
    finally:
        await store.faults_clear()
    lines = [r for r in caplog.records if getattr(r, "event", None) == "faults_seen"]
    assert [r.getMessage() for r in lines] == [
        f"fault flags in force here now {faults.Faults(channel_layer_delay_ms=300).as_dict()}",
        f"fault flags in force here now {faults.NONE.as_dict()}",
    ]
    assert reads["n"] == 3
