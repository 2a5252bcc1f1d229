"""`bastion audit`, `runs`, `trace`, `replay`, `explain` and `kpis`: what runs did and why."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from console.kpi_view import MAX_EVENTS, events_of_runs, kpi_lines, kpis_of
from console.replay import ReplayReport, replay_run
from graphs import Services, Settings, services_for
from memory import open_checkpointer
from observability import AUDIT_KINDS, AuditLog, AuditRecord, RunSummary, TraceEvent, fold_run
from observability.audit_export import export_audit
from observability.costs import cost_rollup
from observability.explain import explain_decision, explain_run
from observability.slos import check_slos

__all__ = [
    "OBSERVE_COMMANDS",
    "ObserveError",
    "add_observe_commands",
    "newest_records",
    "replay_report",
    "run_observe_command",
]

EXIT_OK, EXIT_FAILED = 0, 1
OBSERVE_COMMANDS = frozenset({"audit", "runs", "trace", "replay", "explain", "kpis"})
"""The commands `run_observe_command` handles."""
_WINDOW = 1000
"""Audit records read per query when walking the log backwards."""


class ObserveError(ValueError):
    """A run or record named on the command line does not exist (says how to find one)."""


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_EVENTS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_EVENTS}, got {value}")
    return value


def add_observe_commands(commands: Any) -> list[argparse.ArgumentParser]:
    """Add the commands; returns the parsers that take `--json`."""
    audit = commands.add_parser("audit", help="verify, export and read the audit log")
    subs = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = subs.add_parser(
        "verify", help="check the hash chain; exit 1 naming each altered, removed, re-ordered, "
        "inserted or truncated record"
    )  # fmt: skip
    export = subs.add_parser("export", help="write the audit log as JSONL or a readable report")
    export.add_argument("--format", choices=["jsonl", "report"], default="jsonl")
    export.add_argument("--out", type=Path, required=True, help="file to write")
    export.add_argument("--tenant", help="only this tenant's records (and `*` ones)")
    tail = subs.add_parser("tail", help="the newest audit records, oldest of them first")
    tail.add_argument("--limit", type=_count, default=20, help="newest N (default 20)")
    tail.add_argument("--kind", choices=AUDIT_KINDS, help="only records of this kind")
    tail.add_argument("--run", help="only this run's records")
    tail.add_argument("--tenant", help="only this tenant's records (and `*` ones)")
    runs = commands.add_parser("runs", help="traced runs, most recently active first")
    runs.add_argument("--tenant", help="only this tenant's runs")
    runs.add_argument("--limit", type=_count, default=20, help="newest N (default 20)")
    trace = commands.add_parser("trace", help="a run's reasoning trace events, in order")
    replay = commands.add_parser(
        "replay", help="walk a run step by step from its checkpoints and trace (nothing re-runs)"
    )
    for sub in (trace, replay):
        sub.add_argument("run", help="run id (`bastion runs` lists them)")
    explain = commands.add_parser("explain", help="why a decision was made, in plain language")
    explain.add_argument("decision", help="decision id (`bastion trace <run>` shows them)")
    kpis = commands.add_parser("kpis", help="KPIs, decision SLOs and costs from the traces")
    kpis.add_argument("--tenant", help="only this tenant's runs")
    return [verify, export, tail, runs, trace, replay, explain, kpis]


def _time(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at).strftime("%m-%d %H:%M:%S")


def _emit(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _short(text: Any, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _services(settings: Settings) -> Services:
    """The shared services with everything this process traced written (the CLI reads what
    its own runs traced)."""
    services = services_for(settings)
    services.tracer.flush()
    return services


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A compact table whose last column (free text) folds and takes what width is left."""
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    for index, column in enumerate(columns):
        last = index == len(columns) - 1
        table.add_column(column, no_wrap=not last, overflow="fold", min_width=24 if last else None)
    for row in rows:
        table.add_row(*(escape("" if cell is None else str(cell)) for cell in row))
    return table


def _goal(goal: str) -> str:
    """A request without its `From:` / `Subject:` header lines."""
    head, blank, body = goal.partition("\n\n")
    return body if blank and head.startswith("From:") else goal


# -- audit -----------------------------------------------------------------------------------


def newest_records(audit: AuditLog, **filters: str | None) -> Iterator[AuditRecord]:
    """Records matching `filters` (tenant, kind, run_id), newest first, read in windows from
    the head backwards (the log is never read whole to find its end)."""
    head = audit.head()
    high = head["seq"] if head else 0
    while high > 0:
        low = max(high - _WINDOW, 0)
        window = audit.records(after=low, limit=_WINDOW, **filters)  # type: ignore[arg-type]
        yield from reversed([r for r in window if r["seq"] <= high])
        high = low


