"""The SQLite effect ledger: one WAL file shared by every thread and process on one machine."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
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
from tools.ledger import decide_claim, in_doubt_outcome, pending_record, shadow_record
from tools.spec import ToolConfigError

__all__ = [
    "SqliteEffectLedger",
    "dump_json",
    "record_fields",
    "record_from_fields",
]

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

_JSON = ("outcome", "compensation")
_INTENT = ("key", "tool", "tenant", "thread_id", "run_id", "agent", "side_effect")
_STATE = ("status", "owner", "lease_until", "attempts", "started_at", "finished_at")
_COLUMNS = ", ".join((*_INTENT, "args", *_STATE, "outcome", "compensation"))
_SELECT = f"SELECT seq, {_COLUMNS} FROM effects"
_NAMES = ("seq", *_COLUMNS.split(", "))
_INSERT = f"INSERT INTO effects ({_COLUMNS}) VALUES ({', '.join('?' * 16)})"
_REPLACE = f"REPLACE{_INSERT[6:]}"
_HELD = "WHERE key = ? AND status = 'pending' AND owner = ?"


def dump_json(value: Any) -> str:
    """Compact JSON; ASCII escapes keep lone surrogates (valid JSON text) storable as UTF-8."""
    return json.dumps(value, separators=(",", ":"))


def record_fields(record: EffectRecord) -> dict[str, Any]:
    """`record` as flat fields without `seq`: the columns (and Redis hash fields) it is kept in."""
    values = (record.outcome, record.compensation)
    return {
        **{name: getattr(record.intent, name) for name in _INTENT},
        "args": dump_json(dict(record.intent.args)),
        **{name: getattr(record, name) for name in _STATE},
        **{
            k: None if v is None else dump_json(asdict(v))
            for k, v in zip(_JSON, values, strict=True)
        },
    }


def record_from_fields(fields: Mapping[str, Any]) -> EffectRecord:
    """The inverse of `record_fields`, plus `seq`; numbers may arrive as text (Redis)."""
    outcome, compensation, finished = (fields.get(n) for n in (*_JSON, "finished_at"))
    return EffectRecord(
        intent=EffectIntent(args=json.loads(fields["args"]), **{n: fields[n] for n in _INTENT}),
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
    both acquire a key. Connections are pooled: one per concurrent call, shared by the threads;
    a forked child opens its own and never touches (nor closes) the parent's. Commits are
    synced (`synchronous=FULL`) unless `durable=False`: a claim lost in a power cut would let
    its effect run twice.

    Args:
        path: the ledger file, e.g. `.bastion/effects.sqlite`, on a local disk.
        busy_timeout_s: how long a write waits for another process's lock before it fails.
        durable: sync each commit to disk (True) or only to the OS (survives a crash of the
            process, not a power cut; several times faster on a real disk).
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
        self._pid = os.getpid()
        self._idle: list[sqlite3.Connection] = []
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._session("create the ledger file") as conn:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode!r}, WAL is needed")
            conn.executescript(_SCHEMA)

    def claim(self, intent: EffectIntent, *, owner: str, lease_s: float, now: float) -> Claim:
        """See `EffectLedger.claim`."""
        fresh = pending_record(intent, owner=owner, lease_s=lease_s, now=now)
        with self._session("claim an effect") as conn:
            found = conn.execute(f"{_SELECT} WHERE key = ?", (intent.key,)).fetchall()
            if not found:  # a new key is one statement: the UNIQUE key decides the race
                sql = f"{_INSERT} ON CONFLICT DO NOTHING RETURNING seq"
                if seq := conn.execute(sql, _row(fresh)).fetchall():
                    return Claim(kind="acquired", record=replace(fresh, seq=seq[0][0]))
            elif found[0][_STATUS] in ("done", "in_doubt"):  # final: no write lock needed
                return Claim(kind=found[0][_STATUS], record=_record(found[0]))
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
        return self._settle(key, owner, "in_doubt", in_doubt_outcome(detail), now)

    def _settle(
        self, key: str, owner: str, status: str, outcome: EffectOutcome, now: float
    ) -> bool:
        sql = f"UPDATE effects SET status = ?, outcome = ?, finished_at = ? {_HELD}"
        args = (status, dump_json(asdict(outcome)), now, key, owner)
        with self._session(f"record an effect as {status}") as conn:
            return conn.execute(sql, args).rowcount == 1

    def release(self, key: str, *, owner: str) -> bool:
        """See `EffectLedger.release`."""
        with self._session("release an effect claim") as conn:
            return conn.execute(f"DELETE FROM effects {_HELD}", (key, owner)).rowcount == 1

    def record_shadow(self, intent: EffectIntent, outcome: EffectOutcome, *, now: float) -> None:
        """See `EffectLedger.record_shadow`."""
        record = shadow_record(intent, outcome, now=now)
        with self._session("record a shadow effect") as conn:  # REPLACE: a new row and seq
            conn.execute(_REPLACE, _row(record))

    def get(self, key: str) -> EffectRecord | None:
        """See `EffectLedger.get`."""
        with self._session("read an effect") as conn:
            rows = conn.execute(f"{_SELECT} WHERE key = ?", (key,)).fetchall()
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
        with self._session("list effects") as conn:
            rows = conn.execute(sql, (*given.values(), limit)).fetchall()
        return [_record(row) for row in reversed(rows)]

    def compensate(self, key: str, compensation: Compensation) -> bool:
        """See `EffectLedger.compensate`."""
        sql = (
            "UPDATE effects SET compensation = ?, compensated = ? "
            "WHERE key = ? AND status = 'done' AND compensated = 0"
        )
        args = (dump_json(asdict(compensation)), int(compensation.ok), key)
        with self._session("record a compensation") as conn:
            return conn.execute(sql, args).rowcount == 1

    def close(self) -> None:
        """Close the connections this process opened; a later call opens new ones. Call it
        when no other thread is using the ledger."""
        with self._lock:
            opened = self._opened if self._pid == os.getpid() else []
            self._idle, self._opened = [], []
        for conn in opened:
            conn.close()

    @contextlib.contextmanager
    def _session(self, action: str) -> Iterator[sqlite3.Connection]:
        """A pooled connection for one call; any SQLite or file-system failure becomes an
        `EffectLedgerError` naming the file and what to do."""
        try:
            conn = self._checkout()
            try:
                yield conn
            finally:
                self._idle.append(conn)
        except (sqlite3.Error, OSError) as error:
            raise self._error(action, error) from error

    def _checkout(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked: the parent's connections stay untouched
            _INHERITED.append(self._opened)
            self._lock = threading.Lock()  # another thread may have held it at the fork
            self._pid, self._idle, self._opened = os.getpid(), [], []
        with contextlib.suppress(IndexError):
            return self._idle.pop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA synchronous={self._sync}")
        with self._lock:
            self._opened.append(conn)
        return conn

    def _error(self, action: str, error: BaseException) -> EffectLedgerError:
        text = f"{type(error).__name__}: {error}"
        if self.path.is_dir():
            hint = f"it is a folder; name a file in it, e.g. {self.path / 'effects.sqlite'}"
        elif "not a database" in text:
            hint = "it is not a SQLite file; name a new file, e.g. under BASTION_HOME"
        elif "locked" in text or "busy" in text:
            hint = f"another process held the write lock for over {self._timeout}s"
        else:
            hint = "its folder must exist or be creatable and writable by this process"
        return EffectLedgerError(
            f"effect ledger {self.path} failed: could not {action} ({text}). No side effect "
            f"runs until it works. Hint: {hint}."
        )


_INHERITED: list[list[sqlite3.Connection]] = []
"""In a forked child: the parent's connections, kept referenced (so never closed) for good."""
_STATUS = _NAMES.index("status")


def _row(record: EffectRecord) -> tuple[Any, ...]:
    return tuple(record_fields(record).values())


def _record(row: tuple[Any, ...]) -> EffectRecord:
    return record_from_fields(dict(zip(_NAMES, row, strict=True)))
