"""`bastion shadow`: the tickets simulated under a baseline and a candidate configuration, and
how the side effects they would propose differ."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from rich.console import Console

from console.demo import run_demo, ticket_thread
from graphs import Services, Settings
from graphs.support import (
    POLICY_DIR,
    SUPPORT_WORKFLOW,
    TENANTS_FILE,
    scripted_review,
    support_builder,
)
from memory import open_checkpointer
from nodes import this_run
from tools import CallChange, ProposedCall, ShadowMode, diff_calls

__all__ = [
    "GuardConfig",
    "ShadowReport",
    "TicketDiff",
    "shadow_report",
]

SHIPPED = "shipped"


@dataclass(frozen=True, kw_only=True)
class GuardConfig:
    """The guard configuration one shadow pass runs under."""

    policy_dir: Path = POLICY_DIR
    """The Rego policy bundle."""
    tenants_file: Path = TENANTS_FILE
    """The tenants' risk appetite and budgets."""

    def as_dict(self) -> dict[str, str]:
        """Paths, or `shipped` for the ones the repo ships."""
        return {
            "policy": SHIPPED if self.policy_dir == POLICY_DIR else str(self.policy_dir),
            "tenants": SHIPPED if self.tenants_file == TENANTS_FILE else str(self.tenants_file),
        }


@dataclass(frozen=True, kw_only=True)
class TicketDiff:
    """One ticket's proposed side effects under both configurations."""

    ticket: str
    """Ticket id."""
    baseline: tuple[ProposedCall, ...]
    """What the baseline run proposed."""
    candidate: tuple[ProposedCall, ...]
    """What the candidate run proposed."""
    changes: tuple[CallChange, ...]
    """`diff_calls(baseline, candidate)`."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "id": self.ticket,
            "baseline": [_call(c) for c in self.baseline],
            "candidate": [_call(c) for c in self.candidate],
            "changes": [
                {"kind": c.kind, "baseline": _call(c.baseline), "candidate": _call(c.candidate)}
                for c in self.changes
            ],
        }


def _call(call: ProposedCall | None) -> dict[str, Any] | None:
    return None if call is None else {**asdict(call), "args": dict(call.args)}


@dataclass(frozen=True, kw_only=True)
class ShadowReport:
    """How a candidate configuration would change the side effects of the same tickets."""

    tenant: str
    """Tenant the tickets ran for."""
    baseline: GuardConfig
    """The configuration compared against."""
    candidate: GuardConfig
    """The configuration under test (the baseline itself for a determinism check)."""
    tickets: tuple[TicketDiff, ...]
    """Per ticket, in input order."""

    @property
    def self_check(self) -> bool:
        """No candidate was given: the baseline was compared with itself."""
        return self.baseline == self.candidate

    @property
    def changed(self) -> int:
        """Tickets whose proposed side effects differ."""
        return sum(bool(t.changes) for t in self.tickets)

    def as_dict(self) -> dict[str, Any]:
        """The structured diff, JSON-ready."""
        return {
            "tenant": self.tenant,
            "baseline": self.baseline.as_dict(),
            "candidate": self.candidate.as_dict(),
            "self_check": self.self_check,
            "tickets": [t.as_dict() for t in self.tickets],
            "changed": self.changed,
            "total": len(self.tickets),
        }


def _outcome(answer: BaseMessage | None) -> str:
    if not isinstance(answer, ToolMessage) or not answer.artifact:
        return "not run"  # never answered, or refused by the guard or a reviewer
    if answer.status == "error":
        return "failed"
    if answer.artifact.get("shadow"):
        return "simulated"
    return "replayed" if answer.artifact.get("replayed") else "ran"


def _proposed_calls(values: Mapping[str, Any], write_tools: frozenset[str]) -> list[ProposedCall]:
    """The side-effecting calls the latest run in `values` (a final graph state) proposed.

    The verdict is the guard's own (the first for the call): a reviewer's later decision shows
    in the outcome, and a policy change that makes a call need approval must show even when the
    scripted reviewer then approves it.
    """
    _, run = this_run(values.get("messages") or [])
    verdicts: dict[str, str] = {}
    for record in values.get("verdicts") or []:
        verdicts.setdefault(record["call_id"], record["kind"])
    answers = {m.tool_call_id: m for m in run if isinstance(m, ToolMessage)}
    return [
        ProposedCall(
            tool=call["name"],
            args=dict(call["args"]),
            verdict=verdicts.get(str(call["id"]), "none"),
            outcome=_outcome(answers.get(str(call["id"]))),
        )
        for message in run
        if isinstance(message, AIMessage)
        for call in message.tool_calls
        if call["name"] in write_tools
    ]


def _shadow_pass(
    settings: Settings,
    tickets: Sequence[dict[str, str]],
    *,
    tenant: str,
    guard: GuardConfig,
    console: Console,
    show: bool,
) -> dict[str, list[ProposedCall]]:
    """Run `tickets` in shadow mode in a fresh, throwaway home: its own business database,
    checkpoints and effect ledger (never Redis), so real state is not touched."""
    with tempfile.TemporaryDirectory(prefix="bastion-shadow-") as home:
        scratch = settings.model_copy(update={"home": Path(home), "redis_url": None})
        services = Services.from_settings(scratch)
        try:
            builder = support_builder(
                scratch,
                services=services,
                shadow=ShadowMode(graph=True),
                policy_dir=guard.policy_dir,
                tenants_file=guard.tenants_file,
            )
            with open_checkpointer(sqlite_path=scratch.checkpoint_path) as saver:
                graph = builder.compile(checkpointer=saver)
                run_demo(
                    graph,
                    tickets,
                    tenant=tenant,
                    reviewer=scripted_review,
                    console=console,
                    show_progress=show,
                )
                states = {
                    t["id"]: graph.get_state({"configurable": {"thread_id": ticket_thread(t)}})
                    for t in tickets
                }
        finally:
            for backend in (services.effects, services.kill_switch):
                getattr(backend, "close", lambda: None)()
    return {
        ticket: _proposed_calls(state.values, SUPPORT_WORKFLOW.write_tools)
        for ticket, state in states.items()
    }


def shadow_report(
    settings: Settings,
    tickets: Sequence[dict[str, str]],
    *,
    tenant: str,
    candidate: GuardConfig,
    console: Console,
    show: bool = False,
) -> ShadowReport:
    """Simulate `tickets` under the shipped configuration and under `candidate`, and diff the
    side effects each ticket would propose (`show`: progress bars on `console`).

    Raises:
        PolicyBundleError, GuardConfigError: the candidate does not load (names what to fix).
    """
    # The candidate first: a bundle that does not load stops the report before any run.
    proposed, baseline = (
        _shadow_pass(settings, tickets, tenant=tenant, guard=guard, console=console, show=show)
        for guard in (candidate, GuardConfig())
    )
    return ShadowReport(
        tenant=tenant,
        baseline=GuardConfig(),
        candidate=candidate,
        tickets=tuple(
            TicketDiff(
                ticket=t["id"],
                baseline=tuple(baseline[t["id"]]),
                candidate=tuple(proposed[t["id"]]),
                changes=tuple(diff_calls(baseline[t["id"]], proposed[t["id"]])),
            )
            for t in tickets
        ),
    )
