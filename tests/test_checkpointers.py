"""The support graph checkpoints, interrupts and resumes the same way on SQLite and on Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command

from graphs.support import SupportDB, build_support_graph, format_ticket, scripted_review
from memory import CheckpointerConfigError, open_checkpointer
from nodes import RunContext

CONTEXT = RunContext(tenant="acme")
SMALL_REFUND = format_ticket(
    "bob@example.com",
    "Grinder",
    "The coffee grinder from ORD-1002 arrived broken. Please refund $45.",
)
LARGE_REFUND = format_ticket(
    "carla@example.com",
    "Desk",
    "The standing desk (ORD-1003) is wobbly and unusable. I want a full refund of $640.",
)


def _ticket(text: str) -> dict[str, Any]:
    return {"messages": [("user", text)]}


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _is_redis(request: pytest.FixtureRequest) -> bool:
    return request.node.callspec.params["saver"] == "redis"


@pytest.fixture
def db(tmp_path: Path) -> SupportDB:
    """A freshly seeded business database for this test."""
    return SupportDB(tmp_path / "support.sqlite")


def test_small_refund_completes_with_one_refund(saver: BaseCheckpointSaver, db: SupportDB) -> None:
    """A refund under the auto limit runs to the end without a human and writes one refund."""
    graph = build_support_graph(db).compile(checkpointer=saver)

    result = graph.invoke(_ticket(SMALL_REFUND), _config("small"), context=CONTEXT)

    assert "__interrupt__" not in result
    assert result["outcome"]["status"] == "resolved"
    assert db.counts()["refunds"] == 1
    assert graph.get_state(_config("small")).next == ()


def test_large_refund_interrupts_and_resumes(saver: BaseCheckpointSaver, db: SupportDB) -> None:
    """A large refund pauses at approval with its state saved, then completes once approved."""
    graph = build_support_graph(db).compile(checkpointer=saver)
    config = _config("large")

    # `sync`: the interrupt is saved before invoke returns (see the default-durability test).
    first = graph.invoke(_ticket(LARGE_REFUND), config, context=CONTEXT, durability="sync")

    [pending] = first["__interrupt__"]
    assert pending.value["action_requests"][0]["name"] == "issue_refund"
    paused = graph.get_state(config)
    assert paused.next == ("approval",)
    assert paused.interrupts
    assert not paused.values.get("outcome")
    assert db.counts()["refunds"] == 0

    final = graph.invoke(Command(resume=scripted_review(pending.value)), config, context=CONTEXT)

    assert final["outcome"]["status"] == "resolved"
    assert "escalate" in [verdict["kind"] for verdict in final["verdicts"]]
    assert final["usage"]["tool_calls"] >= 1
    assert db.all("SELECT order_id, amount FROM refunds") == [
        {"order_id": "ORD-1003", "amount": 640.0}
    ]


def test_another_graph_object_resumes_the_interrupted_thread(
    saver: BaseCheckpointSaver, db: SupportDB
) -> None:
    """A graph compiled anew on the same saver (as another process would) resumes the thread."""
    config = _config("handover")
    first = build_support_graph(db).compile(checkpointer=saver)
    first.invoke(_ticket(LARGE_REFUND), config, context=CONTEXT, durability="sync")

    second = build_support_graph(db).compile(checkpointer=saver)
    paused = second.get_state(config)
    assert paused.next == ("approval",)
    [pending] = paused.interrupts
    final = second.invoke(Command(resume=scripted_review(pending.value)), config, context=CONTEXT)

    assert final["outcome"]["status"] == "resolved"
    assert db.counts()["refunds"] == 1
    assert db.counts()["outbound_emails"] == 1


def test_interrupt_is_readable_with_default_durability(
    saver: BaseCheckpointSaver, db: SupportDB, request: pytest.FixtureRequest
) -> None:
    """With the default (`async`) durability the paused thread still shows its interrupt."""
    if _is_redis(request):
        request.applymarker(
            pytest.mark.xfail(
                reason="langgraph-checkpoint-redis 0.5.2: put() of a checkpoint resets "
                "`has_writes` to False after the async put_writes of its interrupt, so "
                "get_tuple() returns no pending writes; use durability='sync' on Redis",
                strict=False,
            )
        )
    graph = build_support_graph(db).compile(checkpointer=saver)
    config = _config("default-durability")
    graph.invoke(_ticket(LARGE_REFUND), config, context=CONTEXT)

    paused = graph.get_state(config)

    assert paused.next == ("approval",)
    assert paused.interrupts


def test_state_history_keeps_every_step(saver: BaseCheckpointSaver, db: SupportDB) -> None:
    """The saver keeps one checkpoint per step, newest first, from the input to the end."""
    graph = build_support_graph(db).compile(checkpointer=saver)
    config = _config("history")
    graph.invoke(_ticket(SMALL_REFUND), config, context=CONTEXT)

    history = list(graph.get_state_history(config))

    assert len(history) > 5
    steps = [snapshot.metadata["step"] for snapshot in history]
    assert steps == sorted(steps, reverse=True)
    assert history[0].values["outcome"]["status"] == "resolved"
    assert history[-1].metadata["source"] == "input"


def test_unreachable_redis_is_a_config_error() -> None:
    """A Redis URL with nothing listening fails at open, naming the URL."""
    url = "redis://127.0.0.1:1"
    with pytest.raises(CheckpointerConfigError, match=r"redis://127\.0\.0\.1:1"):  # noqa: SIM117
        with open_checkpointer(redis_url=url):
            pass


def test_no_checkpointer_configured_is_a_config_error() -> None:
    """Opening a checkpointer with neither a file nor a URL says what to pass."""
    with pytest.raises(CheckpointerConfigError, match="sqlite_path"):  # noqa: SIM117
        with open_checkpointer():
            pass
