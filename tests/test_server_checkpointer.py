"""The LangGraph server's checkpointer factory: where the served checkpoints land, stamped."""

from __future__ import annotations

import asyncio
import operator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from graphs.server_checkpointer import serve_checkpointer
from graphs.settings import Settings
from memory import (
    MEMORY_COMMITS,
    CheckpointerConfigError,
    CommitStampingSaver,
    open_async_checkpointer,
    open_checkpointer,
)

THREAD: RunnableConfig = {"configurable": {"thread_id": "served-1"}}
SERVER_CHECKPOINTS_FILE = Settings().server_checkpoint_path.name


class _State(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]
    """The nodes that ran."""
    memory_commits: list[str]
    """The commits of the latest step that wrote memory (as the support graph's state)."""


def _graph() -> StateGraph[Any]:
    """Two steps: `learn` commits memory (`c-1`), `answer` does not."""
    builder = StateGraph(_State)
    builder.add_node("learn", lambda _: {"steps": ["learn"], MEMORY_COMMITS: ["c-1"]})
    builder.add_node("answer", lambda _: {"steps": ["answer"]})
    builder.add_edge(START, "learn")
    builder.add_edge("learn", "answer")
    builder.add_edge("answer", END)
    return builder


async def _serve_one_thread() -> str:
    """Run the graph on one thread through `serve_checkpointer`, as the server would; returns
    the wrapped saver's class name."""
    async with serve_checkpointer() as saver:
        assert isinstance(saver, CommitStampingSaver)
        graph = _graph().compile(checkpointer=saver)
        result = await graph.ainvoke(_State(steps=[]), THREAD)
        assert result["steps"] == ["learn", "answer"]
        return type(saver.inner).__name__


def _stamped(**where: Any) -> list[list[str]]:
    """The `memory_commits` metadata of the thread's checkpoints, read back by the CLI's saver."""
    with open_checkpointer(**where) as saver:
        metadata: list[dict[str, Any]] = [dict(cp.metadata) for cp in saver.list(THREAD)]
    return [m[MEMORY_COMMITS] for m in metadata if MEMORY_COMMITS in m]


def test_embedded_served_checkpoints_land_stamped_in_their_own_file(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BASTION_REDIS_URL", raising=False)

    assert asyncio.run(_serve_one_thread()) == "AsyncSqliteSaver"

    assert _stamped(sqlite_path=tmp_home / SERVER_CHECKPOINTS_FILE) == [["c-1"]]
    assert not (tmp_home / "checkpoints.sqlite").exists(), "the CLI's file is left alone"


@pytest.mark.redis
def test_served_checkpoints_land_stamped_in_redis_when_configured(
    tmp_home: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_REDIS_URL", redis_url)

    assert asyncio.run(_serve_one_thread()) == "AsyncRedisSaver"

    assert _stamped(redis_url=redis_url) == [["c-1"]]
    assert not (tmp_home / SERVER_CHECKPOINTS_FILE).exists()


def test_unreachable_redis_fails_at_open_naming_the_url(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_REDIS_URL", "redis://127.0.0.1:1")

    with pytest.raises(CheckpointerConfigError) as raised:
        asyncio.run(_serve_one_thread())

    message = str(raised.value)
    assert "cannot reach Redis at redis://127.0.0.1:1 for checkpoints" in message
    assert "unset BASTION_REDIS_URL" in message
    assert not (tmp_home / SERVER_CHECKPOINTS_FILE).exists()


def test_an_async_checkpointer_needs_a_file_or_a_url() -> None:
    async def open_neither() -> None:
        async with open_async_checkpointer():
            pass

    with pytest.raises(CheckpointerConfigError, match="sqlite_path"):
        asyncio.run(open_neither())
