"""Commit logs without a server: in-process (reference) and SQLite (embedded, multi-process)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memory.base import LogEntry
from memory.contract import MemoryContractError

__all__ = ["InMemoryCommitLog", "MemoryBackendError", "SqliteCommitLog", "check_seq"]


class MemoryBackendError(RuntimeError):
    """A memory backend cannot be used (unreachable server, unwritable file); says what to do."""


def check_seq(seq: int) -> int:
    """A log position to append at, or a `MemoryContractError` (positions start at 1)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise MemoryContractError(
            f"commit log positions start at 1; got `seq={seq!r}`. Hint: append at head + 1 "
            "(1 when `head()` is None)"
        )
    return seq


class InMemoryCommitLog:
    """The reference `CommitLog`: a list per tenant behind a lock (one process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, list[str]] = {}
        self._seqs: dict[str, dict[str, int]] = {}
        self._projected: dict[str, int] = {}
        self._leases: dict[str, tuple[str, float]] = {}

    def head(self, tenant: str) -> LogEntry | None:
        with self._lock:  # length and last id read together, never across an append
            ids = self._ids.get(tenant)
            return LogEntry(seq=len(ids), commit_id=ids[-1]) if ids else None

    def append(self, tenant: str, seq: int, commit_id: str) -> bool:
        check_seq(seq)
        with self._lock:
            ids = self._ids.get(tenant, [])
            seqs = self._seqs.get(tenant, {})
            if len(ids) != seq - 1 or commit_id in seqs:
                return False
            self._ids[tenant], self._seqs[tenant] = ids, seqs
            ids.append(commit_id)
            seqs[commit_id] = seq
            return True

    def entries(self, tenant: str, *, after: int = 0, upto: int | None = None) -> list[LogEntry]:
        with self._lock:
            ids = list(self._ids.get(tenant, ()))
        stop = len(ids) if upto is None else min(upto, len(ids))
        return [LogEntry(seq=i + 1, commit_id=ids[i]) for i in range(max(after, 0), stop)]

    def locate(self, tenant: str, commit_id: str) -> int | None:
        with self._lock:
            return self._seqs.get(tenant, {}).get(commit_id)

    def projected(self, tenant: str) -> int:
        with self._lock:
            return self._projected.get(tenant, 0)

    def mark_projected(self, tenant: str, seq: int) -> None:
        with self._lock:
            self._projected[tenant] = max(self._projected.get(tenant, 0), seq)

    def claim_projection(self, tenant: str, owner: str, lease_s: float) -> bool:
        now = time.monotonic()
        with self._lock:
            holder, until = self._leases.get(tenant, (owner, 0.0))
            if holder != owner and until > now:
                return False
            self._leases[tenant] = (owner, now + lease_s)
            return True

    def release_projection(self, tenant: str, owner: str) -> None:
        with self._lock:
            if self._leases.get(tenant, ("", 0.0))[0] == owner:
                del self._leases[tenant]

    def tenants(self) -> list[str]:
        with self._lock:
            return sorted(self._ids)

    def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_log (
    tenant TEXT NOT NULL, seq INTEGER NOT NULL, commit_id TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS memory_log_id ON memory_log (tenant, commit_id);
CREATE TABLE IF NOT EXISTS memory_projected (tenant TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS memory_projector (
    tenant TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL
);
"""

_INHERITED: list[sqlite3.Connection] = []
"""In a forked child: the parent's connections, kept referenced (so never closed) for good."""


