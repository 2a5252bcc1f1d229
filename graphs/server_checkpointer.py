"""The LangGraph server's checkpointer (`langgraph.json` `checkpointer`): commit-stamping, as
the CLI's is, on a file of its own under `BASTION_HOME` or on `BASTION_REDIS_URL`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver

from graphs.settings import Settings
from memory import open_async_checkpointer

__all__ = ["serve_checkpointer"]


@asynccontextmanager
async def serve_checkpointer() -> AsyncIterator[BaseCheckpointSaver]:
    """The checkpointer `langgraph.json` names: an `AsyncRedisSaver` when `BASTION_REDIS_URL`
    is set, else an `AsyncSqliteSaver` on `Settings.server_checkpoint_path`, either wrapped in
    a `CommitStampingSaver` so a step's memory commits land in its checkpoint metadata.

    The server enters it once per event loop (thread) that asks for a checkpointer and closes
    the main loop's at shutdown.

    Raises:
        SettingsError: a `BASTION_*` variable is invalid.
        CheckpointerConfigError: Redis is configured but cannot be used (says what to change).
    """
    settings = Settings.from_env()
    async with open_async_checkpointer(
        sqlite_path=settings.server_checkpoint_path, redis_url=settings.redis_url
    ) as saver:
        yield saver
