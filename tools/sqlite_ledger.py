"""The SQLite effect ledger: one WAL file shared by every thread and process on one machine."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tools.base import (
    Claim,
    Compensation,
    EffectIntent,
    EffectLedgerError,
    EffectOutcome,
    EffectRecord,
)
from tools.ledger import decide_claim
from tools.spec import ToolConfigError

__all__ = ["SqliteEffectLedger", "record_fields", "record_from_fields"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'in_doubt', 'shadow')),
  owner TEXT NOT NULL, lease_until REAL NOT NULL, attempts INTEGER NOT NULL,
  started_at REAL NOT NULL, finished_at REAL, tool TEXT NOT NULL, tenant TEXT NOT NULL,
  thread_id TEXT NOT NULL, run_id TEXT NOT NULL, agent TEXT NOT NULL,
  side_effect TEXT NOT NULL, args TEXT NOT NULL, outcome TEXT, compensation TEXT,
  compensated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS effects_run ON effects (run_id);
CREATE INDEX IF NOT EXISTS effects_thread ON effects (thread_id);
CREATE INDEX IF NOT EXISTS effects_tenant ON effects (tenant);
"""
"""AUTOINCREMENT: a seq is never reused, so a key released and claimed again sorts last.
`compensated` is 1 once a compensation succeeded (checked in SQL, no JSON parsing)."""

_COLUMNS = (
    "key, status, owner, lease_until, attempts, started_at, finished_at, tool, tenant, "
    "thread_id, run_id, agent, side_effect, args, outcome, compensation"
)
_SELECT = f"SELECT seq, {_COLUMNS} FROM effects"
_NAMES = ("seq", *_COLUMNS.split(", "))
_INSERT = f"INSERT INTO effects ({_COLUMNS}) VALUES ({', '.join('?' * 16)})"
_REPLACE = f"REPLACE{_INSERT[6:]}"
_HELD = "WHERE key = ? AND status = 'pending' AND owner = ?"


def _dump(value: Any) -> str:
    # ASCII escapes keep lone surrogates (valid in JSON text) storable as UTF-8.
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


def record_fields(record: EffectRecord) -> dict[str, Any]:
    """`record` as flat fields (the column / hash-field layout every shared ledger stores)."""
    intent = record.intent
    return {
        "key": intent.key,
        "status": record.status,
        "owner": record.owner,
        "lease_until": record.lease_until,
        "attempts": record.attempts,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        **{f: getattr(intent, f) for f in ("tool", "tenant", "thread_id", "run_id", "agent")},
        "side_effect": intent.side_effect,
        "args": _dump(dict(intent.args)),
        "outcome": None if record.outcome is None else _dump(asdict(record.outcome)),
        "compensation": None if record.compensation is None else _dump(asdict(record.compensation)),
    }


def record_from_fields(fields: Mapping[str, Any]) -> EffectRecord:
    """The inverse of `record_fields` (plus `seq`); numbers may arrive as text (Redis)."""
    intent = EffectIntent(
        key=fields["key"],
        args=json.loads(fields["args"]),
        **{f: fields[f] for f in ("tool", "tenant", "thread_id", "run_id", "agent", "side_effect")},
    )
    outcome, compensation = fields.get("outcome"), fields.get("compensation")
    finished = fields.get("finished_at")
    return EffectRecord(
        intent=intent,
        status=fields["status"],
        seq=int(fields["seq"]),
        owner=fields["owner"],
        lease_until=float(fields["lease_until"]),
        attempts=int(fields["attempts"]),
        started_at=float(fields["started_at"]),
        finished_at=None if finished in (None, "") else float(finished),
        outcome=EffectOutcome(**json.loads(outcome)) if outcome else None,
        compensation=Compensation(**json.loads(compensation)) if compensation else None,
    )


