"""Plain-language phrases about trace events: verdicts, tool calls and whole node steps."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from observability.events import TraceEvent

__all__ = [
    "EDITED_MARK",
    "args_text",
    "call_phrase",
    "oneline",
    "refused",
    "step_sentence",
    "tools_by_call",
    "verdict_phrase",
    "when",
    "who",
]

EDITED_MARK = "edited by reviewer:"
"""How the approval node marks a reviewer's edit among a verdict's reasons."""

_VERDICT_FLAGS = frozenset({"deny", "escalate", "halt"})
"""Flag prefixes that repeat a verdict (the step sentence states the verdict already)."""


def oneline(text: str) -> str:
    """`text` with its runs of whitespace (newlines too) as single spaces."""
    return " ".join(text.split())


def refused(call: Mapping[str, Any]) -> bool:
    """Whether a traced tool call is the guard's refusal (denied, rejected, halted) rather
    than a call the gateway handled: a failed gateway call always names its `error_kind`."""
    return call.get("status") == "error" and not call.get("error_kind")


def when(ts: float) -> str:
    """A Unix time as ISO 8601 UTC to the second, e.g. `2025-01-31T09:30:00Z`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def who(decided_by: str) -> str:
    """`guard` -> "the guard"; `human:ann` -> "reviewer `ann`"."""
    return f"reviewer `{decided_by[6:]}`" if decided_by.startswith("human:") else "the guard"


def args_text(args: Any) -> str:
    """Tool arguments as compact, stable JSON."""
    return json.dumps(args, sort_keys=True, default=str)


def verdict_phrase(verdict: Mapping[str, Any], tool: str | None) -> str:
    """What a verdict did, e.g. "reviewer `ann` rejected `refund`: too much"."""
    kind = verdict.get("kind", "?")
    reasons = "; ".join(str(r) for r in verdict.get("reasons") or ())
    what = f"`{tool}`" if tool else "the run"
    decided_by = str(verdict.get("decided_by") or "guard")
    if decided_by.startswith("human:"):
        if kind == "deny":
            return f"{who(decided_by)} rejected {what}" + (f": {reasons}" if reasons else "")
        edited = any(str(r).startswith(EDITED_MARK) for r in verdict.get("reasons") or ())
        verb = "edited and approved" if edited else "approved"
        return f"{who(decided_by)} {verb} {what}" + (f" ({reasons})" if reasons else "")
    if kind == "escalate":
        return f"the guard escalated {what} to a human (zone {verdict.get('zone')}: {reasons})"
    if kind == "halt":
        return f"the guard halted the run ({reasons})"
    verb = {"allow": "allowed", "deny": "denied"}.get(str(kind), str(kind))
    return f"the guard {verb} {what}" + (f" ({reasons})" if reasons and kind != "allow" else "")


def call_phrase(call: Mapping[str, Any]) -> str:
    """What became of a tool call, e.g. "`refund` ran (success)"."""
    if refused(call):
        return f"`{call.get('tool')}` was not run"
    how = "simulated" if call.get("shadow") else "replayed" if call.get("replayed") else "ran"
    return f"`{call.get('tool')}` {how} ({call.get('status')})"


def tools_by_call(events: Sequence[TraceEvent]) -> dict[str, str]:
    """Tool of each call proposed or run in `events`, by call id."""
    tools = {str(c["call_id"]): str(c["tool"]) for e in events for c in e["tool_calls"]}
    tools.update(
        (str(p.get("call_id")), str(p.get("tool"))) for e in events for p in e["proposals"]
    )
    return tools


def _proposals(event: TraceEvent) -> str:
    listed = []
    for proposal in event["proposals"]:
        confidence = proposal.get("confidence")
        stated = f" (confidence {confidence:.2f})" if confidence is not None else ""
        listed.append(f"`{proposal.get('tool')}` {args_text(proposal.get('args'))}{stated}")
    return f"`{event['agent']}` proposed {', '.join(listed)}"


def _fixed(event: TraceEvent) -> str | None:
    """The sentence of a step whose kind alone says what happened, else None."""
    node, output = event["node"], event["output"]
    if event["status"] == "error":
        return f"{node} failed: {event['error'] or 'no error recorded'}."
    if event["status"] == "interrupted":
        asked = (event["escalation"] or {}).get("tools") or ()
        reviewers = (event["escalation"] or {}).get("reviewers") or "a human"
        listed = ", ".join(f"`{t}`" for t in asked) or "the next step"
        return f"{node} paused for {reviewers} to review {listed}."
    if node == "intake":
        if output == "accepted":
            return (
                f"Intake accepted “{oneline(event['goal'])}” for tenant {event['tenant']}, "
                f"workflow {event['workflow']}."
            )
        return f"Intake stopped the request: {output}."
    if node == "finalize":
        return f"The run ended {output}."
    if node == "orchestrator" and output.startswith("route to "):
        return f"The orchestrator handed the work to `{output.removeprefix('route to ')}`."
    if node == "orchestrator" and not event["verdicts"]:
        return "The orchestrator finished the work." if output == "finish" else f"{output}."
    return None


def step_sentence(event: TraceEvent, tools: Mapping[str, str]) -> str:
    """One sentence saying what a node step did.

    Args:
        event: the step.
        tools: tool of each call id in the run (`tools_by_call`), to name decided calls.
    """
    fixed = _fixed(event)
    if fixed is not None:
        return fixed
    parts = []
    if event["proposals"]:
        parts.append(_proposals(event))
    elif event["node"].startswith("agent_") and event["output"]:
        parts.append(f"`{event['agent']}` said: {event['output']}")
    parts += [verdict_phrase(v, tools.get(str(v.get("call_id")))) for v in event["verdicts"]]
    parts += [call_phrase(c) for c in event["tool_calls"] if not refused(c)]
    text = "; ".join(parts) or f"{event['node']} ran"
    text = text[0].upper() + text[1:]
    flags = [f for f in event["flags"] if f.split(":", 1)[0] not in _VERDICT_FLAGS]
    if flags:
        text += f" [{'; '.join(flags)}]"
    return text if text.endswith(".") else text + "."
