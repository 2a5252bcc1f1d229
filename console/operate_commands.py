"""`bastion feedback`, `bastion approvals` and `bastion console`: people in the loop."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from console.auth import KeyStore, ensure_admin_key
from console.control import LocalRunControl
from console.deadlines import sweep_overdue
from graphs import Services, Settings, services_for
from graphs.support import support_builder
from memory import open_checkpointer
from observability import AuditLog, AuditRecord, TraceEvent
from observability.feedback import (
    FeedbackRecord,
    dataset_jsonl,
    evaluation_dataset,
    feedback_entry,
    feedback_from_audit,
)

__all__ = ["OPERATE_COMMANDS", "add_operate_commands", "console_url", "run_operate_command"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
OPERATE_COMMANDS = frozenset({"feedback", "approvals", "console"})
"""The commands `run_operate_command` handles."""
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
_PAGE = 1000


def console_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, key: str | None = None) -> str:
    """Where the dashboard is; with `key`, a link that signs in with it (the key stays in the
    fragment: browsers never send it to the server)."""
    return f"http://{host}:{port}/bastion/" + (f"#key={key}" if key else "")


def add_operate_commands(commands: Any) -> list[argparse.ArgumentParser]:
    """Add the commands; returns the parsers that take `--json`."""
    by = os.environ.get("USER") or "operator"
    feedback = commands.add_parser("feedback", help="record corrections; export them as a dataset")
    fsubs = feedback.add_subparsers(dest="feedback_command", required=True, metavar="COMMAND")
    add = fsubs.add_parser("add", help="record a correction of a run or one of its decisions")
    add.add_argument("--run", required=True, help="the run (`bastion runs` lists them)")
    add.add_argument("--decision", help="the decision corrected (`bastion trace <run>`)")
    add.add_argument(
        "--correction", required=True, help="what it should have been (text, or a JSON object)"
    )
    add.add_argument("--rationale", required=True, help="why")
    add.add_argument("--by", default=by, help="who you are (recorded as the reviewer)")
    export = fsubs.add_parser("export", help="write every correction as a JSONL dataset")
    export.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    export.add_argument("--tenant", help="only this tenant's feedback")
    approvals = commands.add_parser("approvals", help="pending approvals and their deadlines")
    asubs = approvals.add_subparsers(dest="approvals_command", required=True, metavar="COMMAND")
    listed = asubs.add_parser("list", help="runs waiting for a human, soonest deadline first")
    listed.add_argument("--tenant", help="only this tenant's approvals")
    sweep = asubs.add_parser(
        "sweep", help="give every approval past its deadline its default action, on record"
    )
    sweep.add_argument("--now", type=float, help=argparse.SUPPRESS)  # judge deadlines at a time
    serve = commands.add_parser("console", help="serve the governance console (API + dashboard)")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    serve.set_defaults(json=False, console_command=None)
    csubs = serve.add_subparsers(dest="console_command", metavar="COMMAND")
    keys = csubs.add_parser("keys", help="the console's API keys")
    ksubs = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    key_add = ksubs.add_parser("add", help="create a key (printed once)")
    key_add.add_argument("--name", required=True)
    key_add.add_argument(
        "--tenant", action="append", required=True, help="tenant it covers (repeat; `*`: all)"
    )
    key_add.add_argument("--admin", action="store_true", help="may verify the whole audit log")
    key_list = ksubs.add_parser("list", help="key names and scopes (never the keys)")
    revoke = ksubs.add_parser("revoke", help="remove a key")
    revoke.add_argument("name")
    return [add, export, listed, sweep, key_add, key_list, revoke]


def _emit(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# -- feedback --------------------------------------------------------------------------------


def _correction(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return value if isinstance(value, dict) and value else {"answer": text}


def _context(
    run_id: str, events: list[TraceEvent], records: list[AuditRecord], decision: str | None
) -> dict[str, Any]:
    """What the corrected run or decision saw and did, from its trace and audit records."""
    goal = next((e["goal"] for e in events if e["goal"]), "")
    if not decision:
        final = next((e["output"] for e in events if e["node"] == "finalize"), "")
        workflow = events[0]["workflow"] if events else ""
        return {"goal": goal, "outcome": final, "workflow": workflow}
    for record in records:
        if record["subject"] == decision and record["kind"] in ("decision", "approval"):
            detail = record["detail"]
            return {
                "goal": goal,
                "decision_id": decision,
                **{k: detail.get(k) for k in ("agent", "tool", "args", "zone", "reasons")},
                "verdict": detail.get("verdict"),
                "decided_by": record["actor"],
            }
    raise ValueError(
        f"run {run_id!r} has no decision {decision!r} on record. Hint: "
        f"`bastion audit tail --run {run_id}` lists its decisions (their `subject`)"
    )


def _feedback_add(args: argparse.Namespace, services: Services, console: Console) -> int:
    events = services.traces.events(run_id=args.run)
    records = services.audit.records(run_id=args.run, limit=100_000)
    if not events and not records:
        raise ValueError(
            f"no run {args.run!r} in the traces or the audit log. Hint: `bastion runs` lists runs"
        )
    tenant = events[0]["tenant"] if events else records[0]["tenant"]
    feedback = FeedbackRecord(
        context=_context(args.run, events, records, args.decision),
        correction=_correction(args.correction),
        rationale=args.rationale,
        run_id=args.run,
        decision_id=args.decision or "",
        reviewer=args.by,
        ts=time.time(),
        tenant=tenant,
    )
    (record,) = services.audit.append([feedback_entry(feedback)])
    if args.json:
        _emit({"record": record})
    else:
        console.print(
            f"feedback on record: audit #{record['seq']} (tenant {tenant}, by {args.by}) · "
            "`bastion feedback export --out dataset.jsonl` writes the dataset",
            highlight=False,
        )
    return EXIT_OK


def _all_records(audit: AuditLog, tenant: str | None) -> list[AuditRecord]:
    """Every record (of `tenant`, with the `*` ones), read page by page."""
    records: list[AuditRecord] = []
    while True:
        after = records[-1]["seq"] if records else 0
        page = audit.records(after=after, limit=_PAGE, tenant=tenant)
        if not page:
            return records
        records += page


def _feedback_export(args: argparse.Namespace, services: Services, console: Console) -> int:
    feedback = feedback_from_audit(_all_records(services.audit, args.tenant))
    if args.tenant:  # `*` records are every tenant's; feedback is one tenant's
        feedback = [f for f in feedback if f.tenant == args.tenant]
    rows = evaluation_dataset(feedback)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dataset_jsonl(rows), encoding="utf-8")
    kinds: dict[str, int] = {}
    for item in feedback:
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
    if args.json:
        _emit({"path": str(args.out), "examples": len(rows), "kinds": kinds})
    else:
        counted = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"
        console.print(f"wrote {len(rows)} examples ({counted}) to {args.out}", highlight=False)
    return EXIT_OK


# -- approvals -------------------------------------------------------------------------------


@contextmanager
def _control(settings: Settings, services: Services) -> Iterator[LocalRunControl]:
    """Run control over the support graph on the configured checkpointer."""
    with open_checkpointer(
        sqlite_path=settings.checkpoint_path, redis_url=settings.redis_url
    ) as saver:
        graph = support_builder(settings, services=services).compile(checkpointer=saver)
        yield LocalRunControl(graph)


def _when(at: float | None, now: float) -> str:
    if at is None:
        return "no deadline"
    left = at - now
    return f"in {left / 60:.0f} min" if left >= 0 else f"OVERDUE by {-left / 60:.0f} min"


def _approvals_list(
    args: argparse.Namespace, settings: Settings, services: Services, console: Console
) -> int:
    with _control(settings, services) as control:
        pending = control.pending(frozenset({args.tenant}) if args.tenant else None)
    if args.json:
        _emit({"approvals": pending})
        return EXIT_OK
    if not pending:
        console.print("no run is waiting for an approval")
        return EXIT_OK
    now = time.time()
    table = Table(title="Pending approvals (soonest deadline first)", title_justify="left")
    for column in ("thread", "run", "tenant", "actions", "reviewers", "deadline", "then"):
        table.add_column(column, overflow="fold")
    for item in pending:
        actions = "; ".join(f"{r['name']}({json.dumps(r['args'])})" for r in item["requests"])
        cells = (
            item["thread_id"], item["run_id"], item["tenant"], actions, item["reviewers"],
            _when(item["deadline"], now), item["on_timeout"] or "",
        )  # fmt: skip
        table.add_row(*map(escape, cells))
    console.print(table)
    console.print(
        "decide in the console: `bastion console` · overdue ones: `bastion approvals sweep`"
    )
    return EXIT_OK


def _timed_out(item: Any) -> dict[str, Any]:
    return dict(item.__dict__, decision_ids=list(item.decision_ids))


def _approvals_sweep(
    args: argparse.Namespace, settings: Settings, services: Services, console: Console
) -> int:
    with _control(settings, services) as control:
        done = asyncio.run(sweep_overdue(control, services.audit, now=args.now))
    services.tracer.flush()
    if args.json:
        _emit({"timed_out": [_timed_out(item) for item in done]})
    elif not done:
        console.print("no approval is past its deadline")
    for item in [] if args.json else done:
        console.print(
            f"thread {item.thread_id} (run {item.run_id}, tenant {item.tenant}): "
            f"{item.late_s / 60:.0f} min past its deadline → [bold]{item.action}[/] · run "
            f"now {item.status}",
            highlight=False,
        )
    return EXIT_OK


# -- console ---------------------------------------------------------------------------------


def _serve(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    import uvicorn

    from console.app import local_app

    key = ensure_admin_key(KeyStore(settings.console_keys_path))
    if key:
        console.print(
            "first start: created admin key `admin` (shown once; keys are stored hashed). "
            f"Open:\n  {console_url(args.host, args.port, key)}",
            highlight=False,
        )
    else:
        console.print(
            f"console: {console_url(args.host, args.port)} (sign in with a key; "
            "`bastion console keys add` makes one)",
            highlight=False,
        )
    uvicorn.run(local_app(settings), host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def _keys(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    store = KeyStore(settings.console_keys_path)
    if args.keys_command == "add":
        raw = store.create(args.name, args.tenant, admin=args.admin)
        if args.json:
            _emit({"name": args.name, "key": raw, "tenants": sorted(args.tenant)})
        else:
            console.print(
                f"key {args.name} (tenants {', '.join(sorted(args.tenant))}"
                f"{', admin' if args.admin else ''}), shown once:\n  {raw}\n"
                f"sign in: {console_url(key=raw)}",
                highlight=False,
            )
        return EXIT_OK
    if args.keys_command == "revoke":
        revoked = store.revoke(args.name)
        if args.json:
            _emit({"name": args.name, "revoked": revoked})
        else:
            console.print(f"revoked {args.name}" if revoked else f"no key named {args.name!r}")
        return EXIT_OK if revoked else EXIT_FAILED
    keys = [key.as_dict() for key in store.list()]
    if args.json:
        _emit({"keys": keys})
    elif not keys:
        console.print("no console keys yet: `bastion console` creates an admin key on first start")
    for key in [] if args.json else keys:
        role = " (admin)" if key["admin"] else ""
        console.print(f"{key['name']}{role}: tenants {', '.join(key['tenants'])}", highlight=False)
    return EXIT_OK


def run_operate_command(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Run one of the commands added by `add_operate_commands`."""
    if args.command == "console":
        serve = _keys if args.console_command else _serve
        return serve(args, settings, console)
    services = services_for(settings)
    services.tracer.flush()
    if args.command == "feedback":
        handler = _feedback_add if args.feedback_command == "add" else _feedback_export
        return handler(args, services, console)
    if args.approvals_command == "list":
        return _approvals_list(args, settings, services, console)
    return _approvals_sweep(args, settings, services, console)
