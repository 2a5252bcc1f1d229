"""Run control for the console: the protocol, the Approval shape and the translation both
implementations share, and `LocalRunControl` over a compiled graph and its checkpointer (the
LangGraph server's is `console.server_control.ServerRunControl`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from typing_extensions import TypedDict

from nodes import RunContext

__all__ = [
    "Approval",
    "ApprovalRequest",
    "LocalRunControl",
    "NothingPendingError",
    "RunControl",
    "approval_from",
    "by_deadline",
    "covered",
    "first_approval",
    "resume_value",
    "run_status",
    "stamp_decisions",
    "state_values",
    "status_after",
    "tenant_in",
    "waiting_for",
]

_INTERRUPT = "__interrupt__"
"""The checkpoint write channel (and result key) of a pending interrupt."""


class ApprovalRequest(TypedDict):
    """One action a reviewer is asked to decide."""

    call_id: str
    """The proposed tool call."""
    name: str
    """The tool."""
    args: dict[str, Any]
    """Its arguments as proposed."""
    description: str
    """Who proposes it and why it needs a human."""
    zone: str | None
    """Risk zone of the guard's verdict."""
    decision_id: str | None
    """The guard's escalation decision."""
    agent: str | None
    """The specialist that proposed it."""


class Approval(TypedDict):
    """A run waiting for a human decision (the console API's `Approval`)."""

    thread_id: str
    """The waiting thread (what `POST /bastion/api/approvals/{thread_id}` takes)."""
    run_id: str
    """The run on that thread."""
    tenant: str
    """Its tenant."""
    requests: list[ApprovalRequest]
    """The actions to decide, in order (one decision each)."""
    allowed_decisions: list[str]
    """Decisions a reviewer may take: approve, edit, reject."""
    reviewers: str
    """Role or queue the escalation goes to."""
    deadline: float | None
    """Unix time after which the default action is taken; None: no deadline."""
    on_timeout: str | None
    """The default action (`reject` or `approve`), when there is a deadline."""
    error: str | None
    """What was wrong with the previous answer, if one was refused."""


class NothingPendingError(LookupError):
    """The thread is not waiting for a decision (any more)."""


def approval_from(thread_id: str, values: Mapping[str, Any], payload: Any) -> Approval | None:
    """The `Approval` an interrupt payload of the approval node asks for, or None when the
    payload is something else."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("action_requests"), list):
        return None
    configs = [c for c in payload.get("review_configs") or [] if isinstance(c, Mapping)]
    allowed = list((configs[0] if configs else {}).get("allowed_decisions") or [])
    for config in configs[1:]:  # what every action allows
        allowed = [d for d in allowed if d in (config.get("allowed_decisions") or ())]
    return Approval(
        thread_id=thread_id,
        run_id=str(values.get("run_id") or ""),
        tenant=str(values.get("tenant") or ""),
        requests=[
            ApprovalRequest(
                call_id=str(r.get("call_id") or ""),
                name=str(r.get("name") or ""),
                args=dict(r.get("args") or {}),
                description=str(r.get("description") or ""),
                zone=r.get("zone"),
                decision_id=r.get("decision_id"),
                agent=r.get("agent"),
            )
            for r in payload["action_requests"]
        ],
        allowed_decisions=allowed,
        reviewers=str(payload.get("reviewers") or ""),
        deadline=payload.get("deadline"),
        on_timeout=payload.get("on_timeout"),
        error=payload.get("error"),
    )


def stamp_decisions(
    decisions: Sequence[Mapping[str, Any]], *, note: str | None, reviewer: str
) -> list[dict[str, Any]]:
    """Decisions with the reviewer (and the note, unless a decision has its own) on record."""
    return [
        {
            **d,
            "reviewer": reviewer,
            **({"note": d.get("note") or note} if d.get("note") or note else {}),
        }
        for d in decisions
    ]


def run_status(values: Mapping[str, Any], *, waiting: bool) -> str:
    """A thread's run status as `RunSummary.status` names it: `waiting` for a human, the
    outcome once finished (resolved, rejected, ...), `running` otherwise."""
    if waiting:
        return "waiting"
    outcome = values.get("outcome")
    return str(outcome.get("status")) if isinstance(outcome, Mapping) else "running"


def state_values(values: Any) -> Mapping[str, Any]:
    """A thread's state values; empty when it has none (yet)."""
    return values if isinstance(values, Mapping) else {}


