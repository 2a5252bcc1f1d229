"""A deterministic support model: reads each ticket and decides which tools to call.

It stands in for an LLM offline (tests, demo, benchmarks) and plays every role of the support
workflow: it routes when bound to the `handoff` tool, and acts as the specialist whose tools it
is bound to. Like a model, it only sees the conversation and the tool schemas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage

from nodes import MEMORY_HEADER, ScriptedChatModel, this_run

__all__ = ["Ticket", "parse_ticket", "support_model"]

Intent = Literal["status", "cancel", "refund", "invoice", "watch", "question"]
PLANS: dict[Intent, tuple[str, ...]] = {
    "status": ("triage", "orders", "communications"),
    "watch": ("triage", "orders", "communications"),
    "cancel": ("triage", "orders", "communications"),
    "refund": ("triage", "billing", "communications"),
    "invoice": ("triage", "billing", "communications"),
    "question": ("triage", "communications"),
}


@dataclass(frozen=True, kw_only=True)
class Ticket:
    """What the model understood of a ticket."""

    sender: str
    subject: str
    body: str
    order_id: str | None
    amount: float | None
    intent: Intent
    preferences: tuple[tuple[str, str], ...] = ()
    """Lasting preferences the customer stated: (topic, value), e.g. ("preferred_name", "Ally")."""


_PREFERRED_NAME = re.compile(r"\b[Cc]all me ([A-Z][A-Za-z'-]{0,39})\b")
_REMEMBERED = re.compile(r"^- customer's ([a-z_]+): (.+?)(?: \(may be out of date\))?$", re.M)


def parse_ticket(text: str) -> Ticket:
    """Read sender, subject, order number, amount, intent and stated preferences from a
    ticket's text."""
    sender = re.search(r"^From:\s*(\S+)", text, re.M)
    subject = re.search(r"^Subject:\s*(.*)$", text, re.M)
    body = text.split("\n\n", 1)[1] if "\n\n" in text else text
    order = re.search(r"\bORD-\d{4}\b", body)
    amount = re.search(r"\$\s?(\d+(?:\.\d{1,2})?)", body)
    lowered = body.lower()
    intent: Intent = "question"
    if "keep checking" in lowered:
        intent = "watch"
    elif "cancel" in lowered:
        intent = "cancel"
    elif "refund" in lowered:
        intent = "refund"
    elif "invoice" in lowered or "receipt" in lowered:
        intent = "invoice"
    elif "where is" in lowered or "status" in lowered or "tracking" in lowered:
        intent = "status"
    name = _PREFERRED_NAME.search(body)
    return Ticket(
        sender=sender.group(1) if sender else "",
        body=body.strip(),
        subject=subject.group(1).strip() if subject else "",
        order_id=order.group(0) if order else None,
        amount=float(amount.group(1)) if amount else None,
        intent=intent,
        preferences=(("preferred_name", name.group(1)),) if name else (),
    )


def _remembered(messages: Sequence[BaseMessage]) -> dict[str, str]:
    """What the memory system message says about the customer: topic -> preference."""
    for message in messages:
        if isinstance(message, SystemMessage) and str(message.content).startswith(MEMORY_HEADER):
            return dict(_REMEMBERED.findall(str(message.content)))
    return {}


def _this_run(messages: Sequence[BaseMessage]) -> tuple[Ticket, list[BaseMessage]]:
    text, run = this_run(messages)
    return parse_ticket(text), run


def _results(run: list[BaseMessage]) -> dict[str, tuple[bool, Any]]:
    """Latest result of each tool this run: (ok, parsed JSON or error text)."""
    results: dict[str, tuple[bool, Any]] = {}
    for message in run:
        if isinstance(message, ToolMessage) and message.name:
            ok = message.status != "error"
            results[message.name] = (
                ok,
                json.loads(str(message.content)) if ok else str(message.content),
            )
    return results


