"""`bastion memory ...`: read, audit and repair versioned memory from a terminal."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import uuid
from typing import Any

import redis
from rich.console import Console
from rich.markup import escape

from console.memory_actions import MemoryActions
from graphs import Settings, services_for
from memory import (
    MemoryBackendError,
    MemoryContractError,
    MemoryScope,
    VersionedMemory,
    open_memory,
)
from memory.contract import SENSITIVITY_LEVELS, check_tenant
from memory.layout import all_items, ns_of

__all__ = ["add_memory_commands", "run_memory_command"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
BACKEND_ERRORS = (MemoryBackendError, sqlite3.Error, redis.exceptions.RedisError, OSError)
"""Failures of a memory backend (exit 1); contract errors are the caller's (exit 2)."""


def _count(text: str, low: int = 0) -> int:
    value = int(text)
    if not low <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"must be between {low} and 100000, got {value}")
    return value


def _limit(text: str) -> int:
    return _count(text, low=1)


def _common_flags() -> argparse.ArgumentParser:
    """Flags of every subcommand: the operator's memory scope."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tenant", help="tenant whose memory to open (default: BASTION_TENANT)")
    common.add_argument(
        "--by",
        default=os.environ.get("USER") or "operator",
        help="who you are: commits you make are authored by `human:<by>`",
    )
    common.add_argument(
        "--purpose",
        action="append",
        help="see only records kept for this purpose (repeatable; default: every purpose)",
    )
    common.add_argument(
        "--clearance",
        choices=SENSITIVITY_LEVELS,
        default="restricted",
        help="highest sensitivity shown (default: restricted, i.e. everything)",
    )
    return common


def add_memory_commands(commands: Any) -> list[argparse.ArgumentParser]:
    """Add `memory` and its subcommands; returns the subcommand parsers (for shared flags).

    An operator is an auditor: the scope reads every purpose at clearance `restricted` unless
    `--purpose` / `--clearance` narrow it; its agent is `human:<--by>`.
    """
    parent = commands.add_parser(
        "memory",
        help="audit and repair versioned memory: log, diff, revert, sources, conflicts",
        description="Audit and repair the versioned memory BASTION_HOME / BASTION_REDIS_URL / "
        "BASTION_WEAVIATE_URL configure. You read as an auditor: every purpose at clearance "
        "`restricted`, unless --purpose / --clearance narrow it; commits you make (revert, "
        "settle, promote) are authored by `human:<--by>`.",
    )
    subs = parent.add_subparsers(dest="memory_command", required=True, metavar="COMMAND")
    common = _common_flags()

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return subs.add_parser(name, help=text, description=text, parents=[common])

    log = add("log", "list commits, oldest first (by default the newest --limit)")
    log.add_argument("--after", type=_count, help="list the commits after this position")
    log.add_argument("--limit", type=_limit, default=50, help="at most N commits (default 50)")
    add("show", "one commit and the versions it wrote").add_argument("commit")
    get = add("get", "the current version of a record (exit 1 if there is none)")
    history = add("history", "every version of a record, tombstones included")
    for sub in (get, history):
        sub.add_argument("namespace", help="namespace below the tenant, as `a/b`")
        sub.add_argument("key")
    recall = add("recall", "records closest to QUERY (newest first without one)")
    recall.add_argument("query", nargs="?")
    recall.add_argument("--limit", type=_limit, default=10, help="at most N hits (default 10)")
    diff = add("diff", "how memory changed from BASE (`-`: empty memory) to TARGET")
    diff.add_argument("base")
    diff.add_argument("target")
    as_of = add("as-of", "memory as it stood right after COMMIT")
    as_of.add_argument("commit")
    for sub in (recall, as_of):
        sub.add_argument("--namespace", help="only below this namespace, as `a/b`")
    revert = add("revert", "undo a commit by a new commit (exit 1 on conflicts)")
    revert.add_argument("commit")
    add("sources", "freshness state of every source")
    enable = add("enable", "let reads use a source's records again")
    disable = add("disable", "hide a source's records from reads")
    for sub in (enable, disable):
        sub.add_argument("source", help="a source `bastion memory sources` lists")
    add("conflicts", "escalated conflicts waiting for a person")
    settle = add("settle", "settle an escalated conflict (exit 1 if the record moved on)")
    settle.add_argument("conflict")
    settle.add_argument(
        "--keep",
        choices=["mine", "theirs"],
        required=True,
        help="`mine`: the refused write wins; `theirs`: the current version stays",
    )
    for sub in (revert, enable, disable, settle):
        sub.add_argument("--reason", required=True, help="why (recorded)")
    add("purge", "delete expired records and versions (retention; every tenant)")
    add("promote", "promote short-term records to long-term by their retention class")
    return list(subs.choices.values())


def run_memory_command(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Run a `bastion memory` subcommand on the memory `settings` configure.

    Exit codes: 0 done; 1 a backend failed, a revert or settlement met a conflict, or `get`
    found nothing; 2 a bad argument (unknown commit, conflict or source; bad namespace).
    """
    try:
        with open_memory(
            home=settings.memory_path,
            redis_url=settings.redis_url,
            weaviate_url=settings.weaviate_url,
            embedder=settings.embeddings,
        ) as memory:
            scope = _operator_scope(args, settings, memory)
            actions = MemoryActions(
                args, memory, scope, console, audit=lambda: services_for(settings).audit
            )
            return actions.run(args.memory_command)
    except MemoryContractError as error:
        return _failed(args, console, error, EXIT_USAGE)
    except BACKEND_ERRORS as error:
        return _failed(args, console, error, EXIT_FAILED)


def _failed(args: argparse.Namespace, console: Console, error: Exception, code: int) -> int:
    if args.json:
        print(json.dumps({"error": str(error), "type": type(error).__name__}))
    console.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
    return code


def _operator_scope(
    args: argparse.Namespace, settings: Settings, memory: VersionedMemory
) -> MemoryScope:
    tenant = check_tenant(args.tenant or settings.tenant)
    return MemoryScope(
        tenant=tenant,
        agent=f"human:{args.by}",
        purposes=frozenset(args.purpose or _every_purpose(memory, tenant)),
        clearance=args.clearance,
        run_id=f"cli-{uuid.uuid4().hex[:12]}",
    )


def _every_purpose(memory: VersionedMemory, tenant: str) -> set[str]:
    """Every purpose any version of the tenant's records was kept for (the auditor's view)."""
    if memory.log.head(tenant) is None:
        return set()
    space = ns_of(tenant, "history")
    return {item.value["purpose"] for store in memory.stores() for item in all_items(store, space)}
