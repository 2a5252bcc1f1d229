"""Checkpointer factory: SQLite on disk by default, Redis when a URL is configured."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver

__all__ = ["CheckpointerConfigError", "open_checkpointer"]


class CheckpointerConfigError(ValueError):
    """The checkpointer cannot be opened with the given settings (says what to change)."""


@contextmanager
def open_checkpointer(
    *, sqlite_path: Path | None = None, redis_url: str | None = None
) -> Iterator[BaseCheckpointSaver]:
    """Open the run checkpointer and close it on exit.

    Args:
        sqlite_path: file for the embedded `SqliteSaver` (its folder is created).
        redis_url: when given, a `RedisSaver` (needs Redis with the JSON and search modules).

    Raises:
        CheckpointerConfigError: neither is given, or the Redis server cannot be used.
    """
    if redis_url:
        yield from _redis_saver(redis_url)
    elif sqlite_path is not None:
        yield from _sqlite_saver(sqlite_path)
    else:
        raise CheckpointerConfigError(
            "no checkpointer configured: pass sqlite_path= (embedded) or redis_url= (production)"
        )


def _sqlite_saver(path: Path) -> Iterator[BaseCheckpointSaver]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    # One connection shared by the graph's worker threads; SqliteSaver serialises access itself.
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


def _redis_saver(url: str) -> Iterator[BaseCheckpointSaver]:
    import redis
    from langgraph.checkpoint.redis import RedisSaver

    client = redis.Redis.from_url(url)
    try:
        client.ping()
        saver = RedisSaver(redis_client=client)
        saver.setup()
    except (redis.exceptions.ConnectionError, OSError) as error:
        client.close()
        raise CheckpointerConfigError(
            f"cannot reach Redis at {url!r} for checkpoints ({error}). Start Redis 8 with the "
            "JSON and search modules, or unset BASTION_REDIS_URL to use the embedded SQLite store."
        ) from error
    except redis.exceptions.ResponseError as error:
        client.close()
        raise CheckpointerConfigError(
            f"Redis at {url!r} cannot hold checkpoints ({error}). It needs the RedisJSON and "
            "RediSearch modules (Redis 8 or Redis Stack)."
        ) from error
    try:
        yield saver
    finally:
        client.close()