def _verify(args: argparse.Namespace, services: Services, console: Console) -> int:
    report = services.audit.verify()
    if args.json:
        _emit(report.as_dict())
    elif report.ok:
        head = report.head
        console.print(
            f"[green]audit log intact[/]: {report.records} records"
            + (f", head #{head['seq']} {head['hash'][:16]}…" if head else " (empty)")
        )
    else:
        console.print(
            f"[red]audit log TAMPERED[/]: {len(report.problems)} problem(s) in "
            f"{report.records} records"
        )
        for problem in report.problems:
            console.print(
                f"  record {problem.seq}: [bold]{problem.kind}[/] · {escape(problem.message)}",
                highlight=False,
            )
    return EXIT_OK if report.ok else EXIT_FAILED


def _export(args: argparse.Namespace, services: Services, console: Console) -> int:
    result = export_audit(services.audit, args.out, tenant=args.tenant, fmt=args.format)
    if args.json:
        _emit(result.as_dict())
    else:
        console.print(escape(result.text), highlight=False)
    return EXIT_OK if result.ok else EXIT_FAILED


def _tail(args: argparse.Namespace, services: Services, console: Console) -> int:
    found = newest_records(services.audit, tenant=args.tenant, kind=args.kind, run_id=args.run)
    records = [record for _, record in zip(range(args.limit), found, strict=False)][::-1]
    if args.json:
        _emit({"records": records})
    elif not records:
        console.print("no audit records" + (" that match" if args.kind or args.run else ""))
    else:
        console.print("[bold]Audit log[/] (newest last)")
        for r in records:
            where = ", ".join(filter(None, [r["run_id"] and f"run {r['run_id']}", r["tenant"]]))
            console.print(
                f"{r['seq']:>6} {_time(r['ts'])} [bold]{r['kind']:<16}[/] {escape(r['actor'])} → "
                f"{escape(r['subject'])} ({escape(where)})\n"
                f"       {escape(_short(json.dumps(r['detail'], default=str), 110))}",
                highlight=False,
            )
    return EXIT_OK


# -- runs and traces -------------------------------------------------------------------------


def _run_row(run: RunSummary) -> tuple[Any, ...]:
    cost = run["cost"]
    return (
        run["run_id"], run["status"], f"{run['tenant']}/{run['workflow']}", run["steps"],
        f"{cost['usd']:.4f}", run["escalations"], run["incidents"], _time(run["started_at"]),
        _short(_goal(run["goal"])),
    )  # fmt: skip


def _runs(args: argparse.Namespace, services: Services, console: Console) -> int:
    runs = services.traces.runs(tenant=args.tenant, limit=args.limit)
    if args.json:
        _emit({"runs": runs})
    elif not runs:
        console.print(
            "no traced runs"
            + (f" of tenant {args.tenant!r}" if args.tenant else "")
            + " · `bastion demo` or `bastion run` makes some"
        )
    else:
        columns = ("run", "status", "tenant/workflow", "steps", "cost $", "asked", "trips",
                   "started", "goal")  # fmt: skip
        rows = [_run_row(run) for run in runs]
        console.print(_table("Runs (most recently active first)", columns, rows))
        console.print("a run's steps: bastion replay <run> · its raw trace: bastion trace <run>")
    return EXIT_OK


def _events_of(services: Services, run_id: str) -> list[TraceEvent]:
    events = services.traces.events(run_id=run_id, limit=MAX_EVENTS)
    if not events:
        raise ObserveError(
            f"no trace of run {run_id!r}. Hint: `bastion runs` lists the traced runs and their ids"
        )
    return events


def _summary(events: Sequence[TraceEvent]) -> RunSummary:
    summary = None
    for event in events:
        summary = fold_run(summary, event)
    assert summary is not None
    return summary


def _trace(args: argparse.Namespace, services: Services, console: Console) -> int:
    events = _events_of(services, args.run)
    if args.json:
        _emit({"run": _summary(events), "events": events})
        return EXIT_OK
    start = events[0]["ts"]
    rows = [
        (index, f"{e['ts'] - start:.3f}", e["node"], "" if e["status"] == "ok" else e["status"],
         f"{e['duration_ms']:.1f}", f"{e['cost']['usd']:.5f}",
         " ".join(v["decision_id"] for v in e["verdicts"]), _short(e["error"] or e["output"], 90))
        for index, e in enumerate(events, 1)
    ]  # fmt: skip
    columns = ("#", "+s", "node", "status", "ms", "cost $", "decisions", "output")
    summary = _summary(events)
    title = f"Trace of run {args.run} ({summary['status']}, started {_time(start)})"
    console.print(_table(title, columns, rows))
    console.print("why a decision: bastion explain <decision> · all fields: --json")
    return EXIT_OK


def replay_report(settings: Settings, services: Services, run_id: str) -> ReplayReport:
    """`run_id` walked from its checkpoints and trace (nothing is executed).

    Raises:
        ReplayError: the run has no trace.
    """
    events = services.traces.events(run_id=run_id, limit=MAX_EVENTS)
    status = _summary(events)["status"] if events else ""
    with open_checkpointer(
        sqlite_path=settings.checkpoint_path, redis_url=settings.redis_url
    ) as saver:
        return replay_run(run_id, events=events, saver=saver, status=status, explain=explain_run)


