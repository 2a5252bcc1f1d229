"""The support example: tickets take different paths and leave real, countable rows."""

from __future__ import annotations

import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from console import run_to_end
from graphs.support import (
    SUPPORT_WORKFLOW,
    SupportDB,
    build_support_graph,
    format_ticket,
    make_support_tools,
    parse_ticket,
    scripted_review,
)
from tools import ExecutionGateway, ToolInvocation, ToolRegistry

TICKETS = {
    t["id"]: t
    for t in json.loads(
        (Path(__file__).parents[1] / "graphs/support/data/tickets.json").read_text()
    )
}


@pytest.fixture
def db(tmp_path: Path) -> SupportDB:
    return SupportDB(tmp_path / "support.sqlite")


def handle(db: SupportDB, ticket_id: str, reviewer: Any = scripted_review):
    ticket = TICKETS[ticket_id]
    graph = build_support_graph(db).compile(checkpointer=InMemorySaver())
    return run_to_end(
        graph,
        format_ticket(ticket["from"], ticket["subject"], ticket["body"]),
        thread_id=ticket_id,
        tenant="acme",
        reviewer=reviewer,
        write_tools=SUPPORT_WORKFLOW.write_tools,
    )


def test_ships_about_twenty_tickets() -> None:
    assert 18 <= len(TICKETS) <= 25


def test_order_lookup_sends_a_status_reply(db: SupportDB) -> None:
    report = handle(db, "T01")
    assert report.status == "resolved" and report.routes == ("triage", "orders", "communications")
    [email] = db.all("SELECT * FROM outbound_emails")
    assert email["status"] == "sent" and "ORD-1001 is shipped" in email["body"]


def test_small_refund_runs_without_a_human(db: SupportDB) -> None:
    report = handle(db, "T02", reviewer=lambda payload: pytest.fail("no approval expected"))
    assert report.status == "resolved" and report.approvals == 0
    assert db.all("SELECT order_id, amount FROM refunds") == [
        {"order_id": "ORD-1002", "amount": 45.0}
    ]


def test_large_refund_waits_for_approval_then_runs(db: SupportDB) -> None:
    seen: list[dict[str, Any]] = []
    report = handle(db, "T03", reviewer=lambda p: seen.append(p) or scripted_review(p))
    assert report.approvals == 1 and seen[0]["action_requests"][0]["args"]["amount"] == 640
    assert db.all("SELECT amount FROM refunds") == [{"amount": 640.0}]


def test_reviewer_edit_and_reject_are_honoured(db: SupportDB) -> None:
    handle(db, "T13")  # a delay: the scripted reviewer halves it
    assert db.all("SELECT order_id, amount FROM refunds") == [
        {"order_id": "ORD-1007", "amount": 150.0}
    ]
    report = handle(db, "T05")  # over the finance limit: rejected
    assert report.verdicts["deny"] == 1 and len(db.all("SELECT * FROM refunds")) == 1
    assert (
        "closer look"
        in db.all("SELECT body FROM outbound_emails WHERE to_addr = 'emma@example.com'")[0]["body"]
    )


def test_cancel_changes_the_order_and_shipped_orders_cannot_be_cancelled(db: SupportDB) -> None:
    handle(db, "T04")
    assert db.one("SELECT status FROM orders WHERE id = 'ORD-1004'") == {"status": "cancelled"}
    handle(db, "T06")
    assert db.one("SELECT status FROM orders WHERE id = 'ORD-1006'") == {"status": "shipped"}


def test_unknown_order_and_unknown_customer_get_helpful_replies(db: SupportDB) -> None:
    handle(db, "T08")
    handle(db, "T09")
    bodies = {r["to_addr"]: r["body"] for r in db.all("SELECT * FROM outbound_emails")}
    assert "could not find order ORD-9999" in bodies["bob@example.com"]
    assert "could not find an account" in bodies["zoe@example.net"]
    assert db.all("SELECT * FROM refunds") == [], "no refund for an unknown customer"


def test_refund_above_what_was_paid_is_refused_by_the_tool(db: SupportDB) -> None:
    handle(db, "T11")
    assert db.all("SELECT * FROM refunds") == []


def test_empty_ticket_rejected_and_runaway_ticket_halted(db: SupportDB) -> None:
    assert handle(db, "T15").status == "rejected"
    runaway = handle(db, "T16")
    assert runaway.status == "halted" and "money cap reached" in runaway.reason
    cap = SUPPORT_WORKFLOW.limits.max_usd
    assert cap is not None and runaway.cost_usd > cap * 0.8, "it ran up to the cap"
    assert runaway.summary.startswith("Stopped after") and "get_order x1" in runaway.summary


def test_ticket_parsing() -> None:
    ticket = parse_ticket(format_ticket("a@b.co", "Hi", "Refund $12.50 for ORD-1234 please"))
    assert (ticket.sender, ticket.order_id, ticket.amount, ticket.intent) == (
        "a@b.co",
        "ORD-1234",
        12.5,
        "refund",
    )


@pytest.mark.parametrize(
    "tool, args",
    [
        ("issue_refund", {"order_id": "ORD-1003", "amount": 40.0, "reason": "scratched"}),
        ("cancel_order", {"order_id": "ORD-1004", "reason": "wrong item"}),
        ("draft_email", {"to": "a@example.com", "subject": "Re: x", "body": "hello"}),
    ],
)
def test_concurrent_identical_calls_make_one_effect_and_all_succeed(
    db: SupportDB, tool: str, args: dict[str, Any]
) -> None:
    """Eight threads, each with its own SQLite connection, run the same call at once: one
    writes, the others get its result back as a replay (none sees a constraint error)."""
    gateway = ExecutionGateway(ToolRegistry(make_support_tools(db)))
    start = threading.Barrier(8)

    def attempt(index: int) -> Any:
        start.wait()
        return gateway.execute(
            ToolInvocation(
                tool=tool, args=args, call_id=f"c{index}", tenant="acme", thread_id="t", agent="a"
            )
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert all(r.ok for r in results), [r.content for r in results if not r.ok]
    replays = [json.loads(r.content)["replayed"] for r in results]
    assert replays.count(False) == 1 and replays.count(True) == 7
    counts = db.counts()
    assert counts["refunds"] + counts["order_events"] + counts["outbound_emails"] == 1


def test_effect_holds_the_write_lock_while_checking_for_an_earlier_attempt(
    db: SupportDB,
) -> None:
    """The replay check and the write are one locked step: while a worker is between them, no
    other connection can start writing (so it cannot slip in the same effect)."""
    with db.effect("refunds", "idem_x") as (_, earlier):
        assert earlier is None
        other = sqlite3.connect(db.path, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()


def test_effect_refuses_tables_that_record_no_effects(db: SupportDB) -> None:
    with pytest.raises(ValueError, match="effect tables"), db.effect("customers", "k"):
        pass
