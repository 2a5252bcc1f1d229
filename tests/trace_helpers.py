"""Trace events for the observability tests: a factory for hand-built ones (edge cases), and the
real ones the support desk produces (its graph, traced by a real `Tracer` into in-memory sinks)."""

from __future__ import annotations

import functools
import itertools
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from console import RunReport, run_to_end
from graphs import Services
from graphs.support import SupportDB, build_support_graph, format_ticket, scripted_review
from guards import KillScope
from observability import AuditRecord, CostRecord, RunSummary, TraceEvent

TICKETS = {
    t["id"]: t
    for t in json.loads(
        (Path(__file__).parents[1] / "graphs/support/data/tickets.json").read_text()
    )
}
_ids = itertools.count(1)


def verdict(
    kind: str = "allow",
    *,
    call_id: str = "c1",
    decision_id: str | None = None,
    zone: str | None = "green",
    decided_by: str = "guard",
    reasons: Sequence[str] = (),
    policies: Sequence[str] = ("risk-zones@2",),
    memory_reads: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A verdict as the guard, approval, agent and orchestrator nodes record it."""
    return {
        "call_id": call_id,
        "decision_id": decision_id or f"dec_{next(_ids)}",
        "kind": kind,
        "reasons": list(reasons),
        "zone": zone,
        "policies": list(policies),
        "decided_by": decided_by,
        "memory_reads": list(memory_reads),
    }


def proposal(
    call_id: str = "c1",
    tool: str = "lookup_order",
    args: Mapping[str, Any] | None = None,
    confidence: float | None = 0.9,
    rationale: str = "",
) -> dict[str, Any]:
    """A proposal as an agent step's trace event carries it."""
    return {
        "call_id": call_id,
        "tool": tool,
        "args": dict(args or {"order_id": "ORD-1"}),
        "confidence": confidence,
        "rationale": rationale,
        "error": None,
    }


def call(call_id: str = "c1", tool: str = "lookup_order", **fields: Any) -> dict[str, Any]:
    """A tool call the gateway handled, as a trace event carries it."""
    return {
        "call_id": call_id,
        "tool": tool,
        "status": "success",
        "replayed": False,
        "shadow": False,
        "side_effect": "none",
        "error_kind": None,
        **fields,
    }


def event(
    node: str = "guard", *, run_id: str = "run_a", ts: float = 1000.0, **fields: Any
) -> TraceEvent:
    """A trace event with harmless defaults; `fields` override any of them."""
    base: dict[str, Any] = {
        "event_id": f"ev_{next(_ids)}",
        "ts": ts,
        "duration_ms": 1.0,
        "run_id": run_id,
        "thread_id": f"thread_{run_id}",
        "tenant": "acme",
        "workflow": "support",
        "node": node,
        "agent": None,
        "goal": "",
        "context_hash": "0" * 24,
        "proposals": [],
        "verdicts": [],
        "tool_calls": [],
        "output": "",
        "confidence": None,
        "flags": [],
        "escalation": None,
        "memory_reads": [],
        "cost": CostRecord(tokens_in=0, tokens_out=0, usd=0.0),
        "status": "ok",
        "error": None,
    }
    return TraceEvent(**{**base, **fields})  # type: ignore[typeddict-item]


def finished_run(
    run_id: str,
    middle: Sequence[Mapping[str, Any]] = (),
    *,
    outcome: str = "resolved: exit condition met",
    t0: float = 1000.0,
    **common: Any,
) -> list[TraceEvent]:
    """intake, then one event per `middle` mapping (node and fields), then finalize; a second
    apart, all with `common` fields (tenant, workflow, ...)."""
    steps = [
        {"node": "intake", "goal": f"goal of {run_id}", "output": "accepted"},
        *middle,
        {"node": "finalize", "output": outcome},
    ]
    return [
        event(run_id=run_id, ts=t0 + index, **{**common, **step})
        for index, step in enumerate(steps)
    ]


@dataclass(frozen=True, kw_only=True)
class DeskTraces:
    """What the support desk left behind after handling every sample ticket."""

    events: list[TraceEvent]
    """Every trace event."""
    records: list[AuditRecord]
    """Every audit record."""
    runs: list[RunSummary]
    """The trace sink's run summaries."""
    reports: dict[str, RunReport]
    """Each run's report, by `<tenant>/<ticket id>`."""

    def run_of(self, key: str) -> str:
        """The run id of `<tenant>/<ticket id>`."""
        return self.reports[key].run_id


@functools.cache
def desk_traces() -> DeskTraces:
    """Every sample ticket for tenant `acme`; then, for tenant `demo`, T02 under a tenant kill
    (halted at intake) and T01 after the kill is lifted. Computed once per test process."""
    services = Services.in_process()
    reports: dict[str, RunReport] = {}
    with tempfile.TemporaryDirectory() as home:
        graph = build_support_graph(SupportDB(Path(home) / "support.sqlite"), services=services)
        compiled = graph.compile(checkpointer=InMemorySaver())

        def handle(tenant: str, ticket_id: str) -> None:
            ticket = TICKETS[ticket_id]
            reports[f"{tenant}/{ticket_id}"] = run_to_end(
                compiled,
                format_ticket(ticket["from"], ticket["subject"], ticket["body"]),
                thread_id=f"{tenant}-{ticket_id}",
                tenant=tenant,
                reviewer=scripted_review,
            )

        for ticket_id in TICKETS:
            handle("acme", ticket_id)
        scope = KillScope(kind="tenant", value="demo")
        services.kill_switch.kill(scope, requester="cli:ops", reason="incident drill")
        handle("demo", "T02")
        services.kill_switch.lift(scope, requester="cli:ops", reason="drill over")
        handle("demo", "T01")
        assert services.tracer.flush(timeout_s=30), services.tracer.stats()
        traces = DeskTraces(
            events=services.traces.events(limit=1_000_000),
            records=services.audit.records(limit=1_000_000),
            runs=services.traces.runs(limit=1_000),
            reports=reports,
        )
        services.close()
    return traces
