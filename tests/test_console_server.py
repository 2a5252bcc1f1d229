"""The console API mounted into the real `langgraph dev` server (`langgraph.json` `http.app`):
approvals listed and decided over HTTP resume runs through the server's own run API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from served import Server, start_server

from console.auth import KeyStore
from graphs.support import format_ticket

pytestmark = [pytest.mark.server, pytest.mark.slow]

ASSISTANT = "support"
LARGE_REFUND = format_ticket(
    "carla@example.com",
    "Desk",
    "The standing desk (ORD-1003) is wobbly and unusable. I want a full refund of $640.",
)
AUDIT_DEADLINE_S = 30.0


@dataclass(frozen=True)
class Console:
    server: Server
    keys: dict[str, str]

    def http(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {self.keys[who]}"},
            timeout=120.0,
        )


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A `langgraph dev` whose BASTION_HOME holds console keys for acme and demo reviewers."""
    home = tmp_path_factory.mktemp("bastion-home")
    store = KeyStore(home / "console-keys.json")
    keys = {
        "lead": store.create("acme-lead", ["acme"]),
        "demo": store.create("demo-lead", ["demo"]),
    }
    # A short sweep interval: the deadline sweeper runs (through the in-process SDK client)
    # while the tests work; its approvals are not due, so it must leave them alone.
    with start_server(home, {"BASTION_APPROVAL_SWEEP_S": "1"}) as server:
        yield Console(server=server, keys=keys)


def _escalated_run(server: Server) -> str:
    client = server.client()
    thread_id: str = client.threads.create()["thread_id"]
    result = client.runs.wait(
        thread_id,
        ASSISTANT,
        input={"messages": [{"role": "user", "content": LARGE_REFUND}]},
        context={"tenant": "acme"},
    )
    assert isinstance(result, dict) and result.get("__interrupt__"), result
    return thread_id


def _audit_approvals(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """The run's approval records; the server's tracer writes them off the hot path, so poll."""
    deadline = time.monotonic() + AUDIT_DEADLINE_S
    while True:
        response = http.get("/bastion/api/audit", params={"kind": "approval", "run_id": run_id})
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["records"]
        if records or time.monotonic() > deadline:
            return records
        time.sleep(0.2)  # polling interval, not synchronisation


def test_a_reviewer_approves_a_served_run_through_the_console(console: Console) -> None:
    thread_id = _escalated_run(console.server)

    with console.http("lead") as lead, console.http("demo") as demo:
        assert lead.get("/bastion/api/me").json()["name"] == "acme-lead"
        approvals = lead.get("/bastion/api/approvals").json()["approvals"]
        [approval] = [a for a in approvals if a["thread_id"] == thread_id]
        assert approval["tenant"] == "acme"
        assert approval["requests"][0]["name"] == "issue_refund"
        assert approval["requests"][0]["args"]["amount"] == 640

        # Another tenant's reviewer sees nothing of it and cannot decide it.
        # (The dev server keeps threads of earlier sessions in .langgraph_api/: other runs
        # may wait too, so these checks are about this thread and tenant only.)
        theirs = demo.get("/bastion/api/approvals").json()["approvals"]
        assert thread_id not in [a["thread_id"] for a in theirs]
        assert {a["tenant"] for a in theirs} <= {"demo"}
        assert {r["tenant"] for r in demo.get("/bastion/api/runs").json()["runs"]} <= {"demo"}
        hidden = demo.get(f"/bastion/api/runs/{approval['run_id']}")
        assert hidden.status_code == 404, hidden.text
        refused = demo.post(
            f"/bastion/api/approvals/{thread_id}", json={"decisions": [{"type": "approve"}]}
        )
        assert refused.status_code == 404, refused.text
        assert console.server.client().threads.get(thread_id)["status"] == "interrupted"

        decided = lead.post(
            f"/bastion/api/approvals/{thread_id}",
            json={"decisions": [{"type": "approve"}], "note": "checked the photos"},
        )

        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "resolved"
        run = decided.json()["run"]
        assert run["run_id"] == approval["run_id"] and run["status"] == "resolved"
        state = console.server.client().threads.get_state(thread_id)
        assert state["values"]["outcome"]["status"] == "resolved" and state["interrupts"] == []
        [record] = _audit_approvals(lead, approval["run_id"])
        assert record["actor"] == "human:acme-lead"
        assert "checked the photos" in record["detail"]["reasons"]
        waiting = lead.get("/bastion/api/approvals").json()["approvals"]
        assert thread_id not in [a["thread_id"] for a in waiting]
        again = lead.post(
            f"/bastion/api/approvals/{thread_id}", json={"decisions": [{"type": "approve"}]}
        )
        assert again.status_code == 409, again.text

        runs = lead.get("/bastion/api/runs").json()["runs"]
        assert [r["status"] for r in runs if r["run_id"] == approval["run_id"]] == ["resolved"]
        metrics = lead.get("/bastion/metrics")
        assert metrics.status_code == 200 and "bastion_runs_total" in metrics.text

    output = console.server.log.read_text(errors="replace")
    assert "deadline sweep of pending approvals every 1s" in output  # the app's lifespan ran
    assert "deadline sweep failed" not in output


def test_the_dashboard_and_its_assets_are_served(console: Console) -> None:
    with httpx.Client(base_url=console.server.url, timeout=30.0) as http:
        page = http.get("/bastion/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert http.get("/bastion/static/dashboard.html").status_code == 200
        refused = http.get("/bastion/api/approvals")
        assert refused.status_code == 401 and refused.json()["hint"]
        # The console sits beside LangGraph's own routes, which still work.
        assert http.get("/ok").status_code == 200