def tenant_in(values: Mapping[str, Any]) -> str:
    """The tenant of the run whose state values these are."""
    return str(values.get("tenant") or "")


def first_approval(
    thread_id: str, values: Mapping[str, Any], payloads: Iterable[Any]
) -> Approval | None:
    """The approval asked for by the first interrupt payload that comes from the approval
    node, or None when none does."""
    for payload in payloads:
        approval = approval_from(thread_id, values, payload)
        if approval is not None:
            return approval
    return None


def waiting_for(thread_id: str, approval: Approval | None) -> Approval:
    """The approval the thread waits for.

    Raises:
        NothingPendingError: it waits for none (`approval` is None).
    """
    if approval is None:
        raise NothingPendingError(f"thread {thread_id!r} waits for no decision")
    return approval


def resume_value(
    decisions: Sequence[Mapping[str, Any]], *, note: str | None, reviewer: str
) -> dict[str, Any]:
    """What resumes a waiting thread: the decisions, stamped (`stamp_decisions`)."""
    return {"decisions": stamp_decisions(decisions, note=note, reviewer=reviewer)}


def status_after(result: Any) -> str:
    """The run's status from what resuming it returned (its values, or its next interrupt)."""
    values = state_values(result)
    return run_status(values, waiting=bool(values.get(_INTERRUPT)))


def covered(approval: Approval, tenants: frozenset[str] | None) -> bool:
    return tenants is None or approval["tenant"] in tenants


def by_deadline(approvals: Iterable[Approval]) -> list[Approval]:
    """Soonest deadline first; those without one last."""
    return sorted(
        approvals, key=lambda a: (a["deadline"] is None, a["deadline"] or 0.0, a["thread_id"])
    )


@runtime_checkable
class RunControl(Protocol):
    """Where the console finds runs waiting for a human and resumes them."""

    async def approvals(self, tenants: frozenset[str] | None = None) -> list[Approval]:
        """Pending approvals of `tenants` (None: every tenant), soonest deadline first."""
        ...

    async def approval(self, thread_id: str) -> Approval | None:
        """The approval `thread_id` waits for, or None."""
        ...

    async def tenant_of(self, thread_id: str) -> str | None:
        """The tenant of the run on `thread_id`, or None for an unknown thread."""
        ...

    async def decide(
        self,
        thread_id: str,
        decisions: Sequence[Mapping[str, Any]],
        *,
        note: str | None,
        reviewer: str,
    ) -> str:
        """Resume the thread with `decisions` (stamped with `reviewer` and `note`) and wait
        until the run stops again; returns its status then (`run_status`).

        Raises:
            NothingPendingError: the thread waits for no decision.
        """
        ...


