"""Django's own Redis cache, counted with django-prometheus's cache metrics.

django-prometheus ships this class (NativeRedisCache) in a module that also imports
django-redis, which NuxTest does not use; the same few lines here avoid that dependency.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache
from django_prometheus.cache.metrics import (
    django_cache_get_fail_total,
    django_cache_get_total,
    django_cache_hits_total,
    django_cache_misses_total,
)

BACKEND = "native_redis"


class CountedRedisCache(RedisCache):
    """RedisCache whose gets are counted (total, hits, misses, failures)."""

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        django_cache_get_total.labels(backend=BACKEND).inc()
        try:
            result = super().get(key, default=None, version=version)
        except Exception:
            django_cache_get_fail_total.labels(backend=BACKEND).inc()
            raise
        if result is None:
            django_cache_misses_total.labels(backend=BACKEND).inc()
            return default
        django_cache_hits_total.labels(backend=BACKEND).inc()
        return result
