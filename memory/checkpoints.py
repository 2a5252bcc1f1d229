"""Checkpointer factory (SQLite on disk by default, Redis when a URL is configured) whose
savers stamp the memory commits a step made into that step's checkpoint metadata."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
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
    "open_checkpointer",
]

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

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.inner.delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.inner.copy_thread(source_thread_id, target_thread_id)

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

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self.inner.adelete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.inner.acopy_thread(source_thread_id, target_thread_id)

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
    """`metadata` plus the step's memory commits, when the step wrote some."""
    if MEMORY_COMMITS not in new_versions:
        return metadata
    commits = checkpoint["channel_values"].get(MEMORY_COMMITS)
    if not commits:
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
        raise CheckpointerConfigError(
            f"cannot reach Redis at {safe_url(url)} for checkpoints ({error}). Start Redis 8 "
            "with the JSON and search modules, or unset BASTION_REDIS_URL to use the embedded "
            "SQLite store."
        ) from error
    except redis.exceptions.ResponseError as error:
        client.close()
        raise CheckpointerConfigError(
            f"Redis at {safe_url(url)} cannot hold checkpoints ({error}). It needs the RedisJSON "
            "and RediSearch modules (Redis 8 or Redis Stack)."
        ) from error
    try:
        yield saver
    finally:
        client.close()
