"""`bastion policy ...` and `bastion kill ...`: operate the guard plane from a terminal."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from console.cli_audit import audit_cli
from graphs import Settings, services_for
from graphs.support import POLICY_DIR
from guards import KillScope, load_bundle, sign_bundle

__all__ = ["add_guard_commands", "run_guard_command"]

EXIT_OK = 0


def add_guard_commands(commands: Any) -> list[argparse.ArgumentParser]:
    """Add the `policy` and kill-switch commands; returns the parsers (for shared flags)."""
    check = commands.add_parser(
        "policy-check", help="verify and compile a policy bundle; list its policies"
    )
    check.add_argument("dir", nargs="?", type=Path, default=POLICY_DIR, help="bundle directory")
    sign = commands.add_parser(
        "policy-sign", help="re-hash a bundle's files (and sign with BASTION_POLICY_KEY if set)"
    )
    sign.add_argument("dir", type=Path, help="bundle directory")
    kill = commands.add_parser(
        "kill", help="stop runs: global, tenant:<id>, workflow:<name>, run:<id>"
    )
    unkill = commands.add_parser(
        "unkill", aliases=["lift"], help="lift a kill (stopped runs stay stopped)"
    )
    for sub in (kill, unkill):
        sub.add_argument("scope", help="`global`, `tenant:<id>`, `workflow:<name>` or `run:<id>`")
        sub.add_argument("--reason", required=True, help="why (recorded)")
        sub.add_argument("--by", default=os.environ.get("USER", "operator"), help="who (recorded)")
    kills = commands.add_parser("kills", help="list active kills and recent kill events")
    return [check, sign, kill, unkill, kills]


def _key(settings: Settings) -> bytes | None:
    return settings.policy_key.encode() if settings.policy_key else None


def _policy_check(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    bundle = load_bundle(args.dir, key=_key(settings))
    rows = [
        {
            "id": p.meta.id,
            "version": p.meta.version,
            "owner": p.meta.owner,
            "tools": sorted(p.meta.scope.tools) or ["*"],
            "tenants": sorted(p.meta.scope.tenants) or ["*"],
            "points": list(p.meta.decision_points),
        }
        for p in bundle.policies
    ]
    result = {
        "bundle": bundle.name,
        "revision": bundle.revision,
        "digest": bundle.digest,
        "signed": bundle.signed,
        "policies": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    table = Table(title=f"bundle {bundle.name} @ {bundle.revision}", title_justify="left")
    for column in ("id", "version", "owner", "tools", "tenants", "points"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(", ".join(v) if isinstance(v, list) else str(v) for v in row.values()))
    console.print(table)
    console.print(
        f"ok: {len(rows)} policies compile; files match the manifest "
        f"({'signature verified' if bundle.signed else 'hashed, not signed'}) · {bundle.digest}"
    )
    return EXIT_OK


def _policy_sign(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    bundle = sign_bundle(args.dir, key=_key(settings))
    if args.json:
        print(json.dumps({"bundle": bundle.name, "digest": bundle.digest, "signed": bundle.signed}))
    else:
        console.print(
            f"{'signed' if bundle.signed else 'hashed'} {args.dir}/bundle.json · {bundle.digest}"
        )
    return EXIT_OK


def _record(record: Any) -> dict[str, Any]:
    return {
        "scope": str(record.scope),
        "requester": record.requester,
        "reason": record.reason,
        "at": record.at,
    }


def _kill(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    services = services_for(settings)
    switch = services.kill_switch
    scope = KillScope.parse(args.scope)
    if args.command == "kill":
        record: Any = switch.kill(scope, requester=args.by, reason=args.reason)
        message = f"killed {scope} (by {record.requester}: {record.reason}); no new action starts"
    else:
        record = switch.lift(scope, requester=args.by, reason=args.reason)
        message = (
            f"lifted {scope}; stopped runs stay stopped (start them again to continue)"
            if record
            else f"no active kill for {scope}"
        )
    if record:  # lifting what was not killed changes nothing: nothing to put on record
        audit_cli(
            services.audit,
            kind="kill" if args.command == "kill" else "lift",
            by=args.by,
            tenant=scope.value if scope.kind == "tenant" else "*",
            run_id=scope.value if scope.kind == "run" else "",
            subject=str(scope),
            detail={"reason": args.reason, "kill": _record(record)},
        )
    if args.json:
        print(json.dumps({"scope": str(scope), "record": _record(record) if record else None}))
    else:
        console.print(message)
    return EXIT_OK


def _kills(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    switch = services_for(settings).kill_switch
    active = [_record(r) for r in switch.active()]
    history = switch.history(limit=20) if hasattr(switch, "history") else []
    if args.json:
        print(json.dumps({"active": active, "history": history}, indent=2))
        return EXIT_OK
    if not active:
        console.print("no active kills")
    for row in active:
        console.print(f"[red]{row['scope']}[/] by {row['requester']}: {row['reason']}")
    return EXIT_OK


HANDLERS = {
    "policy-check": _policy_check,
    "policy-sign": _policy_sign,
    "kill": _kill,
    "unkill": _kill,
    "lift": _kill,
    "kills": _kills,
}


def run_guard_command(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Run one of the commands added by `add_guard_commands`."""
    return HANDLERS[args.command](args, settings, console)
