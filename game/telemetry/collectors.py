"""Gauges read from Redis when /metrics is scraped: the same values from every web instance.

Rooms and players live in Redis, not in a process, and so do Celery's queues and worker
heartbeats: reading them at scrape time keeps them right however many processes run.
Aggregate them with max() across instances, never sum().
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from game import store
from game.engine.model import ABANDONED, FINISHED, LOBBY, PLAYING

logger = logging.getLogger(__name__)
ROOM_STATUSES = (LOBBY, PLAYING, FINISHED, ABANDONED)


class RedisStateCollector(Collector):
    """nuxtest_rooms, nuxtest_players_online, nuxtest_celery_queue_length, nuxtest_celery_workers_online."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Declared without reading Redis, so registering the collector costs nothing.
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            by_status, online = store.rooms_census()
            queue = settings.CELERY_TASK_DEFAULT_QUEUE
            waiting = store.queue_length(queue)
            workers = store.workers_online(now=time.time())
        except Exception:
            # A scrape without these gauges (and the Redis-down alert) says more than an error page.
            logger.warning(
                "metrics: redis unreachable", exc_info=True, extra={"event": "metrics_redis_error"}
            )
            return
        rooms, players, queue_length, workers_online = self._families()
        for status in ROOM_STATUSES:
            rooms.add_metric([status], by_status.get(status, 0))
        players.add_metric([], online)
        queue_length.add_metric([queue], waiting)
        workers_online.add_metric([], workers)
        yield from (rooms, players, queue_length, workers_online)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
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
        )
