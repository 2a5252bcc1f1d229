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
from graphs import OrchestratorBuilder, Services, Settings
from graphs.support import (
    POLICY_DIR,
    SUPPORT_WORKFLOW,
    TENANTS_FILE,
    SupportDB,
    build_support_graph,
    scripted_review,
    support_guard,
)
from memory import open_checkpointer
from nodes import load_chat_model, this_run
from tools import ShadowMode
from tools.shadow import CallChange, ProposedCall, diff_calls

__all__ = [
    "GuardConfig",
    "ShadowReport",
    "TicketDiff",
    "print_shadow_report",
    "proposed_calls",
    "shadow_report",
    "summarize",
    "support_graph",
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
            "tickets": [
                {
                    "id": t.ticket,
                    "baseline": [_call(c) for c in t.baseline],
                    "candidate": [_call(c) for c in t.candidate],
                    "changes": [
                        {"kind": c.kind, "baseline": _call(c.baseline), "candidate": _call(c.candidate)}
                        for c in t.changes
                    ],
                }
                for t in self.tickets
            ],
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


def proposed_calls(values: Mapping[str, Any], write_tools: frozenset[str]) -> list[ProposedCall]:
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


def support_graph(
    settings: Settings, *, services: Services, guard: GuardConfig, shadow: bool
) -> OrchestratorBuilder:
    """The support graph as `settings` configure it, over `services`, with `guard`'s policy and
    tenants, simulating every side effect when `shadow`."""
    model = None if settings.model == "scripted" else load_chat_model(settings.model)
    key = settings.policy_key.encode() if settings.policy_key else None
    return build_support_graph(
        SupportDB(settings.support_db_path),
        model=model,
        guard=support_guard(
            services,
            policy_dir=guard.policy_dir,
            policy_key=key,
            tenants_file=guard.tenants_file,
        ),
        services=services,
        shadow=ShadowMode(graph=True) if shadow else None,
    )


def _shadow_pass(
    settings: Settings,
    tickets: Sequence[dict[str, str]],
    *,
    tenant: str,
    guard: GuardConfig,
    console: Console,
    show_progress: bool,
) -> dict[str, list[ProposedCall]]:
    """Run `tickets` in shadow mode in a fresh, throwaway home: its own business database,
    checkpoints and effect ledger (never Redis), so real state is not touched."""
    with tempfile.TemporaryDirectory(prefix="bastion-shadow-") as home:
        scratch = settings.model_copy(update={"home": Path(home), "redis_url": None})
        services = Services.from_settings(scratch)
        try:
            builder = support_graph(scratch, services=services, guard=guard, shadow=True)
            with open_checkpointer(sqlite_path=scratch.checkpoint_path) as saver:
                graph = builder.compile(checkpointer=saver)
                run_demo(
                    graph,
                    tickets,
                    tenant=tenant,
                    reviewer=scripted_review,
                    console=console,
                    show_progress=show_progress,
                )
                states = {
                    t["id"]: graph.get_state({"configurable": {"thread_id": ticket_thread(t)}})
                    for t in tickets
                }
        finally:
            for backend in (services.effects, services.kill_switch):
                getattr(backend, "close", lambda: None)()
    return {
        ticket: proposed_calls(state.values, SUPPORT_WORKFLOW.write_tools)
        for ticket, state in states.items()
    }


def shadow_report(
    settings: Settings,
    tickets: Sequence[dict[str, str]],
    *,
    tenant: str,
    candidate: GuardConfig,
    console: Console,
    show_progress: bool = False,
) -> ShadowReport:
    """Simulate `tickets` under the shipped configuration and under `candidate`, and diff the
    side effects each ticket would propose.

    Raises:
        PolicyBundleError, GuardConfigError: the candidate does not load (names what to fix).
    """
    runs = [
        _shadow_pass(
            settings,
            tickets,
            tenant=tenant,
            guard=guard,
            console=console,
            show_progress=show_progress,
        )
        for guard in (GuardConfig(), candidate)
    ]
    baseline, proposed = runs
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


def summarize(args: Mapping[str, Any], width: int = 60) -> str:
    """`k=v, ...` with long values cut, at most `width` characters."""
    parts = []
    for name, value in args.items():
        text = str(value)
        parts.append(f"{name}={text if len(text) <= 24 else text[:23] + '…'}")
    line = ", ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


def _change_lines(change: CallChange) -> list[str]:
    before, after = change.baseline, change.candidate
    if change.kind == "added" and after is not None:
        return [f"+ {after.tool}({summarize(after.args)}) {after.verdict}, {after.outcome}"]
    if change.kind == "removed" and before is not None:
        return [f"- {before.tool}({summarize(before.args)}) {before.verdict}, {before.outcome}"]
    assert before is not None and after is not None
    lines = [
        f"~ {before.tool}({summarize(before.args)}) verdict {before.verdict} → {after.verdict}"
        f" · {before.outcome} → {after.outcome}"
    ]
    if dict(before.args) != dict(after.args):
        lines.append(f"    args now ({summarize(after.args)})")
    return lines


def print_shadow_report(console: Console, report: ShadowReport) -> None:
    """The changes per ticket and a summary."""
    candidate = report.candidate.as_dict()
    if report.self_check:
        console.print(
            "no candidate given (--candidate-policy / --candidate-tenants): the current "
            "configuration is compared with itself, a determinism check"
        )
    else:
        console.print(
            f"candidate: policy {candidate['policy']}, tenants {candidate['tenants']} · "
            "baseline: the shipped configuration"
        )
    for ticket in report.tickets:
        lines = [line for change in ticket.changes for line in _change_lines(change)]
        for index, line in enumerate(lines):
            console.print(f"{ticket.ticket if index == 0 else '':<6}{line}", highlight=False)
    console.print(
        f"[bold]{report.changed} of {len(report.tickets)} tickets would change[/] "
        f"(tenant {report.tenant}; both runs simulated in a scratch home: nothing was done)"
    )
