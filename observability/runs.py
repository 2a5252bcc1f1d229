"""Run summaries folded from trace events, the same way in every trace sink."""

from __future__ import annotations

from observability.events import CostRecord, RunSummary, TraceEvent

__all__ = ["OUTCOME_STATUSES", "fold_run", "zero_cost"]

OUTCOME_STATUSES = frozenset({"resolved", "unresolved", "failed", "halted", "rejected"})
"""Run statuses that end a run (the `finalize` step's `output` starts with one)."""


def zero_cost() -> CostRecord:
    """Nothing consumed."""
    return CostRecord(tokens_in=0, tokens_out=0, usd=0.0)


def fold_run(summary: RunSummary | None, event: TraceEvent) -> RunSummary:
    """The summary of `event`'s run after `event` (pass None for the run's first event).

    Events may arrive out of order across batches; times take the min and max, and a final
    status (set by `finalize`) is never replaced by `running`.
    """
    if summary is None:
        summary = RunSummary(
            run_id=event["run_id"],
            thread_id=event["thread_id"],
            tenant=event["tenant"],
            workflow=event["workflow"],
            goal=event["goal"],
            status="running",
            started_at=event["ts"],
            updated_at=event["ts"],
            steps=0,
            cost=zero_cost(),
            escalations=0,
            interventions=0,
            incidents=0,
        )
    else:
        summary = RunSummary(**summary)  # type: ignore[typeddict-item]
    cost = event["cost"]
    summary["cost"] = CostRecord(
        tokens_in=summary["cost"]["tokens_in"] + cost["tokens_in"],
        tokens_out=summary["cost"]["tokens_out"] + cost["tokens_out"],
        usd=summary["cost"]["usd"] + cost["usd"],
    )
    summary["steps"] += 1
    summary["goal"] = summary["goal"] or event["goal"]
    summary["started_at"] = min(summary["started_at"], event["ts"])
    latest = event["ts"] >= summary["updated_at"]
    summary["updated_at"] = max(summary["updated_at"], event["ts"])
    summary["escalations"] += event["status"] == "interrupted"
    summary["interventions"] += sum(
        str(v.get("decided_by", "")).startswith("human:") for v in event["verdicts"]
    )
    summary["incidents"] += sum(  # guard trips; a human's rejection is an intervention
        v.get("kind") in ("deny", "halt") and v.get("decided_by", "guard") == "guard"
        for v in event["verdicts"]
    )
    if summary["status"] not in OUTCOME_STATUSES:
        if event["node"] == "finalize":
            status = event["output"].split(":", 1)[0]
            summary["status"] = status if status in OUTCOME_STATUSES else "failed"
        elif latest:
            summary["status"] = "waiting" if event["status"] == "interrupted" else "running"
    return summary
