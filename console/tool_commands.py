"""`bastion effects`, `bastion undo` and `bastion shadow`: the tool layer from a terminal."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from console.cli_audit import audit_cli
from console.demo import load_tickets
from console.shadow_report import GuardConfig, ShadowReport, shadow_report
from graphs import Services, Settings, services_for
from graphs.support import SupportDB, make_support_tools
from tools import EffectRecord, ExecutionGateway, ToolRegistry
from tools.shadow import CallChange
from tools.undo import UndoEntry, UndoReport, undo_run

__all__ = ["TOOL_COMMANDS", "add_tool_commands", "run_tool_command"]

EXIT_OK, EXIT_RUN_FAILED = 0, 1
TOOL_COMMANDS = frozenset({"effects", "undo", "shadow"})
"""The commands `run_tool_command` handles."""
UNDO_STYLE = {
    "undone": "green",
    "already_undone": "dim",
    "not_reversible": "yellow",
    "refused": "magenta",
    "failed": "red",
    "would_undo": "cyan",
}


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100000, got {value}")
    return value


def add_tool_commands(commands: Any) -> list[argparse.ArgumentParser]:
    """Add `effects`, `undo` and `shadow`; returns the parsers (for shared flags)."""
    effects = commands.add_parser("effects", help="list recorded side effects (newest last)")
    effects.add_argument("--run", help="only this run's effects")
    effects.add_argument("--thread", help="only this thread's effects")
    effects.add_argument("--tenant", help="only this tenant's effects")
    effects.add_argument("--limit", type=_limit, default=100, help="newest N (default 100)")
    undo = commands.add_parser("undo", help="compensate a run's side effects, newest first")
    undo.add_argument("run", help="the run id (`bastion effects` lists them)")
    undo.add_argument("--by", default=os.environ.get("USER") or "operator", help="who (recorded)")
    undo.add_argument("--reason", default="requested via bastion undo", help="why (recorded)")
    undo.add_argument("--dry-run", action="store_true", help="only show what would be undone")
    shadow = commands.add_parser(
        "shadow",
        help="simulate the tickets under a candidate policy and diff the side effects they "
        "would propose against the current configuration (nothing is done)",
    )
    shadow.add_argument("--tickets", type=Path, help="JSON list of {id, from, subject, body}")
    shadow.add_argument("--tenant", help="tenant id (default: BASTION_TENANT or `demo`)")
    shadow.add_argument("--candidate-policy", type=Path, help="a Rego policy bundle directory")
    shadow.add_argument("--candidate-tenants", type=Path, help="a tenants JSON file")
    return [effects, undo, shadow]


def _time(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _effect_row(record: EffectRecord) -> dict[str, Any]:
    intent, outcome, undo = record.intent, record.outcome, record.compensation
    return {
        "seq": record.seq,
        "time": _time(record.started_at),
        "started_at": record.started_at,
        "run_id": intent.run_id,
        "thread_id": intent.thread_id,
        "tenant": intent.tenant,
        "agent": intent.agent,
        "tool": intent.tool,
        "key": intent.key,
        "side_effect": intent.side_effect,
        "args": dict(intent.args),
        "status": record.status,
        "ok": None if outcome is None else outcome.ok,
        "undone": bool(undo and undo.ok),
        "compensation": None if undo is None else asdict(undo),
    }


def _effects(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    records = services_for(settings).effects.effects(
        run_id=args.run, thread_id=args.thread, tenant=args.tenant, limit=args.limit
    )
    rows = [_effect_row(r) for r in records]
    if args.json:
        print(json.dumps({"effects": rows}, indent=2))
        return EXIT_OK
    if not rows:
        console.print("no side effects recorded" + (" that match" if _filtered(args) else ""))
        return EXIT_OK
    table = Table(title="Side effects (newest last)", title_justify="left")
    for column in ("seq", "time", "run", "thread", "tool", "status", "undone", "args"):
        table.add_column(column, no_wrap=column != "args", overflow="fold")
    for row in rows:
        undone = row["compensation"] and ("yes" if row["undone"] else "tried")
        status = row["status"] if row["ok"] is not False else f"{row['status']} (error)"
        table.add_row(
            str(row["seq"]),
            row["time"],
            row["run_id"],
            row["thread_id"],
            row["tool"],
            status,
            undone or "",
            _summarize(row["args"]),
        )
    console.print(table)
    console.print(
        "undo a run: bastion undo <run> (--dry-run shows what it would do); "
        "shadow records were simulated, nothing to undo"
    )
    return EXIT_OK


def _filtered(args: argparse.Namespace) -> bool:
    return any((args.run, args.thread, args.tenant))


def _entry_line(entry: UndoEntry) -> str:
    label = entry.status.replace("_", " ")
    line = f"[{UNDO_STYLE[entry.status]}]{label:<15}[/] {entry.tool}({_summarize(entry.args, 50)})"
    return f"{line}\n    {entry.detail}" if entry.detail else line


def _undo_summary(report: UndoReport, dry_run: bool) -> str:
    counts: dict[str, int] = {}
    for entry in report.entries:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    if not counts:
        return "nothing to undo: the run's recorded effects were simulated (shadow mode)"
    text = " · ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    if dry_run:
        return f"dry run, nothing changed: {text}"
    if counts.get("failed"):
        text += f"; run `bastion undo {report.run_id}` again to retry the failed ones"
    if counts.get("refused"):
        text += "; refused ones need a person (see why above)"
    return text


def _undo(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    services = services_for(settings)
    registry = ToolRegistry(
        make_support_tools(SupportDB(settings.support_db_path), services.memory)
    )
    gateway = ExecutionGateway(registry, effects=services.effects)
    report = undo_run(gateway, args.run, by=args.by, reason=args.reason, dry_run=args.dry_run)
    if report.entries and not args.dry_run:
        _audit_undo(services, report, args)
    if args.json:
        print(json.dumps({**report.as_dict(), "dry_run": args.dry_run}, indent=2))
    else:
        console.print(f"undo run {report.run_id} (by {args.by}: {args.reason}), newest first:")
        for entry in report.entries:
            console.print(_entry_line(entry), highlight=False)
        console.print(_undo_summary(report, args.dry_run))
    return EXIT_OK if report.ok else EXIT_RUN_FAILED


def _audit_undo(services: Services, report: UndoReport, args: argparse.Namespace) -> None:
    """Put the undo on record: what was compensated, refused or failed, per effect."""
    (latest,) = services.effects.effects(run_id=report.run_id, limit=1) or (None,)
    audit_cli(
        services.audit,
        kind="undo",
        by=args.by,
        tenant=latest.intent.tenant if latest else "*",
        run_id=report.run_id,
        subject=report.run_id,
        detail={
            "reason": args.reason,
            "ok": report.ok,
            "effects": [
                {"key": e.key, "tool": e.tool, "status": e.status, "detail": e.detail[:200]}
                for e in report.entries
            ],
        },
    )


def _summarize(args: Mapping[str, Any], width: int = 60) -> str:
    """`k=v, ...` with long values cut, at most `width` characters."""
    parts = []
    for name, value in args.items():
        text = " ".join(str(value).split())  # an email body on one line
        parts.append(f"{name}={text if len(text) <= 24 else text[:23] + '…'}")
    line = ", ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


def _change_lines(change: CallChange) -> list[str]:
    before, after = change.baseline, change.candidate
    if change.kind == "added" and after is not None:
        return [f"+ {after.tool}({_summarize(after.args)}) {after.verdict}, {after.outcome}"]
    if change.kind == "removed" and before is not None:
        return [f"- {before.tool}({_summarize(before.args)}) {before.verdict}, {before.outcome}"]
    assert before is not None and after is not None
    verdict = (
        before.verdict if before.verdict == after.verdict else f"{before.verdict} → {after.verdict}"
    )
    outcome = (
        before.outcome if before.outcome == after.outcome else f"{before.outcome} → {after.outcome}"
    )
    lines = [f"~ {before.tool}({_summarize(before.args, 48)}) {verdict}, {outcome}"]
    if dict(before.args) != dict(after.args):
        lines.append(f"    args now ({_summarize(after.args)})")
    return lines


def _print_shadow_report(console: Console, report: ShadowReport) -> None:
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


def _shadow(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    defaults = GuardConfig()
    candidate = GuardConfig(
        policy_dir=args.candidate_policy or defaults.policy_dir,
        tenants_file=args.candidate_tenants or defaults.tenants_file,
    )
    report = shadow_report(
        settings,
        load_tickets(args.tickets),
        tenant=args.tenant or settings.tenant,
        candidate=candidate,
        console=console,
        show=not args.json,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_shadow_report(console, report)
    return EXIT_OK


HANDLERS = {"effects": _effects, "undo": _undo, "shadow": _shadow}


def run_tool_command(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Run one of the commands added by `add_tool_commands`."""
    return HANDLERS[args.command](args, settings, console)
