"""Redis locks: single-flight polling per source, one sender per delivery."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from redis import Redis
from redis.lock import Lock

KEY_PREFIX = "webcare:lock:"


@lru_cache(maxsize=1)
def redis_client() -> Redis:
    return Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def lock(name: str, *, ttl_seconds: float) -> Lock:
    """A token lock that expires after ``ttl_seconds`` if its holder dies."""
    return redis_client().lock(KEY_PREFIX + name, timeout=ttl_seconds, blocking=False)