def _replay(
    args: argparse.Namespace, settings: Settings, services: Services, console: Console
) -> int:
    report = replay_report(settings, services, args.run)
    if args.json:
        _emit(report.as_dict())
        return EXIT_OK
    say = lambda text: console.print(text, highlight=False)  # noqa: E731
    say(
        f"[bold]run {report.run_id}[/] ({report.status or 'unknown'}) · thread "
        f"{escape(report.thread_id)} · tenant {escape(report.tenant)} · {len(report.steps)} "
        f"steps from {report.checkpoints} checkpoints and {report.events} trace events"
    )
    say(f"request: {escape(report.request)}")
    for number, step in enumerate(report.steps, 1):
        timing = [] if step.duration_ms is None else [f"{step.duration_ms:.1f} ms"]
        if step.cost and step.cost.get("usd"):
            timing.append(f"${step.cost['usd']:.5f}")
        if step.paused:
            timing.append("paused for a human")
        where = f"step {step.step}" if step.step is not None else "not checkpointed"
        timed = ", ".join(timing) or "untraced"
        say(f"[bold]{number:>2}. {step.node}[/] [dim]({where}; {timed})[/]")
        if step.explanation:
            say(f"    [italic]{escape(step.explanation)}[/]")
        for line in step.changes:
            say(f"    · {escape(line)}")
        if step.memory_commits:
            say(f"    · memory commits: {', '.join(step.memory_commits)}")
    for note in report.notes:
        say(f"[yellow]note:[/] {escape(note)}")
    say("replayed from stored checkpoints and traces: no model or tool was called")
    return EXIT_OK


def _decision_records(services: Services, decision_id: str) -> list[AuditRecord]:
    """The audit records of the run that made `decision_id` (empty if it is not on record)."""
    for kind in ("decision", "approval"):
        for record in newest_records(services.audit, kind=kind):
            if record["subject"] == decision_id:
                run = record["run_id"]
                return services.audit.records(run_id=run, limit=MAX_EVENTS) if run else [record]
    return []


def _explain(args: argparse.Namespace, services: Services, console: Console) -> int:
    records = _decision_records(services, args.decision)
    run_ids = sorted({r["run_id"] for r in records if r["run_id"]})
    if run_ids:
        events = events_of_runs(services, run_ids)
    else:  # not on record (the audit log was unreachable): look through the newest traces
        events = services.traces.events(limit=MAX_EVENTS)
    explanation = explain_decision(args.decision, events, records)
    if args.json:
        _emit(explanation.as_dict())
    else:
        console.print(escape(explanation.text), highlight=False)
    return EXIT_OK


# -- KPIs ------------------------------------------------------------------------------------


def _kpis(args: argparse.Namespace, services: Services, console: Console) -> int:
    events = services.traces.events(tenant=args.tenant, limit=MAX_EVENTS)
    kpis = kpis_of(services, tenant=args.tenant, events=events)
    costs = cost_rollup(events, by=("tenant", "workflow"))
    slos = check_slos(kpis)
    if args.json:
        _emit({
            "tenant": args.tenant,
            "kpis": kpis.as_dict(),
            "slos": [slo.as_dict() for slo in slos],
            "costs": [line.as_dict() for line in costs],
        })  # fmt: skip
        return EXIT_OK
    scope = f"tenant {args.tenant}" if args.tenant else "all tenants"
    console.print(f"[bold]KPIs[/] ({scope}, from the traces)")
    for line in kpi_lines(kpis):
        console.print(f"  {escape(line)}", highlight=False)
    console.print("[bold]decision SLOs[/]")
    style = {"met": "green", "missed": "red", "no data": "dim"}
    for slo in slos:
        console.print(f"  [{style[slo.status]}]{escape(slo.text)}[/]", highlight=False)
    rows = [
        (line.keys["tenant"], line.keys["workflow"], line.runs, line.steps,
         f"{line.tokens_in + line.tokens_out:,}", f"{line.usd:.4f}",
         f"{line.usd / line.runs:.4f}" if line.runs else "")
        for line in costs
    ]  # fmt: skip
    columns = ("tenant", "workflow", "runs", "steps", "tokens", "cost $", "per run $")
    if rows:
        console.print(_table("Costs by tenant and workflow", columns, rows))
    else:
        console.print("no traced runs, no costs · `bastion demo` or `bastion run` makes some")
    return EXIT_OK


HANDLERS = {
    "verify": _verify,
    "export": _export,
    "tail": _tail,
    "runs": _runs,
    "trace": _trace,
    "explain": _explain,
    "kpis": _kpis,
}


def run_observe_command(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Run one of the commands added by `add_observe_commands`.

    Exit codes: 0 done; 1 the audit log is tampered with (verify) or an export failed; 2 an
    unknown run or decision (with a hint), or a backend that cannot be reached.
    """
    name = args.audit_command if args.command == "audit" else args.command
    services = _services(settings)
    if name == "replay":
        return _replay(args, settings, services, console)
    return HANDLERS[name](args, services, console)