def _call(name: str, rationale: str = "", confidence: float = 0.9, **args: Any) -> AIMessage:
    return AIMessage(
        content=rationale,
        tool_calls=[{"name": name, "args": args, "id": None}],
        additional_kwargs={"confidence": confidence},
    )


def _route(ticket: Ticket, system: str, results: dict[str, tuple[bool, Any]]) -> AIMessage:
    consulted = re.search(r"Already consulted: (.*)\.", system)
    done = set(consulted.group(1).split(", ")) if consulted else set()
    plan = PLANS[ticket.intent]
    if "lookup_customer" in results and not results["lookup_customer"][0]:
        plan = ("triage", "communications")  # unknown sender: only ask them to identify
    target = next((agent for agent in plan if agent not in done), "finish")
    return AIMessage(
        content="",
        tool_calls=[
            {
                "name": "handoff",
                "id": None,
                "args": {"to": target, "reason": f"{ticket.intent} ticket"},
            }
        ],
    )


def _triage(
    ticket: Ticket,
    results: dict[str, tuple[bool, Any]],
    remembered: dict[str, str],
    can_remember: bool,
) -> AIMessage:
    if "lookup_customer" not in results:
        return _call("lookup_customer", "Identify the customer first.", email=ticket.sender)
    ok, found = results["lookup_customer"]
    if not ok:
        return AIMessage(f"Unknown sender {ticket.sender}; intent looks like {ticket.intent}.")
    new = [(topic, value) for topic, value in ticket.preferences if remembered.get(topic) != value]
    if new and can_remember and "remember_preference" not in results:
        topic, value = new[0]
        return _call(
            "remember_preference",
            "The customer stated a lasting preference.",
            customer=ticket.sender,
            topic=topic,
            preference=value,
        )
    return AIMessage(
        f"{found['name']} ({found['tier']}), orders {', '.join(found['orders'])}; "
        f"intent: {ticket.intent}."
    )


def _orders(ticket: Ticket, results: dict[str, tuple[bool, Any]]) -> AIMessage:
    if ticket.order_id is None:
        return AIMessage("The ticket names no order number.")
    if ticket.intent == "watch":  # the runaway case: polls, musing at length; a cap must stop it
        return _call("get_order", "Checking again. " + _MUSING, order_id=ticket.order_id)
    if "get_order" not in results:
        return _call("get_order", "Look the order up.", order_id=ticket.order_id)
    ok, order = results["get_order"]
    if not ok:
        return AIMessage(f"Order {ticket.order_id} does not exist.")
    if ticket.intent == "cancel" and "cancel_order" not in results:
        return _call(
            "cancel_order",
            "Customer asked to cancel.",
            order_id=ticket.order_id,
            reason=ticket.body[:200],
        )
    if "cancel_order" in results:
        done, detail = results["cancel_order"]
        return AIMessage(f"Cancelled {ticket.order_id}." if done else f"Could not cancel: {detail}")
    return AIMessage(f"Order {ticket.order_id} ({order['item']}) is {order['status']}.")


def _billing(ticket: Ticket, results: dict[str, tuple[bool, Any]]) -> AIMessage:
    if ticket.order_id is None:
        return AIMessage("The ticket names no order number.")
    if "get_invoice" not in results:
        return _call("get_invoice", "Check what was paid.", order_id=ticket.order_id)
    ok, invoice = results["get_invoice"]
    if not ok:
        return AIMessage(f"No invoice: {invoice}")
    if ticket.intent != "refund":
        return AIMessage(
            f"Invoice {invoice['id']} for ${invoice['amount']:.2f} is {invoice['status']}."
        )
    if "issue_refund" not in results:
        amount = ticket.amount if ticket.amount is not None else invoice["amount"]
        return _call(
            "issue_refund",
            f"Refund requested: {ticket.subject}",
            confidence=0.8,
            order_id=ticket.order_id,
            amount=amount,
            reason=ticket.body[:200],
        )
    done, refund = results["issue_refund"]
    return AIMessage(
        f"Refunded ${refund['amount']:.2f} on {ticket.order_id}."
        if done
        else f"Refund not issued: {refund}"
    )