class SqliteCommitLog:
    """`CommitLog` in a SQLite file (WAL), safe across threads and processes.

    The primary key (tenant, seq) makes the append atomic: a second insert at the same position
    fails, and the `seq - 1` check runs in the same immediate transaction. One connection per
    process, shared by its threads; a forked child opens its own and never touches (nor
    closes) the parent's. `close()` closes it; a later call opens a new one.

    Args:
        path: database file (its folder is created); `:memory:` for a private one.
        busy_timeout_s: how long a write waits for another process's lock before it fails.
    """

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        """The database file, as named in errors."""
        self._timeout = busy_timeout_s
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        with self._session("open the memory commit log") as conn:
            conn.executescript(_SCHEMA)

    def head(self, tenant: str) -> LogEntry | None:
        rows = self._query(
            "read the head",
            "SELECT seq, commit_id FROM memory_log WHERE tenant = ? ORDER BY seq DESC LIMIT 1",
            (tenant,),
        )
        return LogEntry(seq=rows[0][0], commit_id=rows[0][1]) if rows else None

    def append(self, tenant: str, seq: int, commit_id: str) -> bool:
        check_seq(seq)
        with self._session("append a commit") as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                (top,) = conn.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM memory_log WHERE tenant = ?", (tenant,)
                ).fetchone()
                if top != seq - 1:
                    conn.execute("ROLLBACK")
                    return False
                conn.execute(
                    "INSERT INTO memory_log (tenant, seq, commit_id) VALUES (?, ?, ?)",
                    (tenant, seq, commit_id),
                )
                conn.execute("COMMIT")
                return True
            except sqlite3.IntegrityError:  # the id is already in the log
                conn.execute("ROLLBACK")
                return False
            finally:  # any other failure must not leave the shared connection in a transaction
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    def entries(self, tenant: str, *, after: int = 0, upto: int | None = None) -> list[LogEntry]:
        rows = self._query(
            "read entries",
            "SELECT seq, commit_id FROM memory_log WHERE tenant = ? AND seq > ? AND seq <= ? "
            "ORDER BY seq",
            (tenant, after, upto if upto is not None else 2**62),
        )
        return [LogEntry(seq=seq, commit_id=commit_id) for seq, commit_id in rows]

    def locate(self, tenant: str, commit_id: str) -> int | None:
        rows = self._query(
            "locate a commit",
            "SELECT seq FROM memory_log WHERE tenant = ? AND commit_id = ?",
            (tenant, commit_id),
        )
        return rows[0][0] if rows else None

    def projected(self, tenant: str) -> int:
        rows = self._query(
            "read the projected position",
            "SELECT seq FROM memory_projected WHERE tenant = ?",
            (tenant,),
        )
        return rows[0][0] if rows else 0

    def mark_projected(self, tenant: str, seq: int) -> None:
        self._query(  # a first mark below 0 stores 0, as projected() reports before any
            "mark the projected position",
            "INSERT INTO memory_projected (tenant, seq) VALUES (?, MAX(?, 0)) "
            "ON CONFLICT(tenant) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            (tenant, seq),
        )

    def claim_projection(self, tenant: str, owner: str, lease_s: float) -> bool:
        now = time.time()  # wall clock: the lease is shared between processes
        rows = self._query(
            "claim the projection lease",
            "INSERT INTO memory_projector (tenant, owner, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(tenant) DO UPDATE SET owner = excluded.owner, expires = excluded.expires "
            "WHERE memory_projector.owner = excluded.owner OR memory_projector.expires < ? "
            "RETURNING owner",
            (tenant, owner, now + lease_s, now),
        )
        return bool(rows) and rows[0][0] == owner

    def release_projection(self, tenant: str, owner: str) -> None:
        self._query(
            "release the projection lease",
            "DELETE FROM memory_projector WHERE tenant = ? AND owner = ?",
            (tenant, owner),
        )

    def tenants(self) -> list[str]:
        rows = self._query(
            "list tenants", "SELECT DISTINCT tenant FROM memory_log ORDER BY tenant", ()
        )
        return [row[0] for row in rows]

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.close()

    def _query(self, action: str, sql: str, params: tuple[object, ...]) -> list[Any]:
        with self._session(action) as conn:
            return conn.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def _session(self, action: str) -> Iterator[sqlite3.Connection]:
        """This process's connection, held by one thread for one call; any SQLite or file
        failure becomes a `MemoryBackendError` naming the file and what to do."""
        if self._pid != os.getpid():
            self._adopt_fork()
        try:
            with self._lock:
                yield self._connection()
        except (sqlite3.Error, OSError) as error:
            raise self._error(action, error) from error

    def _adopt_fork(self) -> None:
        """In a forked child: a fresh lock (another thread may have held it at the fork) and,
        for a file, a connection of its own; the parent's stays untouched, never closed.
        A `:memory:` database keeps its connection: the child has a private copy of it."""
        self._lock = threading.Lock()
        if self.path != ":memory:" and self._conn is not None:
            _INHERITED.append(self._conn)
            self._conn = None
        self._pid = os.getpid()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=self._timeout
            )
            conn.execute("PRAGMA journal_mode=WAL")
            self._conn = conn
        return self._conn

    def _error(self, action: str, error: BaseException) -> MemoryBackendError:
        text = f"{type(error).__name__}: {error}"
        if "locked" in text or "busy" in text:
            hint = f"another process held the write lock for over {self._timeout}s"
        elif "not a database" in text:
            hint = "it is not a SQLite file; name a new file, e.g. under BASTION_HOME"
        else:
            hint = "check the folder is writable or set BASTION_HOME to one that is"
        return MemoryBackendError(
            f"memory commit log `{self.path}` failed: could not {action} ({text}). Hint: {hint}."
        )
