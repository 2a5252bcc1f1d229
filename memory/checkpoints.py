"""Checkpointer factories, sync and async (SQLite on disk by default, Redis when configured),
whose savers stamp the memory commits a step made into that step's checkpoint metadata."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

from observability.endpoints import safe_url

__all__ = [
    "MEMORY_COMMITS",
    "CheckpointerConfigError",
    "CommitStampingSaver",
    "open_async_checkpointer",
    "open_checkpointer",
]

MEMORY_COMMITS_STEP = "memory_commits_step"
"""State channel holding the superstep that wrote `memory_commits`."""
MEMORY_COMMITS = "memory_commits"
"""State channel holding the commits of the latest step that wrote memory, and the checkpoint
metadata key those commits are stamped under."""


class CheckpointerConfigError(ValueError):
    """The checkpointer cannot be opened with the given settings (says what to change)."""


@contextmanager
def open_checkpointer(
    *, sqlite_path: Path | None = None, redis_url: str | None = None
) -> Iterator[BaseCheckpointSaver]:
    """Open the run checkpointer and close it on exit (wrapped in a `CommitStampingSaver`).

    Args:
        sqlite_path: file for the embedded `SqliteSaver` (its folder is created).
        redis_url: when given, a `RedisSaver` (needs Redis with the JSON and search modules).

    Raises:
        CheckpointerConfigError: neither is given, or the Redis server cannot be used.
    """
    if redis_url:
        with _redis_saver(redis_url) as saver:
            yield CommitStampingSaver(saver)
    elif sqlite_path is not None:
        with _sqlite_saver(sqlite_path) as saver:
            yield CommitStampingSaver(saver)
    else:
        raise CheckpointerConfigError(
            "no checkpointer configured: pass sqlite_path= (embedded) or redis_url= (production)"
        )


@asynccontextmanager
async def open_async_checkpointer(
    *, sqlite_path: Path | None = None, redis_url: str | None = None
) -> AsyncIterator[BaseCheckpointSaver]:
    """`open_checkpointer` for an event loop (the LangGraph server's): an `AsyncSqliteSaver`
    or an `AsyncRedisSaver`, wrapped in a `CommitStampingSaver`, closed on exit.

    Enter it in the event loop that will use it: both savers bind their connection to it.

    Args:
        sqlite_path: file for the embedded `AsyncSqliteSaver` (its folder is created).
        redis_url: when given, an `AsyncRedisSaver` (needs Redis with the JSON and search
            modules).

    Raises:
        CheckpointerConfigError: neither is given, or the Redis server cannot be used.
    """
    if redis_url:
        async with _async_redis_saver(redis_url) as saver:
            yield CommitStampingSaver(saver)
    elif sqlite_path is not None:
        async with _async_sqlite_saver(sqlite_path) as saver:
            yield CommitStampingSaver(saver)
    else:
        raise CheckpointerConfigError(
            "no checkpointer configured: pass sqlite_path= (embedded) or redis_url= (production)"
        )


class CommitStampingSaver(BaseCheckpointSaver[Any]):
    """A checkpointer that stamps memory commits into the metadata of the step that made them.

    Every call goes to the wrapped saver; `put` / `aput` first add
    `metadata["memory_commits"]` when the step wrote the `memory_commits` channel (the execute
    node does so only in a step whose tools committed memory), so
    `graph.get_state_history(config)` shows which checkpoint each commit belongs to.

    Args:
        inner: the saver that stores the checkpoints.
    """

    def __init__(self, inner: BaseCheckpointSaver[Any]) -> None:
        # No super().__init__(): the wrapped saver's serializer is the one in use.
        self.inner = inner
        self.serde = inner.serde

    def __getattr__(self, name: str) -> Any:
        # Only reached for what this class lacks (`setup`, `conn`, `aget_channel_values`...).
        if name == "inner":  # not set yet (copy, unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"CommitStampingSaver({self.inner!r})"

    @property
    def config_specs(self) -> list[Any]:
        return self.inner.config_specs

    # -- writes (stamped) --------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        stamped = _stamped(checkpoint, metadata, new_versions)
        return self.inner.put(config, checkpoint, stamped, new_versions)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        stamped = _stamped(checkpoint, metadata, new_versions)
        return await self.inner.aput(config, checkpoint, stamped, new_versions)

    # -- everything else, delegated ------------------------------------------------------------
    # Not `copy_thread` / `delete_for_runs` (and their async twins): no saver we wrap has them,
    # and callers that probe for them by type (the LangGraph server) then use their portable
    # fallback, which copies through `aput` and so keeps the stamps.

    def get(self, config: RunnableConfig) -> Checkpoint | None:
        return self.inner.get(config)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.inner.get_tuple(config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self.inner.list(config, filter=filter, before=before, limit=limit)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.inner.put_writes(config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self.inner.delete_thread(thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.inner.prune(thread_ids, strategy=strategy)

    async def aget(self, config: RunnableConfig) -> Checkpoint | None:
        return await self.inner.aget(config)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.inner.aget_tuple(config)

    def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        return self.inner.alist(config, filter=filter, before=before, limit=limit)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self.inner.aput_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.inner.adelete_thread(thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self.inner.aprune(thread_ids, strategy=strategy)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        return self.inner.get_delta_channel_history(config=config, channels=channels)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        return await self.inner.aget_delta_channel_history(config=config, channels=channels)

    def get_next_version(self, current: Any, channel: None) -> Any:
        # Savers choose their own version format (SQLite and Redis use strings).
        return self.inner.get_next_version(current, channel)

    def with_allowlist(
        self, extra_allowlist: Collection[tuple[str, ...]]
    ) -> BaseCheckpointSaver[Any]:
        derived = self.inner.with_allowlist(extra_allowlist)
        return self if derived is self.inner else CommitStampingSaver(derived)


def _stamped(
    checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
) -> CheckpointMetadata:
    """`metadata` plus the step's memory commits, when the step wrote some.

    A copy of a thread re-puts every checkpoint with all its channels as new and its metadata
    as stored, so a checkpoint is stamped only when its own step wrote the commits."""
    if MEMORY_COMMITS not in new_versions or MEMORY_COMMITS in metadata:
        return metadata
    values = checkpoint["channel_values"]
    commits = values.get(MEMORY_COMMITS)
    if not commits or values.get(MEMORY_COMMITS_STEP, metadata.get("step")) != metadata.get("step"):
        return metadata
    stamped: dict[str, Any] = {**metadata, MEMORY_COMMITS: [str(c) for c in commits]}
    return stamped  # type: ignore[return-value]


@contextmanager
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


@contextmanager
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
        raise _unreachable(url, error) from error
    except redis.exceptions.ResponseError as error:
        client.close()
        raise _unfit(url, error) from error
    try:
        yield saver
    finally:
        client.close()


@asynccontextmanager
async def _async_sqlite_saver(path: Path) -> AsyncIterator[BaseCheckpointSaver]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path) as conn:
        saver = AsyncSqliteSaver(conn)
        await saver.setup()  # creates the tables and turns WAL on now, not on first use
        yield saver


@asynccontextmanager
async def _async_redis_saver(url: str) -> AsyncIterator[BaseCheckpointSaver]:
    import redis
    from langgraph.checkpoint.redis.aio import AsyncRedisSaver
    from redis.asyncio import Redis as AsyncRedis

    client = AsyncRedis.from_url(url)
    try:
        await client.ping()
        saver = AsyncRedisSaver(redis_client=client)
        await saver.asetup()
    except (redis.exceptions.ConnectionError, OSError) as error:
        await client.aclose()
        raise _unreachable(url, error) from error
    except redis.exceptions.ResponseError as error:
        await client.aclose()
        raise _unfit(url, error) from error
    try:
        yield saver
    finally:
        await client.aclose()


def _unreachable(url: str, error: Exception) -> CheckpointerConfigError:
    return CheckpointerConfigError(
        f"cannot reach Redis at {safe_url(url)} for checkpoints ({error}). Start Redis 8 "
        "with the JSON and search modules, or unset BASTION_REDIS_URL to use the embedded "
        "SQLite store."
    )


def _unfit(url: str, error: Exception) -> CheckpointerConfigError:
    return CheckpointerConfigError(
        f"Redis at {safe_url(url)} cannot hold checkpoints ({error}). It needs the RedisJSON "
        "and RediSearch modules (Redis 8 or Redis Stack)."
    )