_MUSING = (
    "The status may have changed since the last look, so I re-read the order, the carrier "
    "notes and the customer's words before polling again. "
) * 60
"""What the runaway ticket's model writes on every poll: long, costly and going nowhere."""

_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")


def _reply_body(
    ticket: Ticket, results: dict[str, tuple[bool, Any]], remembered: dict[str, str]
) -> str:
    facts = []
    for tool, (ok, value) in results.items():
        if tool == "lookup_customer" and not ok:
            facts.append(
                "We could not find an account for this address; please reply with the "
                "email you ordered with."
            )
        elif tool == "get_order" and "cancel_order" not in results:
            facts.append(
                f"Order {ticket.order_id} is {value['status']}."
                if ok
                else f"We could not find order {ticket.order_id}; please check the number."
            )
        elif tool == "cancel_order":
            facts.append(
                "Your order is cancelled."
                if ok
                else "Your order has already left our warehouse, so it cannot be cancelled; "
                "you can return it once it arrives."
            )
        elif tool == "get_invoice" and ok and ticket.intent == "invoice":
            facts.append(f"Your invoice {value['id']} for ${value['amount']:.2f} is attached.")
        elif tool == "issue_refund":
            facts.append(
                f"We refunded ${value['amount']:.2f}."
                if ok
                else "Your refund request needs a closer look; our team will contact you."
            )
    card = _CARD.search(ticket.body)
    if card and "issue_refund" in results:  # a careless model echoes what it was given
        facts.append(f"The money goes back to the card you gave us ({card.group(0)}).")
    if not facts:
        facts.append("Thanks for your question: opened items can be returned within 30 days.")
    name = remembered.get("preferred_name")
    greeting = f"Hi {name}," if name else "Hello,"
    return greeting + "\n\n" + " ".join(facts) + "\n\nBest regards,\nSupport"


def _communications(
    ticket: Ticket, results: dict[str, tuple[bool, Any]], remembered: dict[str, str]
) -> AIMessage:
    if "draft_email" not in results:
        return _call(
            "draft_email",
            "Draft the reply.",
            to=ticket.sender,
            subject=f"Re: {ticket.subject}",
            body=_reply_body(ticket, results, remembered),
        )
    ok, draft = results["draft_email"]
    if not ok:
        return AIMessage(f"Could not draft the reply: {draft}")
    if "send_email" not in results:
        return _call("send_email", "Send the reply.", draft_id=draft["draft_id"])
    sent, detail = results["send_email"]
    return AIMessage(f"Replied to {ticket.sender}." if sent else f"Reply not sent: {detail}")


ROLES = {
    "handoff": "router",
    "lookup_customer": "triage",
    "get_order": "orders",
    "issue_refund": "billing",
    "send_email": "communications",
}


def _policy(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> AIMessage:
    names = {tool["function"]["name"] for tool in tools}
    role = next((ROLES[name] for name in ROLES if name in names), "none")
    ticket, run = _this_run(messages)
    results = _results(run)
    if role == "router":
        system = next((str(m.content) for m in messages if isinstance(m, SystemMessage)), "")
        return _route(ticket, system, results)
    if role == "triage":
        return _triage(ticket, results, _remembered(messages), "remember_preference" in names)
    if role == "communications":
        return _communications(ticket, results, _remembered(messages))
    act = {"orders": _orders, "billing": _billing}.get(role)
    return act(ticket, results) if act else AIMessage("I have no tools for this ticket.")


def support_model(model_name: str = "scripted", latency_s: float = 0.0) -> ScriptedChatModel:
    """The deterministic support model, priced as `model_name` (optionally with latency)."""
    return ScriptedChatModel(policy=_policy, latency_s=latency_s, model_name=model_name)
