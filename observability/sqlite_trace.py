"""The SQLite trace sink: trace events and run summaries shared by the processes of one machine."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from observability.events import RunSummary, TraceEvent
from observability.runs import fold_run
from observability.sqlite_files import SqliteFile

__all__ = ["TRACE_FILE", "SqliteTraceSink"]

TRACE_FILE = "traces.sqlite"
"""The embedded default's file name, under `BASTION_HOME`."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trace_events (
  seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,
  run_id TEXT NOT NULL, tenant TEXT NOT NULL, ts REAL NOT NULL, event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trace_events_run ON trace_events (run_id, seq);
CREATE INDEX IF NOT EXISTS trace_events_tenant ON trace_events (tenant, seq);
CREATE INDEX IF NOT EXISTS trace_events_tenant_ts ON trace_events (tenant, ts);
CREATE TABLE IF NOT EXISTS trace_runs (
  run_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, updated_at REAL NOT NULL, summary TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS trace_runs_updated ON trace_runs (updated_at);
CREATE INDEX IF NOT EXISTS trace_runs_tenant ON trace_runs (tenant, updated_at);
"""
"""`trace_events`: one row per event, in storage order (`seq`, the rowid: rows are never
deleted, so it only grows), the order `InMemoryTraceSink` keeps too; ordering by `ts` instead
would mix up events stamped by the clocks of several processes. `event_id` is UNIQUE, so a
retried batch is stored once (`INSERT OR IGNORE`). The `(run_id, seq)` and `(tenant, seq)`
indexes answer "the newest N of a run / a tenant" by a backwards range scan without a sort;
`(tenant, ts)` serves time-window queries (KPIs). `trace_runs`: the folded summaries."""

_INSERT = (
    "INSERT OR IGNORE INTO trace_events (event_id, run_id, tenant, ts, event) VALUES (?,?,?,?,?)"
)
_SUMMARY = "SELECT summary FROM trace_runs WHERE run_id = ?"
_UPSERT = (
    "INSERT INTO trace_runs VALUES (?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
    "tenant = excluded.tenant, updated_at = excluded.updated_at, summary = excluded.summary"
)


class SqliteTraceSink:
    """A `TraceSink` in one SQLite file (WAL), shared by every process that opens it.

    - `write` stores a batch and folds it into its runs' summaries in one transaction: all of
      it or none of it, and two processes writing events of one run never lose a step.
    - An event whose `event_id` is already stored is ignored (and not folded again).
    - Values that are not JSON (a `datetime` in tool args, say) are stored as their `str()`.
    - Any SQLite or file-system failure raises `TraceBackendError` naming the file.

    Each thread gets its own connection, opened on first use; a forked child opens its own.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 5.0) -> None:
        """Open the trace file, creating it and its folder if needed.

        Args:
            path: the SQLite file, e.g. `$BASTION_HOME/traces.sqlite` (`TRACE_FILE`); on a local
                disk (WAL needs shared memory, which network filesystems lack).
            busy_timeout_s: how long a call waits for another process's write lock.

        Raises:
            ValueError: `:memory:` or an empty path.
            TraceBackendError: the file cannot be created, opened or put in WAL mode.
        """
        if str(path) in ("", ":memory:"):
            raise ValueError(
                f"SqliteTraceSink needs a file shared by the processes, got {str(path)!r}. "
                f"Hint: name a file such as $BASTION_HOME/{TRACE_FILE}, or use "
                "InMemoryTraceSink inside one process."
            )
        self.path = Path(path).absolute()
        """The trace file."""
        self.url = str(self.path)
        """Where the traces live, as named in `TraceBackendError`."""
        # NORMAL: in WAL mode a commit survives a crash of the process; only a power cut may
        # lose the last transactions, an acceptable price for traces (not for kills).
        self._file = SqliteFile(
            self.path,
            schema=_SCHEMA,
            busy_timeout_s=busy_timeout_s,
            synchronous="NORMAL",
            what="trace file",
            default_name=TRACE_FILE,
        )

    def write(self, events: Sequence[TraceEvent]) -> None:
        """Store events (new `event_id`s only) and fold them into their runs, atomically.

        Raises:
            TraceBackendError: SQLite failed; nothing of the batch is stored.
        """
        if not events:
            return
        rows = [
            (e["event_id"], e["run_id"], e["tenant"], e["ts"], json.dumps(e, default=str))
            for e in events
        ]
        with self._file.backend("write trace events"), self._file.connection() as conn:
            # IMMEDIATE: take the write lock before reading the summaries, so no other process
            # folds into them between this read and this upsert.
            conn.execute("BEGIN IMMEDIATE")
            fresh = [e for e, row in zip(events, rows, strict=True) if _inserted(conn, row)]
            by_run: dict[str, list[TraceEvent]] = {}
            for event in fresh:
                if event["run_id"]:
                    by_run.setdefault(event["run_id"], []).append(event)
            for run_id, run_events in by_run.items():
                stored = conn.execute(_SUMMARY, (run_id,)).fetchall()
                first, *rest = run_events
                summary = fold_run(json.loads(stored[0][0]) if stored else None, first)
                for event in rest:
                    summary = fold_run(summary, event)
                conn.execute(
                    _UPSERT,
                    (run_id, summary["tenant"], summary["updated_at"], json.dumps(summary)),
                )

    def events(
        self, *, run_id: str | None = None, tenant: str | None = None, limit: int = 10_000
    ) -> list[TraceEvent]:
        """Stored events of one run and/or one tenant, oldest first (the newest `limit`)."""
        if limit <= 0:
            return []
        where, args = _where(run_id=run_id, tenant=tenant)
        query = f"SELECT event FROM trace_events{where} ORDER BY seq DESC LIMIT ?"
        with self._file.backend("read trace events"):
            rows = self._file.connection().execute(query, (*args, limit)).fetchall()
        return [json.loads(row[0]) for row in reversed(rows)]

    def runs(self, *, tenant: str | None = None, limit: int = 100) -> list[RunSummary]:
        """Run summaries, most recently updated first (ties in any order)."""
        if limit <= 0:
            return []
        where, args = _where(tenant=tenant)
        query = f"SELECT summary FROM trace_runs{where} ORDER BY updated_at DESC LIMIT ?"
        with self._file.backend("read run summaries"):
            rows = self._file.connection().execute(query, (*args, limit)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def close(self) -> None:
        """Close every connection this sink opened; a later call opens new ones.

        Call it when no other thread is using the sink.
        """
        self._file.close()

    def __enter__(self) -> SqliteTraceSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _inserted(conn: sqlite3.Connection, row: tuple[Any, ...]) -> bool:
    """Insert one event row; False when its `event_id` was already stored."""
    return conn.execute(_INSERT, row).rowcount == 1


def _where(**filters: str | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause (and its arguments) over the given columns, skipping None filters."""
    chosen = {column: value for column, value in filters.items() if value is not None}
    if not chosen:
        return "", ()
    return " WHERE " + " AND ".join(f"{c} = ?" for c in chosen), tuple(chosen.values())
