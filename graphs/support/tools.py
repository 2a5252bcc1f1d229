"""The support example's tools, each with a contract, over the business database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from graphs.support.db import SupportDB
from tools import RiskZone, ToolContext, ToolError, ToolSpec, tool_contract

__all__ = ["REFUND_RED_ZONE", "make_support_tools"]

REFUND_RED_ZONE = 1000.0
"""Refunds above this many dollars are in the red zone for every tenant (a human, always).
Below it, each tenant's limit lives in the policy bundle (`policies/refunds.rego`)."""

OrderId = Annotated[str, Field(pattern=r"^ORD-\d{4}$", description="Order number, e.g. ORD-1001")]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]


def refund_zone(args: Mapping[str, Any]) -> RiskZone:
    """Refunds are yellow (run, flagged); very large ones red (need approval)."""
    return "yellow" if float(args.get("amount", 0)) <= REFUND_RED_ZONE else "red"


def make_support_tools(db: SupportDB) -> list[ToolSpec]:
    """The support tools bound to `db`."""

    def order_or_fail(order_id: str) -> dict[str, Any]:
        order = db.one("SELECT * FROM orders WHERE id = ?", order_id)
        if order is None:
            raise ToolError(f"order `{order_id}` not found; ask the customer to check the number")
        return order

    @tool_contract(zone="green")
    def lookup_customer(email: Email) -> dict[str, Any]:
        """Find a customer by email address, with their order numbers."""
        customer = db.one("SELECT * FROM customers WHERE email = ?", email.lower())
        if customer is None:
            raise ToolError(f"no customer with email `{email}`; ask them for their account email")
        orders = db.all("SELECT id FROM orders WHERE customer_id = ? ORDER BY id", customer["id"])
        return {**customer, "orders": [o["id"] for o in orders]}

    @tool_contract(zone="green")
    def get_order(order_id: OrderId) -> dict[str, Any]:
        """Look up an order: item, amount, status and refunds so far."""
        order = order_or_fail(order_id)
        refunded = db.one(
            "SELECT COALESCE(SUM(amount), 0) AS total FROM refunds WHERE order_id = ?", order_id
        )
        return {**order, "refunded": refunded["total"] if refunded else 0.0}

    @tool_contract(side_effect="reversible", zone="yellow")
    def cancel_order(
        order_id: OrderId, reason: Annotated[str, Field(max_length=500)], *, ctx: ToolContext
    ) -> dict[str, Any]:
        """Cancel an order that has not shipped yet."""
        with db.effect("order_events", ctx.idempotency_key) as (conn, done):
            if done is not None:
                return {"order_id": order_id, "status": "cancelled", "replayed": True}
            order = conn.execute("SELECT status FROM orders WHERE id = ?", (order_id,)).fetchone()
            if order is None:
                raise ToolError(f"order `{order_id}` not found; check the number")
            if order["status"] != "processing":
                raise ToolError(
                    f"order `{order_id}` is already {order['status']} and cannot be "
                    "cancelled; offer a return instead"
                )
            conn.execute("UPDATE orders SET status = 'cancelled' WHERE id = ?", (order_id,))
            conn.execute(
                "INSERT INTO order_events (order_id, event, detail, idempotency_key) "
                "VALUES (?, 'cancelled', ?, ?)",
                (order_id, reason, ctx.idempotency_key),
            )
        return {"order_id": order_id, "status": "cancelled", "replayed": False}

    @tool_contract(zone="green")
    def get_invoice(order_id: OrderId) -> dict[str, Any]:
        """Look up the invoice of an order."""
        order_or_fail(order_id)
        invoice = db.one("SELECT * FROM invoices WHERE order_id = ?", order_id)
        if invoice is None:
            raise ToolError(f"order `{order_id}` has no invoice yet")
        return invoice

    @tool_contract(side_effect="irreversible", zone=refund_zone)
    def issue_refund(
        order_id: OrderId,
        amount: Annotated[float, Field(gt=0, le=100_000)],
        reason: Annotated[str, Field(min_length=3, max_length=500)],
        *,
        ctx: ToolContext,
    ) -> dict[str, Any]:
        """Refund money on an order (at most what was paid minus earlier refunds)."""
        with db.effect("refunds", ctx.idempotency_key) as (conn, done):
            if done is not None:
                return {**done, "replayed": True}
            order = conn.execute("SELECT amount FROM orders WHERE id = ?", (order_id,)).fetchone()
            if order is None:
                raise ToolError(f"order `{order_id}` not found; check the number")
            refunded = conn.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE order_id = ?", (order_id,)
            ).fetchone()[0]
            refundable = round(order["amount"] - refunded, 2)
            if amount > refundable:
                raise ToolError(
                    f"refund of ${amount:.2f} exceeds the refundable ${refundable:.2f}"
                    f" on `{order_id}` (paid ${order['amount']:.2f}, refunded "
                    f"${refunded:.2f}); refund at most ${refundable:.2f}"
                )
            cursor = conn.execute(
                "INSERT INTO refunds (order_id, amount, reason, idempotency_key)"
                " VALUES (?, ?, ?, ?)",
                (order_id, amount, reason, ctx.idempotency_key),
            )
        return {
            "refund_id": cursor.lastrowid,
            "order_id": order_id,
            "amount": amount,
            "replayed": False,
        }

    @tool_contract(
        side_effect="reversible", zone="green", idempotency_fields=("to", "subject"), egress=True
    )
    def draft_email(
        to: Email,
        subject: Annotated[str, Field(max_length=200)],
        body: Annotated[str, Field(min_length=1, max_length=5000)],
        *,
        ctx: ToolContext,
    ) -> dict[str, Any]:
        """Write an email to a customer as a draft (not sent yet); returns the draft id."""
        with db.effect("outbound_emails", ctx.idempotency_key) as (conn, done):
            if done is not None:
                return {"draft_id": done["id"], "replayed": True}
            cursor = conn.execute(
                "INSERT INTO outbound_emails (to_addr, subject, body, status, idempotency_key)"
                " VALUES (?, ?, ?, 'draft', ?)",
                (to, subject, body, ctx.idempotency_key),
            )
        return {"draft_id": cursor.lastrowid, "replayed": False}

    @tool_contract(side_effect="irreversible", zone="yellow")
    def send_email(draft_id: Annotated[int, Field(gt=0)], *, ctx: ToolContext) -> dict[str, Any]:
        """Send a drafted email to the customer."""
        with db.write() as conn:
            row = conn.execute(
                "SELECT status, to_addr FROM outbound_emails WHERE id = ?", (draft_id,)
            ).fetchone()
            if row is None:
                raise ToolError(f"no draft with id {draft_id}; call draft_email first")
            # Already sent (by this key or any other): sending twice is never right.
            if row["status"] == "sent":
                return {
                    "draft_id": draft_id,
                    "to": row["to_addr"],
                    "status": "sent",
                    "replayed": True,
                }
            conn.execute(
                "UPDATE outbound_emails SET status = 'sent', send_key = ? WHERE id = ?",
                (ctx.idempotency_key, draft_id),
            )
        return {"draft_id": draft_id, "to": row["to_addr"], "status": "sent", "replayed": False}

    return [
        lookup_customer,
        get_order,
        cancel_order,
        get_invoice,
        issue_refund,
        draft_email,
        send_email,
    ]
