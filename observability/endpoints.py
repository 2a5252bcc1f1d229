"""Reaching a backend: a Redis client with timeouts, its address for errors and logs (never its
credentials), and what to do when a call fails."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

__all__ = ["redis_client", "redis_hint", "safe_url"]


def safe_url(target: Any) -> str:
    """The address of a URL or of a redis-py client, with any password hidden.

    Error messages and logs name the backend that failed; a password in them would leak
    wherever they are shipped.
    """
    if not isinstance(target, str):  # a redis-py client: read where its pool connects
        pool = target.connection_pool
        kwargs = pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        scheme = "rediss" if "SSL" in pool.connection_class.__name__ else "redis"
        host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
        return f"{scheme}://{host}:{port}/{kwargs.get('db', 0)}"
    parts = urlsplit(target)
    if parts.password is None:
        return target
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


def redis_client(url_or_client: redis.Redis | str, timeout_s: float) -> redis.Redis:
    """A client for a `redis://` URL (socket timeouts `timeout_s`), or the given client as is."""
    if not isinstance(url_or_client, str):
        return url_or_client
    return redis.Redis.from_url(
        url_or_client, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )


def redis_hint(error: redis.exceptions.RedisError) -> str:
    """What to do about a failed Redis call."""
    if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "is Redis running there? check BASTION_REDIS_URL"
    return "it needs a standalone (or single-shard) Redis >= 7 with Lua scripting"
