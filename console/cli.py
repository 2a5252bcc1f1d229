"""The `bastion` command line: `demo`, `run "<ticket>"`, `undo`, `policy-check` and friends."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from console.demo import demo_json, load_tickets, print_report, run_demo
from console.guard_commands import add_guard_commands, run_guard_command
from console.kpi_view import kpi_lines, kpis_of
from console.memory_commands import add_memory_commands, run_memory_command
from console.observe_commands import OBSERVE_COMMANDS, add_observe_commands, run_observe_command
from console.operate_commands import (
    OPERATE_COMMANDS,
    add_operate_commands,
    console_url,
    run_operate_command,
)
from console.review import TerminalReviewer
from console.runner import Reviewer, run_to_end
from console.tool_commands import TOOL_COMMANDS, add_tool_commands, run_tool_command
from graphs import Settings, SettingsError, services_for
from graphs.support import (
    SUPPORT_WORKFLOW,
    SupportDB,
    format_ticket,
    scripted_review,
    support_builder,
)
from guards import BudgetBackendError, KillSwitchBackendError
from memory import CheckpointerConfigError, MemoryBackendError, open_checkpointer
from nodes import ModelConfigError
from observability import AuditConfigError, TraceBackendError
from observability.explain import ExplainError
from tools import EffectLedgerError

__all__ = ["main"]

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2
FAILED_STATUSES = {"failed", "halted", "rejected"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bastion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the sample support tickets end to end")
    demo.add_argument("--tickets", type=Path, help="JSON list of {id, from, subject, body}")
    demo.add_argument(
        "--interactive",
        action="store_true",
        help="ask in the terminal for approvals instead of the scripted reviewer",
    )
    demo.add_argument(
        "--shadow",
        action="store_true",
        help="simulate every side effect (on `shadow-<id>` threads): nothing is done",
    )
    run = commands.add_parser("run", help="handle one support ticket")
    run.add_argument("text", help="the ticket body (or a full ticket with From:/Subject: lines)")
    run.add_argument("--from", dest="sender", help="customer email, if the text has no From:")
    run.add_argument("--subject", default="Support request")
    run.add_argument("--thread", help="thread id to use or continue (default: a new one)")
    run.add_argument(
        "--reviewer",
        choices=["interactive", "scripted"],
        default="interactive",
        help="who answers approvals (default: you, in the terminal)",
    )
    for sub in (demo, run):
        sub.add_argument("--tenant", help="tenant id (default: BASTION_TENANT or `demo`)")
        sub.add_argument("--reviewer-name", default="operator", help="recorded as the reviewer")
    for sub in (
        demo,
        run,
        *add_guard_commands(commands),
        *add_tool_commands(commands),
        *add_memory_commands(commands),
        *add_observe_commands(commands),
        *add_operate_commands(commands),
    ):
        sub.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


@contextmanager
def _support_graph(settings: Settings, *, shadow: bool = False) -> Iterator[Any]:
    """The support graph compiled on the configured checkpointer, closed on exit; with
    `shadow`, every run simulates its side effects instead of acting."""
    builder = support_builder(settings)
    with open_checkpointer(
        sqlite_path=settings.checkpoint_path, redis_url=settings.redis_url
    ) as saver:
        graph = builder.compile(checkpointer=saver)
        # Run configuration, not a rebuilt graph: the demo runs exactly the configured graph.
        yield graph.with_config(configurable={"shadow": True}) if shadow else graph


def _reviewer(interactive: bool, console: Console, name: str) -> Reviewer:
    return TerminalReviewer(console, name) if interactive else scripted_review


def _demo(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    tickets = load_tickets(args.tickets)
    db = SupportDB(settings.support_db_path)
    before = db.counts()
    with _support_graph(settings, shadow=args.shadow) as graph:
        reports = run_demo(
            graph,
            tickets,
            tenant=args.tenant or settings.tenant,
            reviewer=_reviewer(args.interactive, console, args.reviewer_name),
            console=console,
            show_progress=not args.json,
            # Simulated runs stay off the real tickets' threads (their history stays real).
            thread_prefix="shadow-" if args.shadow else "support-",
        )
    after = db.counts()
    # The runs' traces are written off the hot path: flushed before the KPIs read them.
    kpis = kpis_of(services_for(settings), run_ids=[r.run_id for _, r in reports if r.run_id])
    if args.json:
        result = demo_json(reports, before, after, shadow=args.shadow)
        print(json.dumps({**result, "kpis": kpis.as_dict()}, indent=2))
        return EXIT_OK
    print_report(console, reports, before, after)
    if args.shadow:
        console.print(f"simulated runs: threads shadow-<id> in {settings.home}/")
    else:
        console.print(
            f"state: {settings.home}/ (checkpoints, effect ledger, business database) · "
            "run it again: side effects are not repeated"
        )
        console.print("undo a run: `bastion effects` lists runs, then `bastion undo <run>`")
    console.print(
        f"[bold]KPIs of these {len(reports)} runs[/] (from their traces; `bastion kpis`: all runs)"
    )
    for line in kpi_lines(kpis):
        console.print(f"  {line}", highlight=False, markup=False)
    console.print(
        f"console: `bastion console` → {console_url()} (prints a sign-in link on first start) · "
        "step through a run: `bastion runs`, then `bastion replay <run>`",
        highlight=False,
    )
    return EXIT_OK


def _run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    text = args.text
    if not text.lstrip().startswith("From:"):
        if not args.sender:
            console.print("error: the ticket has no `From:` line; pass --from <customer email>")
            return EXIT_USAGE
        text = format_ticket(args.sender, args.subject, text)
    with _support_graph(settings) as graph:
        report = run_to_end(
            graph,
            text,
            thread_id=args.thread or f"run-{uuid.uuid4().hex[:12]}",
            tenant=args.tenant or settings.tenant,
            reviewer=_reviewer(args.reviewer == "interactive", console, args.reviewer_name),
            write_tools=SUPPORT_WORKFLOW.write_tools,
        )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        console.print(
            f"[bold]{report.status}[/] ({report.reason}) · {report.steps} steps · "
            f"{report.tokens:,} tokens · ${report.cost_usd:.4f} · thread "
            f"{report.thread_id}"
        )
        if report.summary:
            console.print(report.summary)
    return EXIT_RUN_FAILED if report.status in FAILED_STATUSES else EXIT_OK


def _handler(command: str) -> Any:
    """The function that runs `command`."""
    own = {"demo": _demo, "run": _run, "memory": run_memory_command}
    if command in own:
        return own[command]
    for commands, handler in (
        (TOOL_COMMANDS, run_tool_command),
        (OBSERVE_COMMANDS, run_observe_command),
        (OPERATE_COMMANDS, run_operate_command),
    ):
        if command in commands:
            return handler
    return run_guard_command


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bastion` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    # Not a terminal (CI, a pipe): rich would assume 80 columns and squeeze the tables.
    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 120)
    try:
        settings = Settings.from_env()
        return _handler(args.command)(args, settings, console)
    except (
        SettingsError,
        CheckpointerConfigError,
        ModelConfigError,
        ValueError,
        BudgetBackendError,
        KillSwitchBackendError,
        EffectLedgerError,
        MemoryBackendError,
        TraceBackendError,
        AuditConfigError,
        ExplainError,
    ) as error:
        if args.json:
            print(json.dumps({"error": str(error), "type": type(error).__name__}))
        console.print(f"[red]error:[/] {error}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        console.print("interrupted: the run is checkpointed; run the same command to continue")
        return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