def _interrupted_threads(saver: BaseCheckpointSaver[Any]) -> list[str]:
    """Threads that were ever interrupted (candidates; `get_state` tells which still are).

    The embedded savers are asked directly: listing every checkpoint would deserialize them
    all on each dashboard refresh.
    """
    inner: Any = getattr(saver, "inner", saver)  # CommitStampingSaver wraps the real saver
    conn, lock = getattr(inner, "conn", None), getattr(inner, "lock", None)
    if type(inner).__name__ == "SqliteSaver" and conn is not None and lock is not None:
        inner.setup()  # a saver nothing was written to yet has no tables
        with lock:
            rows = conn.execute(
                "SELECT DISTINCT thread_id FROM writes WHERE channel = ? AND checkpoint_ns = ''",
                (_INTERRUPT,),
            ).fetchall()
        return sorted(str(row[0]) for row in rows)
    writes = getattr(inner, "writes", None)
    if type(inner).__name__ == "InMemorySaver" and isinstance(writes, Mapping):
        return sorted(
            {
                str(key[0])
                for key, stored in list(writes.items())
                if key[1] == "" and any(w[1] == _INTERRUPT for w in list(stored.values()))
            }
        )
    threads: dict[str, None] = {}
    for item in saver.list(None):
        configurable = item.config.get("configurable") or {}
        if not configurable.get("checkpoint_ns") and any(
            w[1] == _INTERRUPT for w in item.pending_writes or ()
        ):
            threads[str(configurable["thread_id"])] = None
    return list(threads)


class LocalRunControl:
    """Run control over a compiled graph and its checkpointer (`bastion console`).

    Resuming runs the graph in a worker thread, one decision per thread at a time.
    """

    def __init__(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        *,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
    ) -> None:
        saver = checkpointer or graph.checkpointer
        if not isinstance(saver, BaseCheckpointSaver):
            raise ValueError(
                f"LocalRunControl needs a graph compiled with a checkpointer, got {saver!r}. "
                "Hint: builder.compile(checkpointer=saver), or pass checkpointer=."
            )
        self.graph = graph
        """The compiled graph whose runs are controlled."""
        self.checkpointer = saver
        """Where its threads' checkpoints are."""
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _state(self, thread_id: str) -> tuple[Mapping[str, Any], Approval | None, bool]:
        """The thread's values, pending approval, and whether it exists."""
        snapshot = self.graph.get_state({"configurable": {"thread_id": thread_id}})
        values = state_values(snapshot.values)
        approval = first_approval(thread_id, values, (p.value for p in snapshot.interrupts))
        return values, approval, approval is not None or snapshot.created_at is not None

    def pending(self, tenants: frozenset[str] | None = None) -> list[Approval]:
        """`approvals`, synchronously."""
        found = []
        for thread_id in _interrupted_threads(self.checkpointer):
            approval = self._state(thread_id)[1]
            if approval is not None and covered(approval, tenants):
                found.append(approval)
        return by_deadline(found)

    def resume(
        self,
        thread_id: str,
        decisions: Sequence[Mapping[str, Any]],
        *,
        note: str | None,
        reviewer: str,
    ) -> str:
        """`decide`, synchronously."""
        with self._guard:
            lock = self._locks.setdefault(thread_id, threading.Lock())
        with lock:
            approval = waiting_for(thread_id, self._state(thread_id)[1])
            result = self.graph.invoke(
                Command(resume=resume_value(decisions, note=note, reviewer=reviewer)),
                {"configurable": {"thread_id": thread_id}},
                context=RunContext(tenant=approval["tenant"]),
                durability="sync",
            )
        return status_after(result)

    async def approvals(self, tenants: frozenset[str] | None = None) -> list[Approval]:
        """Pending approvals of `tenants` (None: all), soonest deadline first."""
        return await asyncio.to_thread(self.pending, tenants)

    async def approval(self, thread_id: str) -> Approval | None:
        """The approval `thread_id` waits for, or None."""
        return (await asyncio.to_thread(self._state, thread_id))[1]

    async def tenant_of(self, thread_id: str) -> str | None:
        """The tenant of the run on `thread_id`, or None for an unknown thread."""
        values, _, exists = await asyncio.to_thread(self._state, thread_id)
        return tenant_in(values) if exists else None

    async def decide(
        self,
        thread_id: str,
        decisions: Sequence[Mapping[str, Any]],
        *,
        note: str | None,
        reviewer: str,
    ) -> str:
        """Resume the thread with the decisions; the run's status once it stops again."""
        return await asyncio.to_thread(
            self.resume, thread_id, decisions, note=note, reviewer=reviewer
        )
