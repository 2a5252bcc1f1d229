"""`bastion replay`: a finished run step by step, read from its checkpoints and its trace.

Nothing is executed again: the checkpointer's saved states are compared pairwise (what each
node changed) and lined up with the node's trace event (how long it took, what it cost, why it
decided). No graph is compiled, no model or tool is called.
"""

from __future__ import annotations

import json
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from langchain_core.load import load
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

from nodes import this_run
from observability import TraceEvent

__all__ = ["ReplayError", "ReplayReport", "ReplayStep", "replay_run"]

_TEXT = 160
"""Characters of a message or tool result shown per line."""


class ReplayError(ValueError):
    """The run cannot be replayed (unknown run); says what to do instead."""


@dataclass(frozen=True, kw_only=True)
class ReplayStep:
    """One node step of a run, as its checkpoints and trace event show it."""

    step: int | None
    """LangGraph step number of the checkpoint the node wrote (None: traced, not checkpointed,
    e.g. a step paused for a human that is still waiting)."""
    node: str
    """The node that ran."""
    changes: tuple[str, ...]
    """What it changed, one line each: messages, proposals, verdicts, tool results, outcome."""
    verdicts: tuple[dict[str, Any], ...] = ()
    """Decisions made in the step (decision id, kind, reasons, zone, policies, decided by)."""
    tool_results: tuple[dict[str, Any], ...] = ()
    """Tool messages the step added: tool, call id, status, content (shortened)."""
    memory_commits: tuple[str, ...] = ()
    """Memory commits the step made (stamped into its checkpoint's metadata)."""
    status: str | None = None
    """The trace event's status (ok, error; `interrupted` for a step still waiting)."""
    paused: bool = False
    """The node paused for a human before it completed (an approval)."""
    duration_ms: float | None = None
    """How long the node ran (from the trace; paused runs counted without the wait)."""
    cost: Mapping[str, Any] | None = None
    """What the step consumed (from the trace)."""
    explanation: str = ""
    """Plain-language sentence about the step (from the trace)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            **self.__dict__,
            "changes": list(self.changes),
            "verdicts": list(self.verdicts),
            "tool_results": list(self.tool_results),
            "memory_commits": list(self.memory_commits),
            "cost": dict(self.cost) if self.cost is not None else None,
        }


@dataclass(frozen=True, kw_only=True)
class ReplayReport:
    """A run walked step by step."""

    run_id: str
    """The run."""
    thread_id: str
    """Its thread."""
    tenant: str
    """Its tenant."""
    request: str
    """What was asked (the run's first human message)."""
    status: str
    """How the run stands: its outcome, `waiting` or `running`."""
    checkpoints: int
    """Checkpoints of the run read."""
    events: int
    """Trace events of the run read."""
    steps: tuple[ReplayStep, ...]
    """Oldest first."""
    notes: tuple[str, ...] = field(default=())
    """What the reader should know (a run still waiting, checkpoints missing)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (`bastion replay --json`)."""
        return {
            **self.__dict__,
            "steps": [step.as_dict() for step in self.steps],
            "notes": list(self.notes),
        }


def _short(text: Any, width: int = _TEXT) -> str:
    text = " ".join((text if isinstance(text, str) else json.dumps(text, default=str)).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _args(args: Mapping[str, Any]) -> str:
    return _short(", ".join(f"{k}={v}" for k, v in args.items()), 80)


def _run_checkpoints(
    saver: BaseCheckpointSaver[Any], thread_id: str, run_id: str
) -> list[tuple[CheckpointTuple, CheckpointTuple]]:
    """(before, after) checkpoint pairs of the steps whose result belongs to `run_id`, oldest
    first. A step is a pair of consecutive root checkpoints; inputs, which no node wrote, are
    left out."""
    config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    ordered = list(reversed(list(saver.list(config))))
    return [
        (before, after)
        for before, after in pairwise(ordered)
        if (after.checkpoint["channel_values"].get("run_id") == run_id)
        and after.metadata.get("source") != "input"
        and _nodes(before, after)
    ]


def _nodes(before: CheckpointTuple, after: CheckpointTuple) -> list[str]:
    """The nodes that ran between two checkpoints: those whose seen channel versions moved
    (every saver keeps them; not every saver keeps the `branch:to:` channels)."""
    seen, now = before.checkpoint["versions_seen"], after.checkpoint["versions_seen"]
    return [name for name in now if not name.startswith("__") and now[name] != seen.get(name)]


def _values(point: CheckpointTuple) -> dict[str, Any]:
    """A checkpoint's state; messages a saver returns serialized (Redis) are revived."""
    values = dict(point.checkpoint["channel_values"])
    messages = values.get("messages") or []
    if any(isinstance(m, dict) for m in messages):
        with warnings.catch_warnings():  # `load` is marked beta; the format is LangChain's own
            warnings.simplefilter("ignore")
            values["messages"] = [
                load(m, allowed_objects="messages") if isinstance(m, dict) else m for m in messages
            ]
    return values


def _message_line(message: BaseMessage) -> str:
    if isinstance(message, ToolMessage):
        status = "" if message.status != "error" else " (error)"
        return f"tool result {message.name}{status}: {_short(message.content)}"
    if isinstance(message, AIMessage):
        calls = [f"{c['name']}({_args(c['args'])})" for c in message.tool_calls]
        said = f"said: {_short(message.content)}" if message.content else ""
        return "; ".join(filter(None, [said, f"asked for {', '.join(calls)}" if calls else ""]))
    if isinstance(message, HumanMessage):
        return f"request: {_short(message.content)}"
    return f"{message.type}: {_short(message.content)}"


def _tool_result(message: ToolMessage) -> dict[str, Any]:
    artifact = message.artifact if isinstance(message.artifact, Mapping) else {}
    return {
        "call_id": message.tool_call_id,
        "tool": message.name,
        "status": message.status,
        "replayed": bool(artifact.get("replayed")),
        "shadow": bool(artifact.get("shadow")),
        "content": _short(message.content),
    }


def _verdict_line(verdict: Mapping[str, Any], tools: Mapping[str, str]) -> str:
    tool = tools.get(verdict.get("call_id", ""), "?")
    reasons = "; ".join(verdict.get("reasons") or ()) or "no reason given"
    zone = f", {verdict['zone']} zone" if verdict.get("zone") else ""
    return (
        f"verdict {verdict['kind']} {tool} by {verdict.get('decided_by', 'guard')}"
        f"{zone}: {reasons} [{verdict.get('decision_id', '?')}]"
    )


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What one step changed in the run state."""
    seen = {m.id for m in before.get("messages") or ()}
    messages = [m for m in after.get("messages") or () if m.id not in seen]
    same_run = before.get("run_id") == after.get("run_id")
    old_verdicts = len(before.get("verdicts") or ()) if same_run else 0
    verdicts = [dict(v) for v in (after.get("verdicts") or ())[old_verdicts:]]
    tools = {
        p["call_id"]: p["tool"]
        for p in (*(before.get("proposals") or ()), *(after.get("proposals") or ()))
    }
    lines = []
    if not same_run:
        lines.append(f"run {after.get('run_id')} opened (tenant {after.get('tenant')})")
    if after.get("active_agent") != before.get("active_agent") and after.get("active_agent"):
        lines.append(f"handed to {after['active_agent']}")
    lines += [_verdict_line(v, tools) for v in verdicts]
    lines += [line for m in messages if (line := _message_line(m))]
    old_taint = len(before.get("taint") or ()) if same_run else 0
    lines += [f"tainted: {reason}" for reason in (after.get("taint") or ())[old_taint:]]
    outcome = after.get("outcome")
    if outcome and outcome != before.get("outcome"):
        lines.append(f"outcome {outcome['status']}: {outcome['reason']}")
    return {
        "changes": tuple(lines),
        "verdicts": tuple(verdicts),
        "tool_results": tuple(_tool_result(m) for m in messages if isinstance(m, ToolMessage)),
    }


def _request(
    points: Sequence[tuple[CheckpointTuple, CheckpointTuple]], events: Sequence[TraceEvent]
) -> str:
    """The run's request: the latest human message when the run opened (else its goal)."""
    if points:
        request, _ = this_run(_values(points[0][1]).get("messages") or [])
        head, blank, body = request.partition("\n\n")  # a ticket's From:/Subject: lines
        if request:
            return _short(body if blank and head.startswith("From:") else request, 500)
    return next((e["goal"] for e in events if e["goal"]), "")


class _Timeline:
    """The run's trace events, handed out per node in the order they happened."""

    def __init__(self, events: Sequence[TraceEvent], sentences: Sequence[str]) -> None:
        self._by_node: dict[str, deque[tuple[TraceEvent, str]]] = {}
        padded = [*sentences, *[""] * (len(events) - len(sentences))]
        for event, sentence in zip(events, padded, strict=False):
            self._by_node.setdefault(event["node"], deque()).append((event, sentence))

    def take(self, node: str) -> tuple[TraceEvent | None, bool, str]:
        """The next completed event of `node`, whether it paused first, and its sentence."""
        queue, paused, said = self._by_node.get(node) or deque(), False, []
        while queue and queue[0][0]["status"] == "interrupted" and len(queue) > 1:
            said.append(queue.popleft()[1])
            paused = True
        if not queue or (queue[0][0]["status"] == "interrupted"):
            return None, paused, " ".join(filter(None, said))
        event, sentence = queue.popleft()
        return event, paused, " ".join(filter(None, [*said, sentence]))

    def rest(self) -> list[tuple[TraceEvent, str]]:
        """Events no checkpointed step claimed (a step still waiting, a lost checkpoint)."""
        left = [item for queue in self._by_node.values() for item in queue]
        return sorted(left, key=lambda item: item[0]["ts"])


def _step(before: CheckpointTuple, after: CheckpointTuple, timeline: _Timeline) -> ReplayStep:
    node = "+".join(_nodes(before, after))
    diff = _diff(_values(before), _values(after))
    event, paused, sentence = timeline.take(node)
    return ReplayStep(
        step=after.metadata.get("step"),
        node=node,
        memory_commits=tuple(after.metadata.get("memory_commits") or ()),  # type: ignore[arg-type]
        status=event["status"] if event else None,
        paused=paused,
        duration_ms=event["duration_ms"] if event else None,
        cost=event["cost"] if event else None,
        explanation=sentence,
        **diff,
    )


def _traced_only(event: TraceEvent, sentence: str) -> ReplayStep:
    changes = [f"output: {_short(event['output'])}"] if event["output"] else []
    if event["status"] == "interrupted":
        changes.append("paused: waiting for a human")
    return ReplayStep(
        step=None,
        node=event["node"],
        changes=tuple(changes),
        verdicts=tuple(dict(v) for v in event["verdicts"]),
        status=event["status"],
        paused=event["status"] == "interrupted",
        duration_ms=event["duration_ms"],
        cost=event["cost"],
        explanation=sentence,
    )


def replay_run(
    run_id: str,
    *,
    events: Sequence[TraceEvent],
    saver: BaseCheckpointSaver[Any],
    status: str = "",
    explain: Callable[[str, Sequence[TraceEvent]], Sequence[str]] | None = None,
) -> ReplayReport:
    """Walk `run_id` step by step from the checkpoints of its thread and its trace events.

    Only reads: `saver.list` and the given events; nothing is compiled or invoked.

    Args:
        run_id: the run.
        events: the run's trace events, oldest first (`TraceSink.events(run_id=...)`).
        saver: the checkpointer the run was checkpointed in.
        status: the run's status from its summary (default: from the last event).
        explain: (run_id, events) -> one sentence per event (`explain_run`).

    Raises:
        ReplayError: the trace has no event of `run_id`.
    """
    if not events:
        raise ReplayError(
            f"no trace of run {run_id!r}. Hint: `bastion runs` lists the traced runs "
            "(runs from before tracing was on cannot be replayed)"
        )
    events = sorted(events, key=lambda event: event["ts"])  # as `explain` orders them
    first = events[0]
    thread_id = first["thread_id"]
    sentences = list(explain(run_id, events)) if explain else []
    timeline = _Timeline(events, sentences)
    points = _run_checkpoints(saver, thread_id, run_id)
    steps = [_step(before, after, timeline) for before, after in points]
    steps += [_traced_only(event, sentence) for event, sentence in timeline.rest()]
    notes = []
    if not points:
        notes.append(
            f"no checkpoints of run {run_id} on thread {thread_id!r} in this checkpointer: the "
            "steps come from the trace alone (was the run made with another BASTION_HOME or "
            "BASTION_REDIS_URL?)"
        )
    final = status or ("waiting" if events[-1]["status"] == "interrupted" else "")
    if final in ("waiting", "running"):
        notes.append(f"the run is {final}: these are its steps so far")
    return ReplayReport(
        run_id=run_id,
        thread_id=thread_id,
        tenant=first["tenant"],
        request=_request(points, events),
        status=final,
        checkpoints=len(points),
        events=len(events),
        steps=tuple(steps),
        notes=tuple(notes),
    )
