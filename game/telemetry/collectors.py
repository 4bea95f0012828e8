"""Gauges read from Redis when /metrics is scraped: the same values from every web instance.

Rooms and players live in Redis, not in a process, and so do Celery's queues and worker
heartbeats: reading them at scrape time keeps them right however many processes run.
Aggregate them with max() across instances, never sum().
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from game import faults, store
from game.engine.model import ABANDONED, FINISHED, LOBBY, PLAYING

logger = logging.getLogger(__name__)
ROOM_STATUSES = (LOBBY, PLAYING, FINISHED, ABANDONED)


class RedisStateCollector(Collector):
    """nuxtest_rooms, nuxtest_players_online, nuxtest_celery_queue_length,
    nuxtest_celery_workers_online, nuxtest_timers_overdue, nuxtest_timers_overdue_seconds,
    nuxtest_fault_flag_on."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Declared without reading Redis, so registering the collector costs nothing.
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            by_status, online = store.rooms_census()
            queue = settings.CELERY_TASK_DEFAULT_QUEUE
            waiting = store.queue_length(queue)
            now = time.time()
            workers = store.workers_online(now=now)
            overdue, oldest_ms = store.timers_overdue(now_ms=int(now * 1000))
            flags = faults.decode(store.faults_census()).as_dict()
        except Exception:
            # A scrape without these gauges (and the Redis-down alert) says more than an error page.
            logger.warning(
                "metrics: redis unreachable", exc_info=True, extra={"event": "metrics_redis_error"}
            )
            return
        rooms, players, queue_length, workers_online, timers, timers_late, faults_on = self._families()
        for status in ROOM_STATUSES:
            rooms.add_metric([status], by_status.get(status, 0))
        players.add_metric([], online)
        queue_length.add_metric([queue], waiting)
        workers_online.add_metric([], workers)
        timers.add_metric([], overdue)
        timers_late.add_metric([], max(0.0, now - oldest_ms / 1000) if overdue else 0.0)
        for flag, value in flags.items():
            faults_on.add_metric([flag], 1 if value else 0)
        yield from (rooms, players, queue_length, workers_online, timers, timers_late, faults_on)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "nuxtest_rooms", "Rooms in Redis by status (read at scrape time).", labels=["status"]
            ),
            GaugeMetricFamily(
                "nuxtest_players_online", "Players with at least one open connection (read at scrape time)."
            ),
            GaugeMetricFamily(
                "nuxtest_celery_queue_length",
                "Messages waiting in a Celery queue (read at scrape time).",
                labels=["queue"],
            ),
            GaugeMetricFamily(
                "nuxtest_celery_workers_online",
                "Celery workers whose heartbeat in Redis is current (read at scrape time).",
            ),
            GaugeMetricFamily(
                "nuxtest_timers_overdue",
                "Game timers past their due time that no worker's pump has sent yet (read at scrape time).",
            ),
            GaugeMetricFamily(
                "nuxtest_timers_overdue_seconds",
                "How long the oldest overdue game timer has been due; 0 when none is (read at scrape time).",
            ),
            GaugeMetricFamily(
                "nuxtest_fault_flag_on",
                "1 while an operator's fault flag is on (manage.py faults; read at scrape time).",
                labels=["flag"],
            ),
        )


class ClockOffsetCollector(Collector):
    """nuxtest_clock_offset_seconds: this process's clock against Redis's, at scrape time.

    Unlike the gauges above it differs by process (a web instance, a worker): each serves its
    own. The alert NuxtestClockSkew compares them.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            offset = store.clock_offset(self._clock)
        except Exception:
            logger.warning(
                "metrics: redis unreachable", exc_info=True, extra={"event": "metrics_redis_error"}
            )
            return
        family = self._family()
        family.add_metric([], offset)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "nuxtest_clock_offset_seconds",
            "This process's clock minus Redis's (TIME), to within half a round trip (read at scrape time).",
        )
