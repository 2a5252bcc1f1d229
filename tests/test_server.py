"""The support graph served by `langgraph dev`, driven over HTTP with the LangGraph SDK.

A module-scoped fixture starts the real dev server (in-memory runtime) on a free loopback port,
with its business database in a temporary `BASTION_HOME` and every outbound call (tracing,
analytics, version check, license metadata) switched off: the tests run with no network.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from graphs.support import format_ticket
from memory import MemoryScope, open_memory

pytestmark = [pytest.mark.server, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
LANGGRAPH = Path(sys.executable).parent / "langgraph"
READY_DEADLINE_S = 90.0
STOP_GRACE_S = 15.0
ASSISTANT = "support"
TENANT = "acme"
LARGE_REFUND = format_ticket(
    "carla@example.com",
    "Desk",
    "The standing desk (ORD-1003) is wobbly and unusable. I want a full refund of $640.",
)

# Variables that would make the server (or the SDK) talk to LangSmith / LangChain services.
_SECRETS = (
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGGRAPH_API_KEY",
    "LANGGRAPH_CLOUD_LICENSE_KEY",
    "LANGSMITH_CONTROL_PLANE_API_KEY",
    "LANGSMITH_ENDPOINT",
    "LANGCHAIN_ENDPOINT",
)
_OFFLINE = {
    "LANGSMITH_TRACING": "false",
    "LANGSMITH_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    # langgraph_cli/analytics.py: anonymous usage ping on every CLI command.
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    # langgraph_api/cli.py: background PyPI "newer version" check.
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    # langgraph_api/config: self-hosted metrics and log shipping (off by default; pinned).
    "LANGGRAPH_METRICS_ENABLED": "false",
    "LANGGRAPH_LOGS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "BASTION_MODEL": "scripted",
}


@dataclass(frozen=True)
class Server:
    url: str
    home: Path
    log: Path

    def client(self) -> SyncLangGraphClient:
        return get_sync_client(url=self.url, api_key=None, timeout=60.0)

    def db(self) -> Path:
        return self.home / "support.sqlite"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _output(log: Path) -> str:
    return log.read_text(errors="replace")[-8000:] if log.exists() else "<no output>"


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    last_error: Exception | None = None
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"`langgraph dev` exited with code {proc.returncode} before it was ready; "
                    f"output:\n{_output(log)}"
                )
            try:
                if http.get(f"{url}/ok").status_code == 200:
                    return
            except httpx.TransportError as error:
                last_error = error
            time.sleep(0.25)  # polling interval of the readiness probe, not synchronisation
    pytest.fail(
        f"`langgraph dev` not ready at {url}/ok after {READY_DEADLINE_S:.0f}s "
        f"(last error: {last_error!r}); output:\n{_output(log)}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_GRACE_S)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_GRACE_S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A `langgraph dev` serving langgraph.json from the repo root, stopped after the module."""
    if not LANGGRAPH.exists():
        pytest.fail(f"{LANGGRAPH} not found; install the dev extras: pip install -e '.[dev]'")
    home = tmp_path_factory.mktemp("bastion-home")
    log = home / "langgraph-dev.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in _SECRETS}
    env.pop("BASTION_REDIS_URL", None)
    env.update(_OFFLINE, BASTION_HOME=str(home))
    cmd = [
        str(LANGGRAPH),
        "dev",
        "--no-browser",
        "--no-reload",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    with log.open("wb") as out:
        # Own process group: teardown signals the CLI and the server it spawns together.
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_ready(proc, url, log)
        yield Server(url=url, home=home, log=log)
    finally:
        _stop(proc)


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


def test_a_served_run_remembers_the_customer_in_bastion_memory(server: Server) -> None:
    """A run over HTTP writes versioned memory in the served process's BASTION_HOME."""
    client = server.client()
    ticket = format_ticket(
        "alice@example.com", "Hello", "Where is ORD-1001? P.S. Please call me Ally."
    )
    thread_id = client.threads.create()["thread_id"]
    client.runs.wait(
        thread_id, ASSISTANT, input={"messages": [{"role": "user", "content": ticket}]},
        context={"tenant": TENANT},
    )  # fmt: skip
    scope = MemoryScope(tenant=TENANT, agent="human:test", purposes=frozenset({"support"}))
    with open_memory(home=server.home / "memory") as memory:
        hits = memory.recall(scope, namespace=("customers", "alice@example:com"))
        assert [(hit.record.value or {}).get("preference") for hit in hits] == ["Ally"]
        assert hits[0].record.tags.lineage.run_id  # lineage: the run that learned it
        assert memory.commits(scope)[0].author == hits[0].record.author