class SqliteEffectLedger:
    """The `EffectLedger` in one SQLite file (WAL), for embedded mode; semantics as
    `InMemoryEffectLedger` (the conformance suite runs both).

    Every change is one statement or one `BEGIN IMMEDIATE` transaction, so two processes never
    both acquire a key. Each thread opens its own connection on first use (a forked child opens
    new ones). Commits are synced (`synchronous=FULL`) unless `durable=False`: a claim that
    vanished in a power cut would let its effect run twice.

    Args:
        path: the ledger file, e.g. `.bastion/effects.sqlite`, on a local disk.
        busy_timeout_s: how long a write waits for another process's lock before it fails.
        durable: sync each commit to disk (True) or only to the OS (survives crashes, not
            power loss; about 10x faster on a real disk).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout_s: float = 5.0, durable: bool = True
    ) -> None:
        if str(path) in ("", ":memory:"):
            raise ToolConfigError(
                f"SqliteEffectLedger needs a file shared by the processes, got {str(path)!r}. "
                "Hint: use InMemoryEffectLedger inside one process."
            )
        self.path = Path(path).absolute()
        """The ledger file, as named in errors."""
        self._timeout = busy_timeout_s
        self._sync = "FULL" if durable else "NORMAL"
        self._local = threading.local()
        self._inherited: list[sqlite3.Connection] = []
        with self._backend("create the ledger file"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode!r}, WAL is needed")
            conn.executescript(_SCHEMA)

    def claim(self, intent: EffectIntent, *, owner: str, lease_s: float, now: float) -> Claim:
        """See `EffectLedger.claim`."""
        fresh = EffectRecord(
            intent=intent,
            status="pending",
            seq=0,
            owner=owner,
            lease_until=now + lease_s,
            attempts=1,
            started_at=now,
        )
        with self._backend("claim an effect"):
            conn = self._conn()
            found = conn.execute(f"{_SELECT} WHERE key = ?", (intent.key,)).fetchall()
            if not found:  # a new key is one statement: the UNIQUE key decides the race
                sql = f"{_INSERT} ON CONFLICT DO NOTHING RETURNING seq"
                if seq := conn.execute(sql, _row(fresh)).fetchall():
                    return Claim(kind="acquired", record=replace(fresh, seq=seq[0][0]))
            elif found[0][2] in ("done", "in_doubt"):  # final states: no write lock needed
                return Claim(kind=found[0][2], record=_record(found[0]))
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                found = conn.execute(f"{_SELECT} WHERE key = ?", (intent.key,)).fetchall()
                record = _record(found[0]) if found else None
                claim, write = decide_claim(
                    record, intent, owner=owner, lease_s=lease_s, now=now, next_seq=0
                )
                if write and record is None:  # released meanwhile
                    seq = conn.execute(f"{_INSERT} RETURNING seq", _row(fresh)).fetchall()
                    claim = replace(claim, record=replace(fresh, seq=seq[0][0]))
                elif write:
                    taken = claim.record
                    conn.execute(
                        "UPDATE effects SET status = 'pending', owner = ?, lease_until = ?, "
                        "attempts = ?, outcome = NULL WHERE key = ?",
                        (taken.owner, taken.lease_until, taken.attempts, intent.key),
                    )
            return claim

    def finish(self, key: str, *, owner: str, outcome: EffectOutcome, now: float) -> bool:
        """See `EffectLedger.finish`."""
        return self._settle(key, owner, "done", outcome, now)

    def mark_in_doubt(self, key: str, *, owner: str, detail: str, now: float) -> bool:
        """See `EffectLedger.mark_in_doubt`."""
        doubt = EffectOutcome(ok=False, content=detail, error_kind="in_doubt")
        return self._settle(key, owner, "in_doubt", doubt, now)

    def _settle(
        self, key: str, owner: str, status: str, outcome: EffectOutcome, now: float
    ) -> bool:
        sql = f"UPDATE effects SET status = ?, outcome = ?, finished_at = ? {_HELD}"
        with self._backend(f"record an effect as {status}"):
            cursor = self._conn().execute(sql, (status, _dump(asdict(outcome)), now, key, owner))
            return cursor.rowcount == 1

    def release(self, key: str, *, owner: str) -> bool:
        """See `EffectLedger.release`."""
        with self._backend("release an effect claim"):
            return self._conn().execute(f"DELETE FROM effects {_HELD}", (key, owner)).rowcount == 1

    def record_shadow(self, intent: EffectIntent, outcome: EffectOutcome, *, now: float) -> None:
        """See `EffectLedger.record_shadow`."""
        record = EffectRecord(
            intent=intent,
            status="shadow",
            seq=0,
            owner="shadow",
            lease_until=now,
            attempts=1,
            started_at=now,
            finished_at=now,
            outcome=outcome,
        )
        with self._backend("record a shadow effect"):  # REPLACE: a new row, so a new seq
            self._conn().execute(_REPLACE, _row(record))

    def get(self, key: str) -> EffectRecord | None:
        """See `EffectLedger.get`."""
        with self._backend("read an effect"):
            rows = self._conn().execute(f"{_SELECT} WHERE key = ?", (key,)).fetchall()
        return _record(rows[0]) if rows else None

    def effects(
        self,
        *,
        run_id: str | None = None,
        thread_id: str | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> list[EffectRecord]:
        """See `EffectLedger.effects`."""
        if limit <= 0:
            return []
        filters = {"run_id": run_id, "thread_id": thread_id, "tenant": tenant}
        given = {name: value for name, value in filters.items() if value is not None}
        where = " AND ".join(f"{name} = ?" for name in given) or "1"
        sql = f"{_SELECT} WHERE {where} ORDER BY seq DESC LIMIT ?"
        with self._backend("list effects"):
            rows = self._conn().execute(sql, (*given.values(), limit)).fetchall()
        return [_record(row) for row in reversed(rows)]

    def compensate(self, key: str, compensation: Compensation) -> bool:
        """See `EffectLedger.compensate`."""
        sql = (
            "UPDATE effects SET compensation = ?, compensated = ? "
            "WHERE key = ? AND status = 'done' AND compensated = 0"
        )
        args = (_dump(asdict(compensation)), int(compensation.ok), key)
        with self._backend("record a compensation"):
            return self._conn().execute(sql, args).rowcount == 1

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            if hasattr(local, "conn"):  # inherited across fork: never used, never closed here
                self._inherited.append(local.conn)
            local.conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
            local.conn.execute(f"PRAGMA synchronous={self._sync}")
            local.pid = os.getpid()
        conn: sqlite3.Connection = local.conn
        return conn

    @contextmanager
    def _backend(self, action: str) -> Iterator[None]:
        """Turn any SQLite or file-system failure into an `EffectLedgerError` with a hint."""
        try:
            yield
        except (sqlite3.Error, OSError) as error:
            text = f"{type(error).__name__}: {error}"
            if self.path.is_dir():
                hint = f"it is a folder; name a file in it, e.g. {self.path / 'effects.sqlite'}"
            elif "not a database" in text:
                hint = "it is not a SQLite file; name a new file, e.g. under BASTION_HOME"
            elif "locked" in text or "busy" in text:
                hint = f"another process held the write lock for over {self._timeout}s"
            else:
                hint = "its folder must exist or be creatable and writable by this process"
            raise EffectLedgerError(
                f"effect ledger {self.path} failed: could not {action} ({text}). No side effect "
                f"runs until it works. Hint: {hint}."
            ) from error


def _row(record: EffectRecord) -> tuple[Any, ...]:
    return tuple(record_fields(record).values())


def _record(row: tuple[Any, ...]) -> EffectRecord:
    return record_from_fields(dict(zip(_NAMES, row, strict=True)))
