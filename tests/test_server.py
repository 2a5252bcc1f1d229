"""The support graph served by `langgraph dev`, driven over HTTP with the LangGraph SDK.

A module-scoped fixture starts the real dev server (in-memory runtime, `tests/served.py`) on a
free loopback port, with its business database in a temporary `BASTION_HOME`, offline.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph_sdk.client import SyncLangGraphClient
from served import Server, start_server

from graphs.settings import Settings
from graphs.support import format_ticket
from memory import MEMORY_COMMITS, MemoryScope, open_checkpointer, open_memory

pytestmark = [pytest.mark.server, pytest.mark.slow]

ASSISTANT = "support"
SERVER_CHECKPOINTS_FILE = Settings().server_checkpoint_path.name
TENANT = "acme"
LARGE_REFUND = format_ticket(
    "carla@example.com",
    "Desk",
    "The standing desk (ORD-1003) is wobbly and unusable. I want a full refund of $640.",
)
ALICE = ("customers", "alice@example:com")
MEMORY_SCOPE = MemoryScope(tenant=TENANT, agent="human:test", purposes=frozenset({"support"}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A `langgraph dev` serving langgraph.json from the repo root, stopped after the module."""
    with start_server(tmp_path_factory.mktemp("bastion-home")) as running:
        yield running


