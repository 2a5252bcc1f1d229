"""The support example's tools, each with a full contract, over the business database."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from functools import partial
from typing import Annotated, Any

from pydantic import BaseModel, Field

from graphs.support.db import SupportDB
from graphs.support.preferences import make_preference_tool
from graphs.support.schema import (
    SIMULATED_DRAFT_ID,
    CancelReceipt,
    Cents,
    CustomerRecord,
    DraftId,
    DraftReceipt,
    Email,
    InvoiceRecord,
    OrderId,
    OrderRecord,
    Reason,
    RefundReceipt,
    SendReceipt,
    Subject,
)
from memory import VersionedMemory
from tools import RiskZone, ToolContext, ToolError, ToolSpec, tool_contract

__all__ = ["REFUND_RED_ZONE", "make_support_tools"]

REFUND_RED_ZONE = 1000.0
"""Refunds above this many dollars are in the red zone for every tenant (a human, always).
Below it, each tenant's limit lives in the policy bundle (`policies/refunds.rego`)."""
READ = "support:read"
NOT_FOUND = {"not_found": "no order has this number"}
contract = partial(tool_contract, timeout_s=5.0)
"""`@tool_contract` with the latency budget every support tool keeps."""


def refund_zone(args: Mapping[str, Any]) -> RiskZone:
    """Refunds are yellow (run, flagged); very large ones red (need approval)."""
    return "yellow" if float(args.get("amount", 0)) <= REFUND_RED_ZONE else "red"


def _order(conn: sqlite3.Connection, order_id: str, columns: str = "*") -> sqlite3.Row:
    order = conn.execute(f"SELECT {columns} FROM orders WHERE id = ?", (order_id,)).fetchone()
    if order is None:
        raise ToolError(
            f"order `{order_id}` not found; ask the customer to check the number", code="not_found"
        )
    return order  # type: ignore[no-any-return]


def _check_refund(conn: sqlite3.Connection, order_id: str, amount: float) -> None:
    paid = _order(conn, order_id, "amount")["amount"]
    refunded = SupportDB.refunded(conn, order_id)
    refundable = round(paid - refunded, 2)
    if amount > refundable:
        raise ToolError(
            f"refund of ${amount:.2f} exceeds the refundable ${refundable:.2f} on `{order_id}` "
            f"(paid ${paid:.2f}, refunded ${refunded:.2f}); refund at most ${refundable:.2f}",
            code="exceeds_refundable",
        )


def _cancellable(conn: sqlite3.Connection, order_id: str) -> str:
    status = str(_order(conn, order_id, "status")["status"])
    if status != "processing":
        raise ToolError(
            f"order `{order_id}` is already {status} and cannot be cancelled; offer a return",
            code="not_cancellable",
        )
    return status


def make_support_tools(db: SupportDB, memory: VersionedMemory | None = None) -> list[ToolSpec]:
    """The support tools bound to `db`, in the order the model is shown them; with `memory`,
    also `remember_preference`, which writes customer preferences there."""
    lookup_customer, get_order, get_invoice = _read_tools(db)
    remember = [make_preference_tool(memory)] if memory is not None else []
    return [
        lookup_customer,
        *remember,
        get_order,
        _cancel_tool(db),
        get_invoice,
        _refund_tool(db),
        *_email_tools(db),
    ]


def _read_tools(db: SupportDB) -> list[ToolSpec]:
    @contract(scopes=[READ], errors={"not_found": "no customer has this email"})
    def lookup_customer(email: Email) -> CustomerRecord:
        """Find a customer by email address, with their order numbers."""
        customer = db.one("SELECT * FROM customers WHERE email = ?", email.lower())
        if customer is None:
            raise ToolError(
                f"no customer with email `{email}`; ask them for their account email",
                code="not_found",
            )
        orders = db.all("SELECT id FROM orders WHERE customer_id = ? ORDER BY id", customer["id"])
        return CustomerRecord(**customer, orders=[o["id"] for o in orders])

    @contract(scopes=[READ], errors=NOT_FOUND)
    def get_order(order_id: OrderId) -> OrderRecord:
        """Look up an order: item, amount, status and refunds so far."""
        with db.connect() as conn:
            return OrderRecord(**_order(conn, order_id), refunded=db.refunded(conn, order_id))

    @contract(
        scopes=[READ],
        errors={**NOT_FOUND, "no_invoice": "the order has no invoice yet"},
    )
    def get_invoice(order_id: OrderId) -> InvoiceRecord:
        """Look up the invoice of an order."""
        with db.connect() as conn:
            _order(conn, order_id, "id")
            invoice = conn.execute(
                "SELECT * FROM invoices WHERE order_id = ?", (order_id,)
            ).fetchone()
        if invoice is None:
            raise ToolError(f"order `{order_id}` has no invoice yet", code="no_invoice")
        return InvoiceRecord(**invoice)

    return [lookup_customer, get_order, get_invoice]


