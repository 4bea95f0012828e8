"""Celery tasks: thin, idempotent wrappers that take ids and re-read state."""

from __future__ import annotations

from celery import shared_task

from game import faults, services
from game.aio import run_sync


@shared_task(name="game.tasks.round_deadline", ignore_result=True)
def round_deadline(code: str, round_number: int) -> bool:
    """Close a round at its deadline (no-op if it closed already)."""
    if run_sync(faults.current()).round_close_fail:
        # The sweeper still closes the round, late: the round-close lag alert shows it.
        raise faults.FaultInjected("round-close task failure injected by an operator")
    return run_sync(services.round_close_due(code=code, round_number=round_number))


@shared_task(name="game.tasks.round_advance", ignore_result=True)
def round_advance(code: str, round_number: int) -> bool:
    """Open the next question after the reveal pause (no-op if done already)."""
    return run_sync(services.round_advance_due(code=code, round_number=round_number))


@shared_task(name="game.tasks.quickmatch_autostart", ignore_result=True)
def quickmatch_autostart(code: str) -> bool:
    """Start a quick-match room whose start timer is due."""
    return run_sync(services.quickmatch_autostart(code=code))


@shared_task(name="game.tasks.results_store", ignore_result=True)
def results_store(code: str) -> bool:
    """Write a finished game's results (exactly once)."""
    return run_sync(services.results_store(code=code))


@shared_task(name="game.tasks.rooms_sweep", ignore_result=True)
def rooms_sweep() -> dict[str, int]:
    """Periodic: do every overdue step whose timer was lost; forget expired rooms."""
    return run_sync(services.rooms_sweep())
