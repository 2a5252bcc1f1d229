"""The console API's request bodies (validated with pydantic) and their expected shapes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DECIDE_SHAPE",
    "FEEDBACK_SHAPE",
    "KILL_SHAPE",
    "DecideBody",
    "FeedbackBody",
    "KillBody",
]

DECIDE_SHAPE = (
    '{"decisions": [{"type": "approve"} | {"type": "edit", "edited_action": {"name": "<tool>", '
    '"args": {...}}} | {"type": "reject", "message": "..."}], "note": "optional why"} '
    "with one decision per pending request, in order"
)
KILL_SHAPE = '{"scope": "global" | "tenant:<t>" | "workflow:<w>" | "run:<id>", "reason": "why"}'
FEEDBACK_SHAPE = (
    '{"run_id": "...", "decision_id": "optional", "correction": {...} or "text", '
    '"rationale": "why"}'
)


class KillBody(BaseModel):
    """`POST /bastion/api/kill` and `/lift`."""

    model_config = ConfigDict(extra="forbid")
    scope: str
    reason: str = Field(min_length=1, max_length=2000)


class FeedbackBody(BaseModel):
    """`POST /bastion/api/feedback`."""

    model_config = ConfigDict(extra="forbid")
    run_id: str = Field(min_length=1)
    decision_id: str | None = None
    correction: dict[str, Any] | str
    rationale: str = Field(default="", max_length=4000)


class DecideBody(BaseModel):
    """`POST /bastion/api/approvals/{thread_id}`."""

    model_config = ConfigDict(extra="forbid")
    decisions: list[dict[str, Any]] = Field(min_length=1)
    note: str | None = Field(default=None, max_length=4000)
