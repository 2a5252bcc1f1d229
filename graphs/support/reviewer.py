"""A scripted reviewer for the demo: answers approval requests the way a support lead would."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["REVIEWER", "scripted_review"]

REVIEWER = "ops-lead (scripted)"
FINANCE_LIMIT = 1000.0


def _decide(request: Mapping[str, Any]) -> dict[str, Any]:
    args = request.get("args", {})
    if request.get("name") != "issue_refund":
        return {"type": "approve", "reviewer": REVIEWER, "note": "routine"}
    amount = float(args.get("amount", 0))
    reason = str(args.get("reason", "")).lower()
    if amount > FINANCE_LIMIT:
        return {
            "type": "reject",
            "reviewer": REVIEWER,
            "message": f"refunds over ${FINANCE_LIMIT:,.0f} need finance sign-off",
        }
    if "late" in reason or "delay" in reason:
        return {
            "type": "edit",
            "reviewer": REVIEWER,
            "note": "delay compensation is capped at half the request",
            "edited_action": {
                "name": "issue_refund",
                "args": {**args, "amount": round(amount / 2, 2)},
            },
        }
    return {"type": "approve", "reviewer": REVIEWER, "note": "within policy"}


def scripted_review(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The resume value for an approval interrupt's payload."""
    return {"decisions": [_decide(r) for r in payload.get("action_requests", [])]}
