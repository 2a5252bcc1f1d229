"""`bastion demo`: runs the sample support tickets end to end and prints what happened."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from console.runner import Reviewer, RunReport, run_to_end
from graphs.support import SUPPORT_WORKFLOW, format_ticket

__all__ = ["demo_json", "load_tickets", "print_report", "run_demo", "ticket_thread"]

VERDICT_MARK = {"allow": "A", "deny": "D", "escalate": "E", "halt": "H"}
STATUS_STYLE = {
    "resolved": "green",
    "unresolved": "yellow",
    "halted": "red",
    "rejected": "magenta",
    "failed": "red",
}


def load_tickets(path: Path | None = None) -> list[dict[str, str]]:
    """The sample tickets shipped with the repo, or a JSON list of {id, from, subject, body}."""
    text = (
        path.read_text()
        if path
        else resources.files("graphs.support").joinpath("data/tickets.json").read_text()
    )
    tickets = json.loads(text)
    for index, ticket in enumerate(tickets):
        missing = {"id", "from", "subject", "body"} - set(ticket)
        if missing:
            raise ValueError(
                f"ticket #{index} in {path or 'the sample tickets'} lacks "
                f"{sorted(missing)}; each needs id, from, subject and body"
            )
    return tickets


def ticket_thread(ticket: dict[str, str], prefix: str = "support-") -> str:
    """The thread a ticket runs on: `<prefix><id>`."""
    return f"{prefix}{ticket['id']}"


def run_demo(
    graph: Any,
    tickets: Sequence[dict[str, str]],
    *,
    tenant: str,
    reviewer: Reviewer,
    console: Console,
    show_progress: bool,
    thread_prefix: str = "support-",
) -> list[tuple[dict[str, str], RunReport]]:
    """Run every ticket on its own thread (`<thread_prefix><id>`) and collect the reports."""
    reports = []
    progress = Progress(
        TextColumn("[bold]tickets"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
        transient=True,
    )
    with progress:
        task = progress.add_task("", total=len(tickets))
        for ticket in tickets:
            progress.update(task, description=f"{ticket['id']} {ticket['subject'][:30]}")
            report = run_to_end(
                graph,
                format_ticket(ticket["from"], ticket["subject"], ticket["body"]),
                thread_id=ticket_thread(ticket, thread_prefix),
                tenant=tenant,
                reviewer=reviewer,
                write_tools=SUPPORT_WORKFLOW.write_tools,
            )
            reports.append((ticket, report))
            progress.advance(task)
    return reports


def print_report(
    console: Console,
    reports: Sequence[tuple[dict[str, str], RunReport]],
    effects_before: dict[str, int],
    effects_after: dict[str, int],
) -> None:
    """A table per ticket, totals, and the side effects the business database holds."""
    table = Table(title="Support tickets", title_justify="left")
    table.add_column("ticket", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    for column in ("steps", "tokens", "cost $"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdicts", no_wrap=True)
    table.add_column("effects", justify="right", no_wrap=True)
    table.add_column("what happened", overflow="fold", max_width=60)
    for ticket, r in reports:
        verdicts = " ".join(f"{VERDICT_MARK[kind]}{n}" for kind, n in sorted(r.verdicts.items()))
        effects = _effects_cell(r)
        detail = "→".join(r.routes) if r.status == "resolved" else r.reason
        if r.guard_notes:
            detail += "".join(f"\n[dim]· {note}[/]" for note in r.guard_notes)
        table.add_row(
            ticket["id"],
            f"[{STATUS_STYLE.get(r.status, 'white')}]{r.status}",
            str(r.steps),
            f"{r.tokens:,}",
            f"{r.cost_usd:.4f}",
            verdicts,
            effects,
            detail,
        )
    console.print(table)
    console.print(
        "verdicts: A allow · D deny · E escalate (approval) · H halt;  "
        "effects: writes this run, ↺ = replayed, not repeated, sim = simulated (shadow mode)"
    )
    totals = _totals(reports)
    console.print(
        f"[bold]{totals['tickets']} tickets[/]: "
        + ", ".join(f"{n} {status}" for status, n in sorted(totals["outcomes"].items()))
        + f" · {totals['steps']} steps · {totals['tokens']:,} tokens · ${totals['cost_usd']:.4f}"
        + f" · {totals['approvals']} approvals · {totals['flagged']} flagged for review"
    )
    new = {
        t: effects_after[t] - effects_before[t]
        for t in ("refunds", "order_events", "outbound_emails")
    }
    console.print(
        f"business database: {effects_after['refunds']} refunds, "
        f"{effects_after['order_events']} order changes, {effects_after['outbound_emails']} "
        f"emails ({', '.join(f'+{n} {t}' for t, n in new.items())} this run)"
    )
    remembered = [(t["id"], c) for t, r in reports for c in r.memory_commits]
    if remembered:
        console.print(
            f"memory: {len(remembered)} commit{'s' if len(remembered) > 1 else ''} ("
            + ", ".join(f"{ticket} {commit}" for ticket, commit in remembered)
            + ") · `bastion memory log` lists them"
        )
    if totals["simulated"]:
        console.print(
            f"[bold]shadow mode[/]: {totals['simulated']} side effects simulated, "
            + (f"{totals['effects']} performed" if totals["effects"] else "none performed")
        )


def _effects_cell(report: RunReport) -> str:
    """Writes this run (with replays), or the simulated ones in shadow mode."""
    cells = []
    if report.effects or not report.simulated:
        cells.append(f"{report.effects}" + (f" ({report.replayed}↺)" if report.replayed else ""))
    if report.simulated:
        cells.append(f"{report.simulated} sim")
    return " + ".join(cells)


def _totals(reports: Sequence[tuple[dict[str, str], RunReport]]) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    for _, r in reports:
        outcomes[r.status] = outcomes.get(r.status, 0) + 1
    return {
        "tickets": len(reports),
        "outcomes": outcomes,
        "steps": sum(r.steps for _, r in reports),
        "tokens": sum(r.tokens for _, r in reports),
        "cost_usd": round(sum(r.cost_usd for _, r in reports), 6),
        "approvals": sum(r.approvals for _, r in reports),
        "flagged": sum(r.flagged for _, r in reports),
        "effects": sum(r.effects for _, r in reports),
        "replayed": sum(r.replayed for _, r in reports),
        "simulated": sum(r.simulated for _, r in reports),
        "memory_commits": sum(len(r.memory_commits) for _, r in reports),
    }


def demo_json(
    reports: Sequence[tuple[dict[str, str], RunReport]],
    effects_before: dict[str, int],
    effects_after: dict[str, int],
    *,
    shadow: bool = False,
) -> dict[str, Any]:
    """The machine-readable demo result (each ticket with its `run_id`, for `bastion undo`)."""
    return {
        "shadow": shadow,
        "tickets": [{"id": t["id"], **r.as_dict()} for t, r in reports],
        "totals": _totals(reports),
        "database": {"before": effects_before, "after": effects_after},
    }