def _cancel_tool(db: SupportDB) -> ToolSpec:
    def uncancel(args: BaseModel, output: CancelReceipt, ctx: ToolContext) -> dict[str, Any]:
        restore, key = output.previous_status, ctx.idempotency_key
        blocked = db.uncancel(output.order_id, output.event_id, restore, key)
        if blocked is not None:
            raise ToolError(
                f"order `{output.order_id}` changed after it was cancelled (now {blocked}); it "
                "cannot be uncancelled automatically, a person must look at it",
                code="moved_on",
            )
        return {"order_id": output.order_id, "status": restore}

    def simulate_cancel(args: Any, ctx: ToolContext) -> CancelReceipt:
        with db.connect() as conn:
            previous = _cancellable(conn, args.order_id)
        return CancelReceipt(
            order_id=args.order_id, previous_status=previous, event_id=0, simulated=True
        )

    @contract(
        side_effect="reversible",
        zone="yellow",
        scopes=["orders:write"],
        idempotent=True,
        rollback=uncancel,
        simulate=simulate_cancel,
        errors={
            **NOT_FOUND,
            "not_cancellable": "the order has shipped, been delivered or is already cancelled",
            "moved_on": "undo: the order changed after the cancellation",
        },
    )
    def cancel_order(order_id: OrderId, reason: Reason, *, ctx: ToolContext) -> CancelReceipt:
        """Cancel an order that has not shipped yet."""
        with db.effect("order_events", ctx.idempotency_key) as (conn, done):
            if done is not None:
                return CancelReceipt(
                    order_id=order_id,
                    previous_status=done["previous_status"] or "processing",
                    event_id=done["id"],
                    replayed=True,
                )
            previous = _cancellable(conn, order_id)
            conn.execute("UPDATE orders SET status = 'cancelled' WHERE id = ?", (order_id,))
            cursor = conn.execute(
                "INSERT INTO order_events (order_id, event, detail, idempotency_key, "
                "previous_status) VALUES (?, 'cancelled', ?, ?, ?)",
                (order_id, reason, ctx.idempotency_key, previous),
            )
        assert cursor.lastrowid is not None
        return CancelReceipt(order_id=order_id, previous_status=previous, event_id=cursor.lastrowid)

    return cancel_order


def _refund_tool(db: SupportDB) -> ToolSpec:
    def reverse_refund(args: BaseModel, output: RefundReceipt, ctx: ToolContext) -> dict[str, Any]:
        was = db.reverse_refund(output.refund_id, output.order_id, ctx.idempotency_key)
        if was is None:
            raise ToolError(
                f"refund {output.refund_id} on `{output.order_id}` not found", code="not_found"
            )
        return {"refund_id": output.refund_id, "status": "reversed", "was": was}

    def simulate_refund(args: Any, ctx: ToolContext) -> RefundReceipt:
        with db.connect() as conn:
            _check_refund(conn, args.order_id, args.amount)
        return RefundReceipt(
            refund_id=0, order_id=args.order_id, amount=args.amount, simulated=True
        )

    @contract(
        side_effect="reversible",
        zone=refund_zone,
        scopes=["payments:write"],
        idempotent=True,
        rollback=reverse_refund,
        simulate=simulate_refund,
        errors={
            **NOT_FOUND,
            "exceeds_refundable": "the amount is more than was paid minus earlier refunds",
        },
    )
    def issue_refund(
        order_id: OrderId,
        amount: Cents,
        reason: Reason,
        *,
        ctx: ToolContext,
    ) -> RefundReceipt:
        """Refund money on an order (at most what was paid minus earlier refunds)."""
        with db.effect("refunds", ctx.idempotency_key) as (conn, done):
            if done is not None:
                return RefundReceipt(
                    refund_id=done["id"], order_id=order_id, amount=done["amount"], replayed=True
                )
            _check_refund(conn, order_id, amount)
            cursor = conn.execute(
                "INSERT INTO refunds (order_id, amount, reason, idempotency_key)"
                " VALUES (?, ?, ?, ?)",
                (order_id, amount, reason, ctx.idempotency_key),
            )
        assert cursor.lastrowid is not None
        return RefundReceipt(refund_id=cursor.lastrowid, order_id=order_id, amount=amount)

    return issue_refund


