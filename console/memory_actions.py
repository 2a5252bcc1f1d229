"""What each `bastion memory` subcommand does and shows (tables, or JSON with `--json`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from console.cli_audit import audit_cli
from memory import CommitResult, MemoryContractError, MemoryRecord, MemoryScope, VersionedMemory
from memory.contract import check_namespace
from observability import AuditLog

__all__ = ["MemoryActions"]

EXIT_OK, EXIT_FAILED = 0, 1
RECORD_COLUMNS = ("record", "v", "commit", "author", "written", "value")


def _ns(text: str | None) -> tuple[str, ...]:
    return check_namespace(tuple(text.split("/"))) if text else ()


def _time(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _value(record: MemoryRecord | None, width: int = 60) -> str:
    if record is None:
        return "(absent)"
    if record.deleted:
        return "(deleted)"
    if record.value is None:
        return "(purged by retention)"
    text = json.dumps(record.value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(record: MemoryRecord) -> tuple[Any, ...]:
    where = f"{'/'.join(record.namespace)} {record.key}"
    return (where, record.version, record.commit_id, record.author, _time(record.written_at),
            _value(record))  # fmt: skip


def _many(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _emit(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


class MemoryActions:
    """One `bastion memory` invocation: a method per subcommand, each returning its exit code.

    Args:
        args: the parsed command line (`args.json` selects machine-readable output).
        memory: the opened memory.
        scope: the operator's scope.
        console: where tables and messages go.
        audit: opens the audit log that reverts are recorded in (None: not recorded).
    """

    def __init__(
        self,
        args: argparse.Namespace,
        memory: VersionedMemory,
        scope: MemoryScope,
        console: Console,
        audit: Callable[[], AuditLog] | None = None,
    ) -> None:
        self.args, self.memory, self.scope, self.console = args, memory, scope, console
        self.audit = audit

    def run(self, command: str) -> int:
        """Run the subcommand `command` (`log`, `as-of`, ...); returns its exit code."""
        action: Callable[[], int] = getattr(self, command.replace("-", "_"))
        return action()

    def _table(self, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        table = Table(title=escape(title), title_justify="left")
        for index, column in enumerate(columns):  # the last column (a value, a message) folds
            table.add_column(column, no_wrap=index < len(columns) - 1, overflow="fold")
        for row in rows:
            table.add_row(*(escape("" if cell is None else str(cell)) for cell in row))
        self.console.print(table)

    def _say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    # -- history ---------------------------------------------------------------------------------

    def log(self) -> int:
        tenant, limit = self.scope.tenant, self.args.limit
        head = self.memory.log.head(tenant)
        after = self.args.after
        if after is None:  # the newest `limit`, still oldest first
            after = max((head.seq if head else 0) - limit, 0)
        commits = self.memory.commits(self.scope, after=after, limit=limit)
        rows = [{**asdict(c), "changes": len(c.changes)} for c in commits]
        if self.args.json:
            _emit({"tenant": tenant, "head": head.seq if head else 0, "commits": rows})
        elif not rows:
            self._say(f"no memory commits of tenant {tenant!r} after position {after}")
        else:
            columns = ("seq", "id", "author", "run_id", "decision_id", "ts", "changes", "message")
            self._table(
                f"Memory commits of tenant {tenant} (oldest first)",
                ("seq", "commit", "author", "run", "decision", "time", "changes", "message"),
                [[_time(r[c]) if c == "ts" else r[c] for c in columns] for r in rows],
            )
            self._say(
                "details: bastion memory show <commit> · undo: bastion memory revert <commit>"
            )
        return EXIT_OK

    def show(self) -> int:
        commit = self.memory.commit_of(self.scope, self.args.commit)
        records = []
        for change in commit.changes:
            versions = self.memory.history(self.scope, change.namespace, change.key)
            records.append(next((r for r in versions if r.version == change.version), None))
        pairs = list(zip(commit.changes, records, strict=True))
        if self.args.json:
            changes = [{**asdict(c), "record": asdict(r) if r else None} for c, r in pairs]
            _emit({"commit": {**asdict(commit), "changes": changes}})
            return EXIT_OK
        self._say(
            f"commit {commit.id} (#{commit.seq}, parent {commit.parent or '-'}) by "
            f"{commit.author} at {_time(commit.ts)} · run {commit.run_id or '-'} · decision "
            f"{commit.decision_id or '-'}\n{commit.message}"
        )
        self._table(
            "Changes",
            ("op", "namespace", "key", "version", "tier", "value"),
            [(c.op, "/".join(c.namespace), c.key, f"{c.previous_version} → {c.version}", c.tier,
              _value(r) if r else "(hidden from this scope, or purged)") for c, r in pairs],
        )  # fmt: skip
        return EXIT_OK

    def history(self) -> int:
        versions = self.memory.history(self.scope, _ns(self.args.namespace), self.args.key)
        if self.args.json:
            _emit({"versions": [asdict(r) for r in versions]})
        elif versions:
            title = f"History of {self.args.namespace} {self.args.key} (oldest first)"
            self._table(title, RECORD_COLUMNS, map(_row, versions))
        else:
            self._say(f"no versions of {self.args.key!r} in {self.args.namespace!r} to show")
        return EXIT_OK

    def diff(self) -> int:
        base, target = self.args.base, self.args.target
        diff = self.memory.diff(self.scope, None if base == "-" else base, target)
        if self.args.json:
            _emit(asdict(diff))
            return EXIT_OK
        counts = f"{_many(len(diff.commits), 'commit')}, {_many(len(diff.entries), 'key')}"
        self._say(f"{base} → {target}: {counts} differ")
        marks = {"added": "[green]+[/]", "removed": "[red]-[/]", "changed": "[yellow]~[/]"}
        for entry in diff.entries:
            change = _value(entry.after)
            if entry.before is not None:
                change = f"{_value(entry.before, 40)} → {_value(entry.after, 40)}"
            where = f"{'/'.join(entry.namespace)} {entry.key}: {change}"
            self.console.print(f"{marks[entry.status]} {escape(where)}", highlight=False)
        return EXIT_OK

    def as_of(self) -> int:
        snapshot, below = self.memory.as_of(self.scope, self.args.commit), _ns(self.args.namespace)
        records = [r for r in snapshot.records() if r.namespace[: len(below)] == below]
        if self.args.json:
            _emit({"commit": snapshot.commit_id, "seq": snapshot.seq,
                   "records": [asdict(r) for r in records]})  # fmt: skip
        else:
            title = f"Memory as of {snapshot.commit_id} (#{snapshot.seq})"
            self._table(title, RECORD_COLUMNS, map(_row, records))
        return EXIT_OK

    # -- reads -----------------------------------------------------------------------------------

    def get(self) -> int:
        record = self.memory.get(self.scope, _ns(self.args.namespace), self.args.key)
        if self.args.json:
            _emit({"record": asdict(record) if record else None})
        elif record:
            self._table(f"{self.args.namespace} {self.args.key}", RECORD_COLUMNS, [_row(record)])
        else:
            self._say(f"no record {self.args.key!r} in {self.args.namespace!r} to show")
        return EXIT_OK if record else EXIT_FAILED

    def recall(self) -> int:
        query, below = self.args.query, _ns(self.args.namespace)
        hits = self.memory.recall(self.scope, query, namespace=below, limit=self.args.limit)
        if self.args.json:
            _emit({"query": query, "hits": [asdict(hit) for hit in hits]})
            return EXIT_OK
        self._table(
            f"Recall {query!r}" if query else "Newest records",
            ("score", "record", "v", "source", "stale", "value"),
            [("" if h.score is None else f"{h.score:.3f}",
              f"{'/'.join(h.record.namespace)} {h.record.key}", h.record.version,
              h.record.tags.lineage.source, "stale" if h.stale else "", _value(h.record))
             for h in hits],
        )  # fmt: skip
        return EXIT_OK

    # -- repairs ---------------------------------------------------------------------------------

    def _result(self, result: CommitResult, done: str) -> int:
        if self.args.json:
            _emit({**asdict(result), "ok": result.ok})
        elif result.ok and result.commit is not None:
            commit, changes = result.commit, _many(len(result.commit.changes), "change")
            self._say(f"{done}: commit {commit.id} (#{commit.seq}, {changes})")
        elif result.ok:
            self._say(f"{done}: nothing to write")
        else:
            self._say(f"{result.status}: nothing was written; these records moved on since:")
            for c in result.conflicts:
                self._say(
                    f"  {'/'.join(c.namespace)} {c.key}: expected version {c.expected_version}, "
                    f"now {c.actual_version} by {c.actual_author or '-'} ({c.policy})"
                )
        return EXIT_OK if result.ok else EXIT_FAILED

    def revert(self) -> int:
        result = self.memory.revert(self.scope, self.args.commit, reason=self.args.reason)
        if result.ok and result.commit is not None and self.audit is not None:
            audit_cli(
                self.audit(),
                kind="memory_revert",
                by=self.args.by,
                tenant=self.scope.tenant,
                subject=self.args.commit,
                detail={"reason": self.args.reason, "commit": result.commit.id,
                        "changes": len(result.commit.changes)},
            )  # fmt: skip
        return self._result(result, f"reverted {self.args.commit}")

    def settle(self) -> int:
        args = self.args
        result = self.memory.settle(self.scope, args.conflict, keep=args.keep, reason=args.reason)
        return self._result(result, f"settled {args.conflict}, kept {args.keep}")

    def promote(self) -> int:
        return self._result(self.memory.consolidate(self.scope), "promoted to long-term")

    def purge(self) -> int:
        purged = self.memory.purge()
        if self.args.json:
            _emit({"purged": purged})
        else:
            purged_text = _many(purged, "expired record")
            self._say(f"purged {purged_text} (every tenant); commits stay in the log")
        return EXIT_OK

    def conflicts(self) -> int:
        conflicts = self.memory.open_conflicts(self.scope)
        if self.args.json:
            _emit({"conflicts": [asdict(c) for c in conflicts]})
        elif not conflicts:
            self._say(f"no open memory conflicts in tenant {self.scope.tenant!r}")
        else:
            self._table(
                "Escalated memory conflicts",
                ("id", "namespace", "key", "expected", "actual", "actual author"),
                [(c.conflict_id, "/".join(c.namespace), c.key, c.expected_version,
                  c.actual_version, c.actual_author) for c in conflicts],
            )  # fmt: skip
            self._say("settle one: bastion memory settle <id> --keep mine|theirs --reason ...")
        return EXIT_OK

    def sources(self) -> int:
        statuses = self.memory.sources(self.scope)
        if self.args.json:
            _emit({"sources": [asdict(s) for s in statuses]})
        elif not statuses:
            self._say(f"no source has written to the memory of tenant {self.scope.tenant!r}")
        else:
            self._table(
                "Memory sources",
                ("source", "reads", "reason", "changed by", "changed", "last write"),
                [(s.source, "enabled" if s.enabled else "DISABLED", s.reason, s.changed_by,
                  _time(s.changed_at), _time(s.last_write)) for s in statuses],
            )  # fmt: skip
        return EXIT_OK

    def enable(self) -> int:
        return self._set_source(enabled=True)

    def disable(self) -> int:
        return self._set_source(enabled=False)

    def _set_source(self, *, enabled: bool) -> int:
        source, known = self.args.source, [s.source for s in self.memory.sources(self.scope)]
        if source not in known:  # a typo would otherwise create a new, empty source
            raise MemoryContractError(
                f"no source {source!r} in the memory of tenant {self.scope.tenant!r}; known: "
                f"{', '.join(known) or 'none'} (`bastion memory sources` lists them)"
            )
        status = self.memory.set_source(
            self.scope, source, enabled=enabled, reason=self.args.reason
        )
        if self.args.json:
            _emit({"source": asdict(status)})
        else:
            state = "enabled" if enabled else "disabled"
            self._say(f"{state} {source} for reads (by {status.changed_by}: {status.reason})")
        return EXIT_OK
