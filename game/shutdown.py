"""Graceful shutdown of a web process: on SIGTERM, drain WebSockets, then stop.

The process closes its listening sockets (a new connection is refused at once, and a load
balancer sends it to another instance: nginx tries the next server on a refused connection),
stops being ready (/readyz answers 503 on connections already open), tells every connected
client to reconnect elsewhere (close 1012, "service restart"), waits until their
disconnects are recorded in Redis (at most NUXTEST_DRAIN_SECONDS), then lets Daphne stop.
Rooms live in Redis, so the clients pick their game up from the `state` snapshot another
instance sends them. A handshake that reaches the process anyway (over a connection the
load balancer kept open) is closed with 1012 too.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
import weakref
from typing import Any, Protocol

from django.conf import settings

from game import aio

logger = logging.getLogger(__name__)

CLOSE_SERVICE_RESTART = 1012


class Drainable(Protocol):
    async def drain(self) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_installed: set[int] = set()
_all_gone: asyncio.Event | None = None
draining = False


def track(consumer: Drainable) -> bool:
    """Remember a live connection, to close it on shutdown; False if that has begun already."""
    _live.add(consumer)
    return not draining


def forget(consumer: Drainable) -> None:
    """Forget a connection that has closed."""
    _live.discard(consumer)
    if _all_gone is not None and not _live:
        _all_gone.set()


def install() -> None:
    """Take over SIGTERM in a Daphne process (once per loop); elsewhere do nothing.

    The process's heartbeat is left to expire (30 s) rather than removed: until then the
    drained connections still count as connected, so a round does not close under a
    player who is a moment slower than the others to reconnect elsewhere.
    """
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or not getattr(reactor, "running", False) or not settings.NUXTEST_GRACEFUL_SHUTDOWN:
        return
    loop = asyncio.get_running_loop()
    if id(loop) in _installed:
        return
    _installed.add(id(loop))
    # Installed from whichever connection came first: in an empty context, so that the drain's
    # lines do not carry that player's room and user.
    aio.process_signal_handler(signal.SIGTERM, lambda: loop.create_task(_drain_then_stop(reactor)))


async def _drain_then_stop(reactor: Any) -> None:
    global draining, _all_gone
    if draining:
        return
    draining = True
    _all_gone = asyncio.Event()
    started = time.monotonic()
    # Before the drain, not after it: the players it sends away reconnect at once, and a
    # load balancer must not hand them back to this process (it went on accepting them
    # until the process exited, and cut them off then with 1006).
    closed = _stop_listening(reactor)
    consumers = list(_live)
    logger.warning(
        "SIGTERM: draining %s WebSocket connections (%s listening sockets closed)",
        len(consumers),
        closed,
        extra={"event": "web_draining"},
    )
    await asyncio.gather(*(c.drain() for c in consumers), return_exceptions=True)
    if _live:
        try:
            await asyncio.wait_for(_all_gone.wait(), settings.NUXTEST_DRAIN_SECONDS)
        except TimeoutError:
            pass  # stop anyway: the clients reconnect elsewhere, the sweeper prunes the rest
    logger.warning(
        "drained in %.2f s (%s connections left); stopping",
        time.monotonic() - started,
        len(_live),
        extra={"event": "web_drained"},
    )
    reactor.stop()


def _stop_listening(reactor: Any) -> int:
    """Close the process's listening sockets (Daphne's endpoints); how many were open."""
    from twisted.internet.interfaces import IListeningPort

    ports = [reader for reader in reactor.getReaders() if IListeningPort.providedBy(reader)]
    for port in ports:
        port.stopListening()
    return len(ports)