def _email_tools(db: SupportDB) -> list[ToolSpec]:
    def void_draft(args: BaseModel, output: DraftReceipt, ctx: ToolContext) -> dict[str, Any]:
        was = db.void_draft(output.draft_id, ctx.idempotency_key)
        if was is None or was == "sent":
            raise ToolError(
                f"draft {output.draft_id} "
                + ("not found" if was is None else "was already sent; cannot unsend"),
                code="no_draft" if was is None else "already_sent",
            )
        return {"draft_id": output.draft_id, "status": "voided", "was": was}

    @contract(
        side_effect="reversible",
        zone="green",
        scopes=["email:send"],
        idempotent=True,
        idempotency_fields=("to", "subject"),
        egress=True,
        rollback=void_draft,
        simulate=lambda args, ctx: DraftReceipt(draft_id=SIMULATED_DRAFT_ID, simulated=True),
        errors={
            "no_draft": "undo: the draft no longer exists",
            "already_sent": "undo: the draft was sent, which cannot be undone",
        },
    )
    def draft_email(
        to: Email,
        subject: Subject,
        body: Annotated[str, Field(min_length=1, max_length=5000)],
        *,
        ctx: ToolContext,
    ) -> DraftReceipt:
        """Write an email to a customer as a draft (not sent yet); returns the draft id."""
        with db.effect("outbound_emails", ctx.idempotency_key) as (conn, done):
            if done is not None:
                return DraftReceipt(draft_id=done["id"], replayed=True)
            cursor = conn.execute(
                "INSERT INTO outbound_emails (to_addr, subject, body, status, idempotency_key)"
                " VALUES (?, ?, ?, 'draft', ?)",
                (to, subject, body, ctx.idempotency_key),
            )
        assert cursor.lastrowid is not None
        return DraftReceipt(draft_id=cursor.lastrowid)

    def draft_to(conn: sqlite3.Connection, draft_id: int) -> tuple[str, bool]:
        """The draft's recipient and whether it was sent; refuses missing and voided drafts."""
        row = conn.execute(
            "SELECT status, to_addr FROM outbound_emails WHERE id = ?", (draft_id,)
        ).fetchone()
        if row is None:
            raise ToolError(f"no draft with id {draft_id}; call draft_email first", code="no_draft")
        if row["status"] == "voided":
            raise ToolError(f"draft {draft_id} was withdrawn; draft the reply again", code="voided")
        return str(row["to_addr"]), row["status"] == "sent"

    def simulate_send(args: Any, ctx: ToolContext) -> SendReceipt:
        if args.draft_id == SIMULATED_DRAFT_ID:
            return SendReceipt(draft_id=args.draft_id, to="(simulated draft)", simulated=True)
        with db.connect() as conn:
            to, _ = draft_to(conn, args.draft_id)
        return SendReceipt(draft_id=args.draft_id, to=to, simulated=True)

    @contract(
        side_effect="irreversible",
        zone="yellow",
        scopes=["email:send"],
        idempotent=True,
        simulate=simulate_send,
        errors={
            "no_draft": "no draft has this id",
            "voided": "the draft was withdrawn (undone)",
        },
    )
    def send_email(draft_id: DraftId, *, ctx: ToolContext) -> SendReceipt:
        """Send a drafted email to the customer."""
        with db.write() as conn:
            to, sent = draft_to(conn, draft_id)
            # Already sent (by this key or any other): sending twice is never right.
            if sent:
                return SendReceipt(draft_id=draft_id, to=to, replayed=True)
            conn.execute(
                "UPDATE outbound_emails SET status = 'sent', send_key = ? WHERE id = ?",
                (ctx.idempotency_key, draft_id),
            )
        return SendReceipt(draft_id=draft_id, to=to)

    return [draft_email, send_email]
