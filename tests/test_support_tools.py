"""The support tools' contracts: typed outputs, documented errors, rollbacks, simulations and
the migration of a database made by the first schema."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graphs.support import SupportDB, build_support_graph, format_ticket, scripted_review
from graphs.support.schema import (
    SIMULATED_DRAFT_ID,
    CancelReceipt,
    DraftReceipt,
    RefundReceipt,
)
from graphs.support.tools import make_support_tools
from nodes import RunContext
from tools import (
    ExecutionGateway,
    ToolContext,
    ToolError,
    ToolInvocation,
    ToolRegistry,
    ToolResult,
    ToolSpec,
)
from tools.undo import undo_run

TENANT = "acme"
REFUND = {"order_id": "ORD-1003", "amount": 40.0, "reason": "scratched top"}
CANCEL = {"order_id": "ORD-1004", "reason": "wrong item"}
DRAFT = {"to": "carla@example.com", "subject": "Re: desk", "body": "Hello"}


class Desk:
    """The support tools behind a gateway, over a fresh business database."""

    def __init__(self, path: Path) -> None:
        self.db = SupportDB(path)
        self.specs = {spec.name: spec for spec in make_support_tools(self.db)}
        self.gateway = ExecutionGateway(ToolRegistry(self.specs.values()))
        self.calls = 0

    def call(self, tool: str, run_id: str = "run-1", shadow: bool = False, **args: Any):
        self.calls += 1
        return self.gateway.execute(
            ToolInvocation(
                tool=tool,
                args=args,
                call_id=f"c{self.calls}",
                tenant=TENANT,
                thread_id=f"thread-{run_id}",
                agent="agent",
                run_id=run_id,
                shadow=shadow,
            )
        )

    def ok(self, tool: str, run_id: str = "run-1", shadow: bool = False, **args: Any) -> Any:
        """The call's output, checked against the tool's output model."""
        result = self.call(tool, run_id, shadow, **args)
        assert result.ok, result.content
        model = self.specs[tool].output_model
        assert model is not None, f"`{tool}` has no output model"
        output = json.loads(result.content)
        assert set(output) == set(model.model_fields), "the output is exactly the model"
        return model.model_validate(output)

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        tables = ("orders", "refunds", "order_events", "outbound_emails")
        return {t: self.db.all(f"SELECT * FROM {t} ORDER BY rowid") for t in tables}


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    return Desk(tmp_path / "support.sqlite")


def test_every_tool_has_a_full_contract(desk: Desk) -> None:
    for spec in desk.specs.values():
        assert spec.output_model is not None and spec.timeout_s is not None, spec.name
        assert spec.scopes and spec.errors, spec.name
        if spec.side_effect != "none":
            assert spec.idempotent and spec.simulate is not None, spec.name
    reversible = {n for n, s in desk.specs.items() if s.side_effect == "reversible"}
    assert reversible == {"cancel_order", "issue_refund", "draft_email"}
    assert desk.specs["send_email"].side_effect == "irreversible"
    assert desk.specs["issue_refund"].zone_for({"amount": 1000.5}) == "red"


def test_each_tool_returns_its_output_model(desk: Desk) -> None:
    customer = desk.ok("lookup_customer", email="Carla@Example.com")
    assert customer.name == "Carla Diaz" and "ORD-1003" in customer.orders
    order = desk.ok("get_order", order_id="ORD-1003")
    assert (order.status, order.amount, order.refunded) == ("delivered", 640.0, 0.0)
    assert desk.ok("get_invoice", order_id="ORD-1003").id == "INV-1003"
    refund = desk.ok("issue_refund", **REFUND)
    assert refund.refund_id > 0 and not refund.simulated
    assert desk.ok("get_order", order_id="ORD-1003").refunded == 40.0
    cancel = desk.ok("cancel_order", **CANCEL)
    assert (cancel.previous_status, cancel.status) == ("processing", "cancelled")
    draft = desk.ok("draft_email", **DRAFT)
    sent = desk.ok("send_email", draft_id=draft.draft_id)
    assert (sent.to, sent.status, sent.replayed) == ("carla@example.com", "sent", False)


def _raised(spec: ToolSpec, action: Callable[[], Any]) -> str:
    with pytest.raises(ToolError) as caught:
        action()
    code = caught.value.code
    assert code in spec.errors, f"`{spec.name}` raised undocumented code {code!r}"
    return code


def _rollback(desk: Desk, tool: str, output: Any, key: str = "undo:test") -> Any:
    spec = desk.specs[tool]
    assert spec.rollback is not None
    ctx = ToolContext(tenant=TENANT, thread_id="t", agent="undo", call_id="u", idempotency_key=key)
    return spec.rollback(spec.input_model.model_construct(), output, ctx)


def test_every_documented_error_happens_and_every_error_is_documented(desk: Desk) -> None:
    raised: set[tuple[str, str]] = set()

    def failing(tool: str, **args: Any) -> None:
        result = desk.call(tool, run_id="errors", **args)
        assert not result.ok and result.error_kind == "tool_error", result.content
        assert result.error_code in desk.specs[tool].errors, result.content
        raised.add((tool, result.error_code))

    failing("lookup_customer", email="nobody@example.com")
    failing("get_order", order_id="ORD-9999")
    failing("get_invoice", order_id="ORD-9999")
    with sqlite3.connect(desk.db.path) as conn:
        conn.execute("DELETE FROM invoices WHERE order_id = 'ORD-1010'")
    failing("get_invoice", order_id="ORD-1010")
    failing("cancel_order", order_id="ORD-9999", reason="wrong item")
    failing("cancel_order", order_id="ORD-1006", reason="wrong item")
    failing("issue_refund", order_id="ORD-9999", amount=1.0, reason="why")
    failing("issue_refund", order_id="ORD-1002", amount=45.01, reason="why")
    failing("send_email", draft_id=12345)
    draft = desk.ok("draft_email", **DRAFT)
    _rollback(desk, "draft_email", draft)
    failing("send_email", draft_id=draft.draft_id)  # voided

    for tool, output in [
        ("cancel_order", CancelReceipt(order_id="ORD-1001", previous_status="x", event_id=1)),
        ("issue_refund", RefundReceipt(refund_id=77, order_id="ORD-1001", amount=1.0)),
        ("draft_email", DraftReceipt(draft_id=77)),
    ]:
        spec = desk.specs[tool]
        raised.add((tool, _raised(spec, lambda t=tool, o=output: _rollback(desk, t, o))))
    sent = desk.ok("draft_email", **{**DRAFT, "subject": "Re: other"})
    desk.ok("send_email", draft_id=sent.draft_id)
    spec = desk.specs["draft_email"]
    raised.add(("draft_email", _raised(spec, lambda: _rollback(desk, "draft_email", sent))))

    documented = {(s.name, code) for s in desk.specs.values() for code in s.errors}
    assert raised == documented


def test_undo_reverses_a_refund_and_restores_the_refundable_amount(desk: Desk) -> None:
    paid = {**REFUND, "amount": 640.0}
    refund = desk.ok("issue_refund", run_id="refund-run", **paid)
    assert desk.call("issue_refund", run_id="other", **{**paid, "amount": 1.0}).error_code == (
        "exceeds_refundable"
    )
    report = undo_run(desk.gateway, "refund-run", by="ops", reason="customer kept it")
    assert report.ok and [e.status for e in report.entries] == ["undone"]
    row = desk.db.one("SELECT * FROM refunds WHERE id = ?", refund.refund_id)
    assert row is not None and row["status"] == "reversed" and row["reversed_at"]
    assert row["reversal_key"] == f"undo:{report.entries[0].key}"
    assert desk.ok("get_order", order_id="ORD-1003").refunded == 0.0
    assert desk.ok("issue_refund", run_id="again", **{**paid, "reason": "second try"}).amount == 640
    again = undo_run(desk.gateway, "refund-run", by="ops", reason="twice")
    assert [e.status for e in again.entries] == ["already_undone"]


def test_reversing_a_reversed_refund_changes_nothing(desk: Desk) -> None:
    refund = desk.ok("issue_refund", **REFUND)
    assert _rollback(desk, "issue_refund", refund, "undo:1")["was"] == "issued"
    assert _rollback(desk, "issue_refund", refund, "undo:2")["was"] == "reversed"
    row = desk.db.one("SELECT reversal_key FROM refunds WHERE id = ?", refund.refund_id)
    assert row == {"reversal_key": "undo:1"}


def test_undo_restores_a_cancelled_order_unless_it_moved_on(desk: Desk) -> None:
    desk.ok("cancel_order", run_id="cancel-run", **CANCEL)
    report = undo_run(desk.gateway, "cancel-run", by="ops", reason="mistake")
    assert report.ok
    assert desk.db.one("SELECT status FROM orders WHERE id = 'ORD-1004'") == {
        "status": "processing"
    }
    events = desk.db.all("SELECT event, previous_status FROM order_events ORDER BY id")
    assert events == [
        {"event": "cancelled", "previous_status": "processing"},
        {"event": "uncancelled", "previous_status": "cancelled"},
    ]
    desk.ok("cancel_order", run_id="late", order_id="ORD-1008", reason="changed my mind")
    with sqlite3.connect(desk.db.path) as conn:
        conn.execute("UPDATE orders SET status = 'shipped' WHERE id = 'ORD-1008'")
    late = undo_run(desk.gateway, "late", by="ops", reason="mistake")
    assert late.ok and late.entries[0].status == "refused"
    assert "changed after it was cancelled (now shipped)" in late.entries[0].detail
    assert desk.db.one("SELECT status FROM orders WHERE id = 'ORD-1008'") == {"status": "shipped"}


def test_undo_voids_a_draft_and_reports_a_sent_email_as_not_reversible(desk: Desk) -> None:
    draft = desk.ok("draft_email", run_id="draft-run", **DRAFT)
    assert undo_run(desk.gateway, "draft-run", by="ops", reason="wrong").ok
    row = desk.db.one("SELECT status, void_key FROM outbound_emails WHERE id = ?", draft.draft_id)
    assert row is not None and row["status"] == "voided" and row["void_key"].startswith("undo:")

    sent = desk.ok("draft_email", run_id="sent-run", **{**DRAFT, "subject": "Re: sent"})
    desk.ok("send_email", run_id="sent-run", draft_id=sent.draft_id)
    report = undo_run(desk.gateway, "sent-run", by="ops", reason="too late")
    assert [(e.tool, e.status) for e in report.entries] == [
        ("send_email", "not_reversible"),
        ("draft_email", "refused"),
    ]
    assert "already sent; cannot unsend" in report.entries[1].detail
    assert desk.db.one("SELECT status FROM outbound_emails WHERE id = ?", sent.draft_id) == {
        "status": "sent"
    }


def test_simulations_write_nothing_yet_return_valid_outputs(desk: Desk) -> None:
    before, counts = desk.rows(), desk.db.counts()
    refund = desk.ok("issue_refund", shadow=True, **REFUND)
    assert refund.simulated and refund.refund_id == 0
    cancel = desk.ok("cancel_order", shadow=True, **CANCEL)
    assert cancel.simulated and cancel.previous_status == "processing"
    draft = desk.ok("draft_email", shadow=True, **DRAFT)
    assert draft.simulated and draft.draft_id == SIMULATED_DRAFT_ID
    sent = desk.ok("send_email", shadow=True, draft_id=draft.draft_id)
    assert sent.simulated
    too_much = desk.call("issue_refund", shadow=True, **{**REFUND, "amount": 641.0})
    shipped = desk.call("cancel_order", shadow=True, order_id="ORD-1006", reason="wrong item")
    assert (too_much.error_code, shipped.error_code) == ("exceeds_refundable", "not_cancellable")
    assert desk.db.counts() == counts and desk.rows() == before
    assert undo_run(desk.gateway, "run-1", by="ops", reason="shadow").entries == ()


def test_a_real_draft_can_be_sent_in_simulation(desk: Desk) -> None:
    draft = desk.ok("draft_email", **DRAFT)
    before = desk.rows()
    sent = desk.ok("send_email", shadow=True, draft_id=draft.draft_id)
    assert (sent.to, sent.simulated) == ("carla@example.com", True)
    assert desk.rows() == before


def _run_shadow(graph: Any, text: str, thread: str) -> dict[str, Any]:
    config: Any = {"configurable": {"thread_id": thread, "shadow": True}}
    context = RunContext(tenant=TENANT)
    result = graph.invoke({"messages": [("user", text)]}, config, context=context)
    while result.get("__interrupt__"):
        review = scripted_review(result["__interrupt__"][0].value)
        result = graph.invoke(Command(resume=review), config, context=context)
    return dict(result)


def test_the_scripted_model_finishes_a_refund_ticket_on_simulated_outputs(desk: Desk) -> None:
    graph = build_support_graph(desk.db).compile(checkpointer=InMemorySaver())
    text = format_ticket("carla@example.com", "Desk", "Refund $40 on ORD-1003, it is scratched.")
    before = desk.rows()
    result = _run_shadow(graph, text, "shadow-1")
    assert (result.get("outcome") or {}).get("status") == "resolved"
    ran = {m.name: m for m in result["messages"] if isinstance(m, ToolMessage)}
    assert {"issue_refund", "draft_email", "send_email"} <= set(ran)
    for name in ("issue_refund", "draft_email", "send_email"):
        assert json.loads(str(ran[name].content))["simulated"] is True, ran[name].content
    assert desk.rows() == before, "shadow mode wrote nothing"


def test_a_database_made_by_the_first_schema_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(FIRST_SCHEMA)
        conn.execute("INSERT INTO customers VALUES ('C-001', 'Alice', 'alice@example.com', 'gold')")
        conn.execute(
            "INSERT INTO orders VALUES ('ORD-1001', 'C-001', 'Desk', 100.0, 'processing', "
            "'2026-01-01', '')"
        )
        conn.execute("INSERT INTO invoices VALUES ('INV-1001', 'ORD-1001', 100.0, 'paid')")
        conn.execute(
            "INSERT INTO refunds (order_id, amount, reason, idempotency_key) "
            "VALUES ('ORD-1001', 30.0, 'old', 'idem_old')"
        )
        conn.execute(
            "INSERT INTO outbound_emails (to_addr, subject, body, status, idempotency_key) "
            "VALUES ('alice@example.com', 'Hi', 'Body', 'sent', 'idem_mail')"
        )
    desk = Desk(path)
    Desk(path)  # opening an up-to-date database again changes nothing
    assert desk.db.counts()["customers"] == 1, "an existing database is not seeded again"
    assert desk.db.one("SELECT status FROM refunds") == {"status": "issued"}
    assert desk.ok("get_order", order_id="ORD-1001").refunded == 30.0
    refund = desk.ok("issue_refund", run_id="r", order_id="ORD-1001", amount=70.0, reason="all")
    assert undo_run(desk.gateway, "r", by="ops", reason="test").ok
    assert desk.db.one("SELECT status FROM refunds WHERE id = ?", refund.refund_id) == {
        "status": "reversed"
    }
    draft = desk.ok("draft_email", run_id="d", **DRAFT)
    assert undo_run(desk.gateway, "d", by="ops", reason="test").ok, "'voided' is allowed now"
    assert desk.db.one("SELECT to_addr, status FROM outbound_emails WHERE id = 1") == {
        "to_addr": "alice@example.com",
        "status": "sent",
    }
    assert draft.draft_id == 2


def test_identical_calls_through_separate_ledgers_make_one_effect_in_the_database(
    desk: Desk,
) -> None:
    """Two gateways that share no ledger (say, a demo run again) still make one effect: the
    database dedupes on the idempotency key and says the result was replayed."""
    other = ExecutionGateway(ToolRegistry(desk.specs.values()))
    results: list[ToolResult] = []
    for gateway in (desk.gateway, other):
        desk.gateway = gateway
        for tool, args in (
            ("issue_refund", REFUND),
            ("cancel_order", CANCEL),
            ("draft_email", DRAFT),
        ):
            results.append(desk.call(tool, **args))
    assert all(r.ok and not r.replayed for r in results)
    assert [json.loads(r.content)["replayed"] for r in results] == [False] * 3 + [True] * 3
    counts = desk.db.counts()
    assert (counts["refunds"], counts["order_events"], counts["outbound_emails"]) == (1, 1, 1)


FIRST_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, tier TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id), item TEXT NOT NULL,
    amount REAL NOT NULL, status TEXT NOT NULL, placed_at TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS invoices (
    id TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id), amount REAL NOT NULL,
    status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (
    id INTEGER PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id), amount REAL NOT NULL,
    reason TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS order_events (
    id INTEGER PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id), event TEXT NOT NULL,
    detail TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS outbound_emails (
    id INTEGER PRIMARY KEY, to_addr TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'sent')), idempotency_key TEXT NOT NULL UNIQUE,
    send_key TEXT UNIQUE, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""
"""The schema before refunds could be reversed and drafts voided (as `make demo` left it)."""
