"""The console's HTTP governance API over a real support graph (LocalRunControl), in process.

Starlette's TestClient drives `create_app`; runs are real support-graph runs on a real
checkpointer, and everything the API claims is checked against the graph's state, the
business database and the audit log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from starlette.testclient import TestClient

from console.app import create_app
from console.auth import ApiKey, KeyStore, KeyStoreError, ensure_admin_key
from console.control import LocalRunControl
from console.deadlines import DEADLINE_ACTOR, sweep_interval, sweep_overdue
from graphs import Services
from graphs.support import SupportDB, build_support_graph, format_ticket
from memory import open_checkpointer
from nodes import RunContext

LARGE_REFUND = format_ticket(
    "carla@example.com",
    "Desk",
    "The standing desk (ORD-1003) is wobbly and unusable. I want a full refund of $640.",
)
ORDER_STATUS = format_ticket("alice@example.com", "Hello", "Where is my order ORD-1001, please?")


@dataclass
class Console:
    """A console over one support graph, with keys for tenants acme and demo and an admin."""

    client: TestClient
    services: Services
    graph: Any
    db: SupportDB
    control: LocalRunControl
    store: KeyStore
    keys: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def get(self, who: str, path: str) -> Any:
        response = self.client.get(path, headers=self.as_(who))
        assert response.status_code == 200, response.text
        return response.json()

    def start(self, thread_id: str, tenant: str = "acme", text: str = LARGE_REFUND) -> Any:
        """Run a ticket until it stops (finished, or waiting for a human)."""
        result = self.graph.invoke(
            {"messages": [("user", text)]},
            {"configurable": {"thread_id": thread_id}},
            context=RunContext(tenant=tenant),
            durability="sync",
        )
        assert self.services.tracer.flush(5.0)
        return result

    def values(self, thread_id: str) -> dict[str, Any]:
        return dict(self.graph.get_state({"configurable": {"thread_id": thread_id}}).values)

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        assert self.services.tracer.flush(5.0)
        return list(self.services.audit.records(**filters))


def _console(tmp_path: Path, saver: BaseCheckpointSaver) -> Iterator[Console]:
    services = Services.in_process()
    db = SupportDB(tmp_path / "support.sqlite")
    graph = build_support_graph(db, services=services).compile(checkpointer=saver)
    store = KeyStore(tmp_path / "console-keys.json")
    keys = {
        "alice": store.create("alice", ["acme"]),
        "dora": store.create("dora", ["demo"]),
        "root": store.create("root", ["*"], admin=True),
        "ops": store.create("ops", ["*"]),
    }
    control = LocalRunControl(graph)
    app = create_app(services=services, control=control, keys=store, sweep_interval_s=0)
    with TestClient(app) as client:
        yield Console(
            client=client,
            services=services,
            graph=graph,
            db=db,
            control=control,
            store=store,
            keys=keys,
        )


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with open_checkpointer(sqlite_path=tmp_path / "checkpoints.sqlite") as saver:
        yield from _console(tmp_path, saver)


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "hint"} and body["error"] and body["hint"], body
    return dict(body)


# --- authentication -----------------------------------------------------------------------


def test_requests_without_a_valid_key_are_refused(console: Console) -> None:
    for path in (
        "/bastion/api/me",
        "/bastion/api/runs",
        "/bastion/api/approvals",
        "/bastion/metrics",
    ):
        assert "no API key" in _error(console.client.get(path), 401)["error"]
        bad = console.client.get(path, headers={"Authorization": "Bearer not-a-key"})
        assert "unknown API key" in _error(bad, 401)["error"]
    wrong_scheme = console.client.get(
        "/bastion/api/me", headers={"Authorization": f"Basic {console.keys['alice']}"}
    )
    _error(wrong_scheme, 401)
    assert console.get("alice", "/bastion/api/me") == {
        "name": "alice",
        "tenants": ["acme"],
        "admin": False,
    }


def test_unknown_routes_and_methods_answer_in_json(console: Console) -> None:
    _error(console.client.get("/bastion/api/nothing-here", headers=console.as_("alice")), 404)
    _error(console.client.post("/bastion/api/runs", headers=console.as_("alice")), 405)
    _error(console.client.get("/bastion/api/kill", headers=console.as_("alice")), 405)


def test_the_dashboard_is_served_without_a_key(console: Console) -> None:
    page = console.client.get("/bastion/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text.lower()
    assert console.client.get("/bastion").url.path == "/bastion/"
    asset = console.client.get("/bastion/static/dashboard.html")
    assert asset.status_code == 200


def test_the_key_file_keeps_hashes_only(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    raw = store.create("alice", ["acme"])
    text = (tmp_path / "keys.json").read_text()
    assert raw not in text and '"sha256"' in text
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
    assert store.authenticate(raw) == ApiKey(name="alice", tenants=frozenset({"acme"}))
    assert store.authenticate(raw + "x") is None and store.authenticate("") is None
    with pytest.raises(KeyStoreError, match="exists already"):
        store.create("alice", ["demo"])
    assert store.revoke("alice") and not store.revoke("alice")
    assert store.authenticate(raw) is None


def test_ensure_admin_key_creates_one_only_for_an_empty_store(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    raw = ensure_admin_key(store)
    assert raw is not None
    key = store.authenticate(raw)
    assert key is not None and key.admin and key.all_tenants
    assert ensure_admin_key(store) is None
    assert [k.name for k in store.list()] == ["admin"]


def test_a_malformed_key_file_names_the_file_and_the_shape(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"name": "alice", "sha256": "zz", "tenants": ["a"]}]}))
    with pytest.raises(KeyStoreError) as error:
        KeyStore(path).authenticate("anything")
    assert str(path) in str(error.value) and '"keys": [{"name"' in str(error.value)
    path.write_text("[1, 2]")
    with pytest.raises(KeyStoreError, match="keys"):
        KeyStore(path).list()


def test_a_key_file_changed_on_disk_is_seen_without_a_restart(console: Console) -> None:
    raw = KeyStore(console.store.path).create("late", ["acme"])  # e.g. from the command line
    response = console.client.get("/bastion/api/me", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200 and response.json()["name"] == "late"
    KeyStore(console.store.path).revoke("late")
    _error(console.client.get("/bastion/api/me", headers={"Authorization": f"Bearer {raw}"}), 401)


# --- tenant scoping -----------------------------------------------------------------------


def test_a_reviewer_sees_and_decides_only_their_tenants_runs(console: Console) -> None:
    console.start("acme-1", tenant="acme")
    console.start("demo-1", tenant="demo")
    acme_run = console.values("acme-1")["run_id"]

    assert [
        a["thread_id"] for a in console.get("alice", "/bastion/api/approvals")["approvals"]
    ] == ["acme-1"]
    assert [a["thread_id"] for a in console.get("dora", "/bastion/api/approvals")["approvals"]] == [
        "demo-1"
    ]
    everyone = console.get("root", "/bastion/api/approvals")["approvals"]
    assert sorted(a["thread_id"] for a in everyone) == ["acme-1", "demo-1"]

    assert {r["tenant"] for r in console.get("dora", "/bastion/api/runs")["runs"]} == {"demo"}
    assert {r["tenant"] for r in console.get("root", "/bastion/api/runs")["runs"]} == {
        "acme",
        "demo",
    }
    hidden = console.client.get(f"/bastion/api/runs/{acme_run}", headers=console.as_("dora"))
    unknown = console.client.get("/bastion/api/runs/run_nope", headers=console.as_("dora"))
    assert _error(hidden, 404)["error"] == f"no run {acme_run!r}"  # same answer as unknown
    assert _error(unknown, 404)["hint"] == _error(hidden, 404)["hint"]

    decide = console.client.post(
        "/bastion/api/approvals/acme-1",
        headers=console.as_("dora"),
        json={"decisions": [{"type": "approve"}]},
    )
    _error(decide, 404)
    assert console.values("acme-1").get("outcome") is None  # still waiting
    assert console.db.all("SELECT * FROM refunds WHERE order_id = 'ORD-1003'") == []
    assert [
        a["thread_id"] for a in console.get("alice", "/bastion/api/approvals")["approvals"]
    ] == ["acme-1"]


def test_a_console_with_no_runs_yet_lists_nothing(console: Console) -> None:
    assert console.get("root", "/bastion/api/approvals") == {"approvals": []}
    assert console.get("root", "/bastion/api/runs") == {"runs": []}
    assert console.get("root", "/bastion/api/kpis")["runs_total"] == 0
    assert console.get("root", "/bastion/api/kills") == {"active": [], "history": []}


def test_a_run_shows_its_events_oldest_first(console: Console) -> None:
    console.start("acme-1")
    run_id = console.values("acme-1")["run_id"]
    body = console.get("alice", f"/bastion/api/runs/{run_id}")
    assert body["run"]["run_id"] == run_id and body["run"]["status"] == "waiting"
    nodes = [e["node"] for e in body["events"]]
    assert nodes[0] == "intake" and nodes[-1] == "approval"
    times = [e["ts"] for e in body["events"]]
    assert times == sorted(times)
    _error(console.client.get("/bastion/api/runs?limit=0", headers=console.as_("alice")), 400)


# --- approvals ----------------------------------------------------------------------------


def _approval(console: Console, thread_id: str, who: str = "alice") -> dict[str, Any]:
    [approval] = [
        a
        for a in console.get(who, "/bastion/api/approvals")["approvals"]
        if a["thread_id"] == thread_id
    ]
    return dict(approval)


def test_the_approval_queue_has_the_contract_shape(console: Console) -> None:
    console.start("acme-1")
    approval = _approval(console, "acme-1")
    assert set(approval) == {
        "thread_id",
        "run_id",
        "tenant",
        "requests",
        "allowed_decisions",
        "reviewers",
        "deadline",
        "on_timeout",
        "error",
    }
    [request] = approval["requests"]
    assert set(request) == {
        "call_id",
        "name",
        "args",
        "description",
        "zone",
        "decision_id",
        "agent",
    }
    assert request["name"] == "issue_refund" and request["args"]["amount"] == 640
    assert approval["run_id"] == console.values("acme-1")["run_id"]
    assert approval["tenant"] == "acme" and approval["reviewers"] == "support-leads"
    assert approval["allowed_decisions"] == ["approve", "edit", "reject"]
    assert approval["on_timeout"] == "reject" and approval["deadline"] > 0


def _decide(console: Console, thread_id: str, body: Any, who: str = "alice") -> Any:
    return console.client.post(
        f"/bastion/api/approvals/{thread_id}", headers=console.as_(who), json=body
    )


def _approvals_of(console: Console, run_id: str) -> list[dict[str, Any]]:
    return console.audit(kind="approval", run_id=run_id)


def test_approve_resumes_the_run_and_records_the_reviewer_and_note(console: Console) -> None:
    console.start("acme-1")
    run_id = console.values("acme-1")["run_id"]

    response = _decide(
        console, "acme-1", {"decisions": [{"type": "approve"}], "note": "loyal customer"}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["thread_id"] == "acme-1" and body["status"] == "resolved"
    assert body["run"]["run_id"] == run_id and body["run"]["status"] == "resolved"
    assert body["run"]["interventions"] == 1
    assert console.values("acme-1")["outcome"]["status"] == "resolved"
    assert console.db.all("SELECT amount FROM refunds WHERE order_id = 'ORD-1003'") == [
        {"amount": 640.0}
    ]
    [record] = _approvals_of(console, run_id)
    assert record["actor"] == "human:alice" and record["tenant"] == "acme"
    assert (
        record["detail"]["verdict"] == "allow" and "loyal customer" in record["detail"]["reasons"]
    )
    assert console.get("alice", "/bastion/api/approvals")["approvals"] == []


def test_edit_runs_the_reviewers_arguments(console: Console) -> None:
    console.start("acme-1")
    request = _approval(console, "acme-1")["requests"][0]
    edited = {**request["args"], "amount": 90}

    response = _decide(
        console,
        "acme-1",
        {
            "decisions": [
                {"type": "edit", "edited_action": {"name": "issue_refund", "args": edited}}
            ],
            "note": "partial refund agreed by phone",
        },
    )

    assert response.status_code == 200 and response.json()["status"] == "resolved", response.text
    assert console.db.all("SELECT amount FROM refunds WHERE order_id = 'ORD-1003'") == [
        {"amount": 90.0}
    ]
    [record] = _approvals_of(console, console.values("acme-1")["run_id"])
    assert record["actor"] == "human:alice"
    assert record["detail"]["args"]["amount"] == 90
    assert "partial refund agreed by phone" in record["detail"]["reasons"]


def test_reject_refunds_nothing_and_records_why(console: Console) -> None:
    console.start("acme-1")
    response = _decide(
        console,
        "acme-1",
        {
            "decisions": [{"type": "reject", "message": "we cannot refund this order"}],
            "note": "refund abuse suspected",
        },
    )
    assert response.status_code == 200, response.text
    assert console.db.all("SELECT * FROM refunds WHERE order_id = 'ORD-1003'") == []
    [record] = _approvals_of(console, console.values("acme-1")["run_id"])
    assert record["actor"] == "human:alice" and record["detail"]["verdict"] == "deny"
    assert record["detail"]["reasons"] == ["we cannot refund this order", "refund abuse suspected"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"decisions": [{"type": "maybe"}]}, "maybe"),
        ({"decisions": [{"type": "approve"}, {"type": "approve"}]}, "2 decision(s) for 1"),
        ({"decisions": []}, "decisions"),
        ({"verdict": "approve"}, "verdict"),
        (
            {"decisions": [{"type": "edit", "edited_action": {"name": "send_email", "args": {}}}]},
            "not the tool",
        ),
        ({"decisions": [{"type": "approve", "reviewer": "mallory"}]}, "mallory"),
        ([1, 2], "JSON object"),
    ],
)
def test_malformed_decisions_are_refused_and_the_run_keeps_waiting(
    console: Console, body: Any, says: str
) -> None:
    console.start("acme-1")
    error = _error(_decide(console, "acme-1", body), 400)
    assert says in error["error"], error
    assert _approval(console, "acme-1")["error"] is None  # nothing reached the run
    assert console.values("acme-1").get("outcome") is None


def test_a_body_that_is_not_json_is_refused(console: Console) -> None:
    console.start("acme-1")
    response = console.client.post(
        "/bastion/api/approvals/acme-1", headers=console.as_("alice"), content=b"{nope"
    )
    assert "not JSON" in _error(response, 400)["error"]


def test_nothing_pending_is_a_conflict(console: Console) -> None:
    console.start("acme-1")
    console.start("acme-2", text=ORDER_STATUS)  # finishes without a human
    assert console.values("acme-2")["outcome"]["status"] == "resolved"
    assert _decide(console, "acme-1", {"decisions": [{"type": "approve"}]}).status_code == 200

    again = _decide(console, "acme-1", {"decisions": [{"type": "approve"}]})
    assert "waits for no decision" in _error(again, 409)["error"]
    _error(_decide(console, "acme-2", {"decisions": [{"type": "approve"}]}), 409)
    _error(_decide(console, "no-such-thread", {"decisions": [{"type": "approve"}]}), 404)
    assert len(console.db.all("SELECT * FROM refunds WHERE order_id = 'ORD-1003'")) == 1


def test_run_control_lists_approvals_on_every_checkpointer(
    saver: BaseCheckpointSaver, tmp_path: Path
) -> None:
    for console in _console(tmp_path, saver):
        console.start("acme-1")
        console.start("acme-2", text=ORDER_STATUS)
        assert [
            a["thread_id"] for a in console.get("alice", "/bastion/api/approvals")["approvals"]
        ] == ["acme-1"]
        assert _decide(console, "acme-1", {"decisions": [{"type": "approve"}]}).status_code == 200
        assert console.get("alice", "/bastion/api/approvals")["approvals"] == []


def test_run_control_over_an_in_memory_checkpointer(tmp_path: Path) -> None:
    for console in _console(tmp_path, InMemorySaver()):
        console.start("acme-1")
        assert [
            a["thread_id"] for a in console.get("root", "/bastion/api/approvals")["approvals"]
        ] == ["acme-1"]
        response = _decide(console, "acme-1", {"decisions": [{"type": "reject", "message": "no"}]})
        assert response.status_code == 200 and response.json()["status"] == "resolved"
        assert console.get("root", "/bastion/api/approvals")["approvals"] == []


# --- kill switch --------------------------------------------------------------------------


def _kill(console: Console, who: str, scope: str, action: str = "kill") -> Any:
    return console.client.post(
        f"/bastion/api/{action}",
        headers=console.as_(who),
        json={"scope": scope, "reason": f"{action} by {who} for the test"},
    )


def test_kill_and_lift_are_audited_with_the_console_requester(console: Console) -> None:
    response = _kill(console, "alice", "tenant:acme")
    assert response.status_code == 200, response.text
    assert response.json()["kill"]["requester"] == "console:alice"
    assert not response.json()["already"]
    assert _kill(console, "alice", "tenant:acme").json()["already"]  # first record stays

    active = console.get("alice", "/bastion/api/kills")["active"]
    assert [(k["scope"], k["requester"]) for k in active] == [("tenant:acme", "console:alice")]
    assert console.get("dora", "/bastion/api/kills")["active"] == []  # not dora's tenant

    result = console.start("acme-1")  # a killed tenant's run is halted by the guard
    assert result["outcome"]["status"] == "halted"

    lifted = _kill(console, "alice", "tenant:acme", action="lift")
    assert lifted.status_code == 200 and lifted.json()["lifted"]["scope"] == "tenant:acme"
    _error(_kill(console, "alice", "tenant:acme", action="lift"), 409)

    records = [r for r in console.audit() if r["kind"] in ("kill", "lift")]
    assert [(r["kind"], r["actor"], r["subject"], r["tenant"]) for r in records] == [
        ("kill", "console:alice", "tenant:acme", "acme"),
        ("lift", "console:alice", "tenant:acme", "acme"),
    ]
    assert records[0]["detail"]["reason"] == "kill by alice for the test"
    history = console.get("alice", "/bastion/api/kills")["history"]
    assert [e["event"] for e in history] == ["lift", "kill"]


def test_kills_beyond_a_keys_tenants_are_forbidden(console: Console) -> None:
    assert "admin" in _error(_kill(console, "alice", "global"), 403)["hint"]
    assert "admin" in _error(_kill(console, "ops", "global"), 403)["hint"]  # `*` is not admin
    _error(_kill(console, "alice", "tenant:demo"), 403)
    _error(_kill(console, "alice", "workflow:support"), 403)
    assert _kill(console, "ops", "workflow:support").status_code == 200
    assert _kill(console, "root", "global").status_code == 200
    assert console.services.kill_switch.active()[0].requester == "console:root"
    assert [k.name for k in console.store.list()] == ["alice", "dora", "root", "ops"]

    console.services.kill_switch.lift(
        console.services.kill_switch.active()[0].scope, requester="test", reason="cleanup"
    )
    console.start("acme-1")
    run_id = console.values("acme-1")["run_id"]
    _error(_kill(console, "dora", f"run:{run_id}"), 404)  # another tenant's run: unknown to her
    assert _kill(console, "alice", f"run:{run_id}").status_code == 200
    [record] = [r for r in console.audit(kind="kill") if r["subject"] == f"run:{run_id}"]
    assert record["run_id"] == run_id and record["tenant"] == "acme"


@pytest.mark.parametrize(
    "body",
    [
        {"scope": "planet:earth", "reason": "x"},
        {"scope": "tenant:acme"},
        {"scope": "tenant:acme", "reason": " "},
    ],
)
def test_malformed_kills_are_refused(console: Console, body: dict[str, Any]) -> None:
    response = console.client.post("/bastion/api/kill", headers=console.as_("alice"), json=body)
    assert '"scope"' in _error(response, 400)["hint"]
    assert console.services.kill_switch.active() == []


# --- audit, KPIs, metrics, feedback -------------------------------------------------------


def test_audit_records_are_scoped_filtered_and_paged(console: Console) -> None:
    console.start("acme-1", tenant="acme")
    console.start("demo-1", tenant="demo")
    assert {r["tenant"] for r in console.get("alice", "/bastion/api/audit")["records"]} == {"acme"}
    everything = console.get("root", "/bastion/api/audit")["records"]
    assert {r["tenant"] for r in everything} == {"acme", "demo"}
    seqs = [r["seq"] for r in everything]
    assert seqs == sorted(seqs)
    page = console.get("root", f"/bastion/api/audit?after={seqs[0]}&limit=1")["records"]
    assert [r["seq"] for r in page] == [seqs[1]]
    decisions = console.get("alice", "/bastion/api/audit?kind=decision")["records"]
    assert decisions and {r["kind"] for r in decisions} == {"decision"}
    run_id = console.values("acme-1")["run_id"]
    of_run = console.get("root", f"/bastion/api/audit?run_id={run_id}")["records"]
    assert of_run and {r["run_id"] for r in of_run} == {run_id}
    _error(console.client.get("/bastion/api/audit?kind=gossip", headers=console.as_("alice")), 400)
    _error(console.client.get("/bastion/api/audit?limit=x", headers=console.as_("alice")), 400)


def test_verify_is_admin_only_and_finds_tampering(console: Console) -> None:
    console.start("acme-1")
    _error(console.client.get("/bastion/api/audit/verify", headers=console.as_("alice")), 403)
    _error(console.client.get("/bastion/api/audit/verify", headers=console.as_("ops")), 403)
    report = console.get("root", "/bastion/api/audit/verify")
    assert report["ok"] and report["records"] >= 2
    console.services.audit.raw[1]["detail"]["reasons"] = ["forged"]  # type: ignore[attr-defined]
    report = console.get("root", "/bastion/api/audit/verify")
    assert not report["ok"] and report["problems"][0]["seq"] == 2
    assert report["problems"][0]["kind"] == "altered"


def test_audit_export_downloads_the_keys_records(console: Console) -> None:
    console.start("acme-1", tenant="acme")
    console.start("demo-1", tenant="demo")
    response = console.client.get("/bastion/api/audit/export", headers=console.as_("alice"))
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines and {r["tenant"] for r in lines} == {"acme"}
    full = console.client.get("/bastion/api/audit/export?format=jsonl", headers=console.as_("root"))
    assert len(full.text.splitlines()) == len(console.audit(limit=10_000))
    report = console.client.get(
        "/bastion/api/audit/export?format=report", headers=console.as_("alice")
    )
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/markdown")
    acme_run, demo_run = console.values("acme-1")["run_id"], console.values("demo-1")["run_id"]
    assert acme_run in report.text and demo_run not in report.text
    bad = console.client.get("/bastion/api/audit/export?format=pdf", headers=console.as_("alice"))
    assert "jsonl" in _error(bad, 400)["hint"]


def test_kpis_cover_the_keys_tenants(console: Console) -> None:
    console.start("acme-1", tenant="acme")
    console.start("acme-2", tenant="acme", text=ORDER_STATUS)
    console.start("demo-1", tenant="demo", text=ORDER_STATUS)
    kpis = console.get("alice", "/bastion/api/kpis")
    assert kpis["runs_total"] == 2 and kpis["finished_runs"] == 1
    assert kpis["autonomy_rate"] == 1.0
    assert console.get("root", "/bastion/api/kpis")["runs_total"] == 3


_SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
    r"(-?[0-9.e+-]+|NaN|[+-]Inf)$"
)


def test_metrics_are_prometheus_text(console: Console) -> None:
    console.start("acme-1")
    _decide(console, "acme-1", {"decisions": [{"type": "approve"}]})
    response = console.client.get("/bastion/metrics", headers=console.as_("alice"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$", line), line
            continue
        assert _SAMPLE.match(line), f"not a sample line: {line!r}"
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    assert samples['bastion_runs_total{status="resolved"}'] == 1
    assert any(name.startswith("bastion_tracer_") for name in samples)


def test_feedback_is_kept_in_the_audit_log(console: Console) -> None:
    console.start("acme-1")
    approval = _approval(console, "acme-1")
    run_id, decision_id = approval["run_id"], approval["requests"][0]["decision_id"]
    body = {
        "run_id": run_id,
        "decision_id": decision_id,
        "correction": {"args": {"amount": 320}},
        "rationale": "half is what policy allows for wobbly desks",
    }
    response = console.client.post("/bastion/api/feedback", headers=console.as_("alice"), json=body)
    assert response.status_code == 201, response.text
    record = response.json()["record"]
    assert record["kind"] == "feedback" and record["actor"] == "human:alice"
    assert record["tenant"] == "acme" and record["run_id"] == run_id
    assert record["detail"]["correction"] == {"args": {"amount": 320}}
    assert record["detail"]["context"]["tool"] == "issue_refund"
    assert console.audit(kind="feedback") == [record]

    other = console.client.post("/bastion/api/feedback", headers=console.as_("dora"), json=body)
    _error(other, 404)
    wrong = {**body, "decision_id": "dec_nope"}
    _error(
        console.client.post("/bastion/api/feedback", headers=console.as_("alice"), json=wrong), 404
    )
    _error(
        console.client.post(
            "/bastion/api/feedback", headers=console.as_("alice"), json={"run_id": run_id}
        ),
        400,
    )


# --- deadlines ----------------------------------------------------------------------------


async def _sweep(console: Console, now: float) -> list[Any]:
    return await sweep_overdue(console.control, console.services.audit, now=now)


def test_an_overdue_approval_takes_its_default_action_on_record(console: Console) -> None:
    import asyncio

    console.start("acme-1")
    console.start("demo-1", tenant="demo")
    approval = _approval(console, "acme-1")
    deadline = approval["deadline"]

    assert asyncio.run(_sweep(console, deadline - 1)) == []  # not yet
    assert console.values("acme-1").get("outcome") is None

    done = asyncio.run(_sweep(console, deadline + 90))

    assert sorted(t.thread_id for t in done) == ["acme-1", "demo-1"]
    [timed_out] = [t for t in done if t.thread_id == "acme-1"]
    assert timed_out.action == "reject" and timed_out.status == "resolved"
    assert timed_out.decision_ids == (approval["requests"][0]["decision_id"],)
    assert console.db.all("SELECT * FROM refunds WHERE order_id = 'ORD-1003'") == []
    assert console.get("root", "/bastion/api/approvals")["approvals"] == []

    [record] = [r for r in console.audit(kind="approval_timeout") if r["subject"] == "acme-1"]
    assert record["actor"] == DEADLINE_ACTOR and record["tenant"] == "acme"
    assert record["run_id"] == approval["run_id"]
    assert record["detail"]["action"] == "reject" and record["detail"]["deadline"] == deadline
    assert record["detail"]["decision_ids"] == [approval["requests"][0]["decision_id"]]
    [decided] = [  # the graph's own record of the decision (its kind is the graph's call)
        r
        for r in console.audit(run_id=approval["run_id"])
        if r["actor"].endswith(DEADLINE_ACTOR) and r["kind"] in ("approval", "decision")
    ]
    assert decided["detail"]["verdict"] == "deny"
    assert any("deadline passed 90s ago" in r for r in decided["detail"]["reasons"])

    assert asyncio.run(_sweep(console, deadline + 90)) == []  # nothing left to time out


def test_the_sweep_interval_comes_from_the_environment() -> None:
    assert sweep_interval({}) == 30.0
    assert sweep_interval({"BASTION_APPROVAL_SWEEP_S": "0"}) == 0.0
    assert sweep_interval({"BASTION_APPROVAL_SWEEP_S": "2.5"}) == 2.5
    for bad in ("-1", "soon", "inf"):
        with pytest.raises(ValueError, match="BASTION_APPROVAL_SWEEP_S"):
            sweep_interval({"BASTION_APPROVAL_SWEEP_S": bad})