def _refunds(db: Path, order_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM refunds WHERE order_id = ?", (order_id,)).fetchall()
    return [dict(row) for row in rows]


def _sent_emails(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM outbound_emails WHERE status = 'sent'").fetchone()[0]
        )


def _start_ticket(client: SyncLangGraphClient) -> tuple[str, dict[str, Any]]:
    """Run the large-refund ticket on a new thread; returns the thread id and the interrupt."""
    thread_id = client.threads.create()["thread_id"]
    result = client.runs.wait(
        thread_id,
        ASSISTANT,
        input={"messages": [{"role": "user", "content": LARGE_REFUND}]},
        context={"tenant": TENANT},
    )
    assert isinstance(result, dict)
    assert [i["value"] for i in result.get("__interrupt__", [])], f"no interrupt: {result!r}"
    return thread_id, _pending_interrupt(client, thread_id)


def _pending_interrupt(client: SyncLangGraphClient, thread_id: str) -> dict[str, Any]:
    """The one interrupt the thread is waiting on, checked through the thread's state."""
    assert client.threads.get(thread_id)["status"] == "interrupted"
    state = client.threads.get_state(thread_id)
    assert state["next"] == ["approval"]
    assert len(state["interrupts"]) == 1, state["interrupts"]
    value: dict[str, Any] = state["interrupts"][0]["value"]
    return value


def _resume(client: SyncLangGraphClient, thread_id: str, answer: Any) -> dict[str, Any]:
    result = client.runs.wait(
        thread_id, ASSISTANT, command={"resume": answer}, context={"tenant": TENANT}
    )
    assert isinstance(result, dict)
    return result


def test_large_refund_is_escalated_and_approved_over_http(server: Server) -> None:
    client = server.client()
    refunds_before = _refunds(server.db(), "ORD-1003")
    emails_before = _sent_emails(server.db())

    thread_id, payload = _start_ticket(client)

    request = payload["action_requests"][0]
    assert request["name"] == "issue_refund"
    assert request["args"]["order_id"] == "ORD-1003"
    assert request["args"]["amount"] == 640
    assert request["zone"] == "yellow"  # the tenant's refund limit (Rego) escalates, not the zone
    assert "over tenant acme's limit of $100" in request["description"]
    assert payload["review_configs"][0]["action_name"] == "issue_refund"
    assert "error" not in payload
    # Nothing irreversible happened while the run waits for a human.
    assert _refunds(server.db(), "ORD-1003") == refunds_before
    assert client.threads.get_state(thread_id)["values"].get("outcome") is None

    result = _resume(
        client, thread_id, {"decisions": [{"type": "approve", "reviewer": "test-lead"}]}
    )
    assert "__interrupt__" not in result

    assert client.threads.get(thread_id)["status"] == "idle"
    state = client.threads.get_state(thread_id)
    assert state["next"] == []
    assert state["interrupts"] == []
    values = state["values"]
    assert values["outcome"]["status"] == "resolved", values["outcome"]
    assert values["tenant"] == TENANT
    human = [v for v in values["verdicts"] if v["decided_by"] == "human:test-lead"]
    assert len(human) == 1 and human[0]["kind"] == "allow", values["verdicts"]
    assert human[0]["call_id"] == request["call_id"]
    assert values["usage"]["tool_calls"] >= 2

    refunds = _refunds(server.db(), "ORD-1003")
    assert refunds_before == [] and len(refunds) == 1, refunds
    assert refunds[0]["amount"] == 640
    assert _sent_emails(server.db()) == emails_before + 1


def test_invalid_resume_keeps_the_run_waiting_then_reject_refunds_nothing(
    server: Server,
) -> None:
    client = server.client()
    refunds_before = _refunds(server.db(), "ORD-1003")
    thread_id, payload = _start_ticket(client)
    assert payload["action_requests"][0]["name"] == "issue_refund"

    result = _resume(client, thread_id, {"decisions": [{"type": "maybe"}]})

    # The run is still waiting on the same request, now told what was wrong.
    interrupts = result.get("__interrupt__", [])
    assert len(interrupts) == 1, result
    retry = _pending_interrupt(client, thread_id)
    assert retry["action_requests"] == payload["action_requests"]
    assert "maybe" in retry["error"] and "approve" in retry["error"], retry["error"]
    assert interrupts[0]["value"]["error"] == retry["error"]
    assert client.threads.get_state(thread_id)["values"].get("outcome") is None
    assert _refunds(server.db(), "ORD-1003") == refunds_before

    result = _resume(
        client,
        thread_id,
        {"decisions": [{"type": "reject", "reviewer": "test-lead", "message": "over policy"}]},
    )
    assert "__interrupt__" not in result

    assert client.threads.get(thread_id)["status"] == "idle"
    values = client.threads.get_state(thread_id)["values"]
    assert values["outcome"] is not None and values["outcome"]["status"] == "resolved"
    assert values["tenant"] == TENANT
    human = [v for v in values["verdicts"] if v["decided_by"] == "human:test-lead"]
    assert [v["kind"] for v in human] == ["deny"], values["verdicts"]
    assert "over policy" in human[0]["reasons"][0]
    assert _refunds(server.db(), "ORD-1003") == refunds_before


def test_the_server_store_searches_with_bastion_embeddings(server: Server) -> None:
    """langgraph.json gives the server's store our offline embedder: semantic search works."""
    client = server.client()
    space = [TENANT, "memory", "notes"]
    client.store.put_item(space, "grinder", {"text": "coffee grinder arrived broken"})
    client.store.put_item(space, "desk", {"text": "standing desk is wobbly"})
    hits = client.store.search_items([TENANT], query="broken coffee grinder", limit=2)["items"]
    assert [hit["key"] for hit in hits] == ["grinder", "desk"]
    assert hits[0]["score"] > hits[1]["score"]


@dataclass(frozen=True, kw_only=True)
class Remembered:
    """A served run that wrote Bastion memory."""

    thread_id: str
    """Its thread on the server."""
    run_id: str
    """The server's id of the run."""


def _remember(client: SyncLangGraphClient) -> Remembered:
    """Run a ticket from which the support graph learns alice's preferred name."""
    ticket = format_ticket(
        "alice@example.com", "Hello", "Where is ORD-1001? P.S. Please call me Ally."
    )
    thread_id = client.threads.create()["thread_id"]
    run = client.runs.create(
        thread_id, ASSISTANT, input={"messages": [{"role": "user", "content": ticket}]},
        context={"tenant": TENANT},
    )  # fmt: skip
    client.runs.join(thread_id, run["run_id"])
    assert client.runs.get(thread_id, run["run_id"])["status"] == "success"
    return Remembered(thread_id=thread_id, run_id=run["run_id"])


def _stamped_commit(client: SyncLangGraphClient, remembered: Remembered) -> str:
    """The one memory commit stamped in the thread's history, on the step that wrote it."""
    history = client.threads.get_history(remembered.thread_id, limit=100)
    stamped = [cp for cp in history if MEMORY_COMMITS in (cp["metadata"] or {})]
    assert len(stamped) == 1, [cp["metadata"] for cp in history]
    metadata = stamped[0]["metadata"] or {}
    assert metadata["run_id"] == remembered.run_id
    assert stamped[0]["next"] == ["agent_triage"], "the step after the guard ran the write"
    [commit_id] = metadata[MEMORY_COMMITS]
    return str(commit_id)


def _stamps_in(saver: BaseCheckpointSaver, thread_id: str) -> list[list[str]]:
    """The memory commits stamped in a thread's checkpoints, read from the saver directly."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    metadata: list[dict[str, Any]] = [dict(cp.metadata) for cp in saver.list(config)]
    return [m[MEMORY_COMMITS] for m in metadata if MEMORY_COMMITS in m]


@pytest.fixture(scope="module")
def remembered(server: Server) -> Remembered:
    """One served run that wrote Bastion memory."""
    return _remember(server.client())


def test_a_served_run_remembers_the_customer_in_bastion_memory(
    server: Server, remembered: Remembered
) -> None:
    """A run over HTTP writes versioned memory in the served process's BASTION_HOME."""
    with open_memory(home=server.home / "memory") as memory:
        hits = memory.recall(MEMORY_SCOPE, namespace=ALICE)
        assert [(hit.record.value or {}).get("preference") for hit in hits] == ["Ally"]
        assert hits[0].record.tags.lineage.run_id  # lineage: the run that learned it
        assert memory.commits(MEMORY_SCOPE)[0].author == hits[0].record.author


def test_the_served_checkpoint_of_the_writing_step_names_the_memory_commit(
    server: Server, remembered: Remembered
) -> None:
    """langgraph.json's checkpointer stamps the commit into the step that wrote, as the CLI's."""
    client = server.client()
    commit_id = _stamped_commit(client, remembered)

    with open_memory(home=server.home / "memory") as memory:
        [hit] = memory.recall(MEMORY_SCOPE, namespace=ALICE)
        assert hit.record.commit_id == commit_id
        commit = memory.commit_of(MEMORY_SCOPE, commit_id)
    bastion_run = client.threads.get_state(remembered.thread_id)["values"]["run_id"]
    assert commit.run_id == hit.record.tags.lineage.run_id == bastion_run

    # The server checkpoints in its own file under BASTION_HOME, not in its in-memory default.
    with open_checkpointer(sqlite_path=server.home / SERVER_CHECKPOINTS_FILE) as saver:
        assert _stamps_in(saver, remembered.thread_id) == [[commit_id]]


def test_a_copied_thread_keeps_its_checkpoints_and_their_stamps(
    server: Server, remembered: Remembered
) -> None:
    """The server copies a thread through the checkpointer (its portable fallback)."""
    client = server.client()
    commit_id = _stamped_commit(client, remembered)
    copy = client.threads.copy(remembered.thread_id)
    copied = client.threads.get_history(copy["thread_id"], limit=100)
    original = client.threads.get_history(remembered.thread_id, limit=100)
    assert len(copied) == len(original)
    stamps = [cp["metadata"][MEMORY_COMMITS] for cp in copied if MEMORY_COMMITS in cp["metadata"]]
    assert stamps == [[commit_id]]
    assert (
        client.threads.get_state(copy["thread_id"])["values"]["run_id"]
        == (client.threads.get_state(remembered.thread_id)["values"]["run_id"])
    )


@pytest.mark.redis
def test_a_server_with_redis_checkpoints_there_and_stamps_the_commit(
    tmp_path: Path, redis_url: str
) -> None:
    """With `BASTION_REDIS_URL`, the served checkpoints live in Redis: a paused run shows its
    interrupt, and the writing step's checkpoint names the commit in Redis memory."""
    with start_server(tmp_path, {"BASTION_REDIS_URL": redis_url}) as served:
        client = served.client()
        _, payload = _start_ticket(client)
        assert payload["action_requests"][0]["name"] == "issue_refund"
        remembered = _remember(client)
        commit_id = _stamped_commit(client, remembered)

    with open_checkpointer(redis_url=redis_url) as saver:
        assert _stamps_in(saver, remembered.thread_id) == [[commit_id]]
    with open_memory(home=tmp_path / "memory", redis_url=redis_url) as memory:
        [hit] = memory.recall(MEMORY_SCOPE, namespace=ALICE)
        assert hit.record.commit_id == commit_id
    assert not (tmp_path / SERVER_CHECKPOINTS_FILE).exists()
