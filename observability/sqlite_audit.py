"""The SQLite audit log: one hash chain in a WAL file, appended by every process on one machine."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from observability.chain import (
    GENESIS,
    AuditConfigError,
    ChainProblem,
    VerifyReport,
    canonical,
    check_entry,
    seal,
    verify_chain,
)
from observability.events import AuditEntry, AuditHead, AuditRecord
from observability.sqlite_files import SqliteFile

__all__ = ["SqliteAuditLog", "check_key", "kept_head_problems"]

# No declared type on the entry columns: SQLite then stores each value as given (an int `ts`
# stays an int), so a record reads back exactly as it was hashed.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, kind, ts, tenant, actor, run_id, subject,
  detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (tenant, seq);
CREATE INDEX IF NOT EXISTS audit_by_kind ON audit (kind, seq);
CREATE INDEX IF NOT EXISTS audit_by_run ON audit (run_id, seq);
CREATE TABLE IF NOT EXISTS audit_head (
  one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL
);
"""
"""`audit`: the records, clustered on `seq`. `audit_head`: the kept head, one row, written in
the same transaction as the records it seals; kept apart so deleting the newest records from
`audit` leaves a head that says they existed."""

_NAMES = ("seq", "kind", "ts", "tenant", "actor", "run_id", "subject", "detail", "prev", "hash")
_COLUMNS = ", ".join(_NAMES)
_INSERT = f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SET_HEAD = (
    "INSERT INTO audit_head (one, seq, hash) VALUES (1, ?, ?) "
    "ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"
)
_CHUNK = 1000
"""Records read per query while verifying."""


def check_key(key: bytes | None) -> bytes | None:
    """Validate an audit key (None: a plain SHA-256 chain).

    Raises:
        AuditConfigError: the key is not non-empty bytes.
    """
    if key is not None and (not isinstance(key, bytes) or not key):
        raise AuditConfigError(
            f"audit key must be non-empty bytes or None, got {type(key).__name__} {key!r:.20}. "
            "Hint: read it from a secret, e.g. os.environb[b'BASTION_AUDIT_KEY']."
        )
    return key


def kept_head_problems(head: AuditHead | None, last_seq: int) -> tuple[ChainProblem, ...]:
    """What a backend's own head says about its records beyond what `verify_chain` checks.

    Appends write the records and the head together, so in one consistent read a log with
    records but no head lost its head (truncation can no longer be ruled out), and records
    after the head were written around the log.
    """
    if head is None and last_seq:
        return (
            ChainProblem(
                kind="truncated",
                seq=last_seq + 1,
                message=f"the kept head is missing although the log ends at record {last_seq}: "
                "it was deleted, so removed newest records cannot be ruled out (truncated?)",
            ),
        )
    if head is not None and last_seq > head["seq"]:
        return (
            ChainProblem(
                kind="inserted",
                seq=head["seq"] + 1,
                message=f"records {head['seq'] + 1}..{last_seq} come after the kept head "
                f"(record {head['seq']}): they were written around the log (inserted)",
            ),
        )
    return ()


class SqliteAuditLog:
    """`AuditLog` in a SQLite file shared by every process that opens it; thread-safe.

    The embedded default (`$BASTION_HOME/audit.sqlite`). Semantics are those of
    `InMemoryAuditLog` (the conformance suite runs both): `append` reads the head, seals the
    batch and writes it with the new head in one `BEGIN IMMEDIATE` transaction, so appenders
    in any thread or process form one chain. Writes are synced (WAL, `synchronous=FULL`): a
    returned record survives a power cut. Each thread gets its own connection.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, key: bytes | None = None, busy_timeout_s: float = 5.0
    ) -> None:
        """Open the audit file, creating it and its folder if needed.

        Args:
            path: the SQLite file; every process must name the same file on a local disk.
            key: HMAC key of the chain (None: plain SHA-256); every handle needs the same.
            busy_timeout_s: how long an append waits for another writer before it fails.

        Raises:
            AuditConfigError: `:memory:` or an empty path, or a malformed key.
            TraceBackendError: the file cannot be opened, created or put in WAL mode.
        """
        if str(path) in ("", ":memory:"):
            raise AuditConfigError(
                f"SqliteAuditLog needs a file shared by the processes, got {str(path)!r}. "
                "Hint: use InMemoryAuditLog inside one process."
            )
        self._key = check_key(key)
        self.path = Path(path).absolute()
        """The audit file."""
        self.url = str(self.path)
        """Where the log lives, as named in `TraceBackendError`."""
        self._file = SqliteFile(
            self.path,
            schema=_SCHEMA,
            busy_timeout_s=busy_timeout_s,
            synchronous="FULL",  # an audit record survives a power cut
            what="audit file",
            default_name="audit.sqlite",
            integrity_hint="the file holds records after its kept head; run `bastion audit verify`",
        )

    def append(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Seal entries after the head, all or none (see `AuditLog.append`)."""
        clean = [check_entry(entry) for entry in entries]
        if not clean:
            return []
        with (
            self._file.backend("append to the audit log", outcome=" Nothing was appended."),
            self._file.connection() as conn,
        ):
            conn.execute("BEGIN IMMEDIATE")  # the head is read under the write lock
            rows = conn.execute("SELECT seq, hash FROM audit_head").fetchall()
            seq, prev = rows[0] if rows else (0, GENESIS)
            sealed = []
            for entry in clean:
                seq += 1
                sealed.append(seal(entry, seq=seq, prev=prev, key=self._key))
                prev = sealed[-1]["hash"]
            conn.executemany(_INSERT, [_row(record) for record in sealed])
            conn.execute(_SET_HEAD, (seq, prev))
        return sealed

    def records(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        tenant: str | None = None,
        kind: str | None = None,
        run_id: str | None = None,
    ) -> list[AuditRecord]:
        """Records with `seq > after`, in order, filtered (`*` records match every tenant)."""
        if limit <= 0:
            return []
        where: list[str] = ["seq > ?"]
        args: list[object] = [after]
        if tenant is not None:
            where.append("tenant IN (?, '*')")
            args.append(tenant)
        for column, value in (("kind", kind), ("run_id", run_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        query = f"SELECT {_COLUMNS} FROM audit WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        with self._file.backend("read the audit records"):
            rows = self._file.connection().execute(query, (*args, limit)).fetchall()
        return [_record(row) for row in rows]

    def head(self) -> AuditHead | None:
        """The kept head."""
        with self._file.backend("read the audit head"):
            rows = self._file.connection().execute("SELECT seq, hash FROM audit_head").fetchall()
        return AuditHead(seq=rows[0][0], hash=rows[0][1]) if rows else None

    def verify(self) -> VerifyReport:
        """Check the records up to the kept head, read in chunks from one snapshot, against
        it; records after it are reported (`kept_head_problems`), not checked."""
        with self._file.backend("verify the audit log"), self._file.connection() as conn:
            conn.execute("BEGIN")  # one snapshot: the head and the records agree
            rows = conn.execute("SELECT seq, hash FROM audit_head").fetchall()
            head = AuditHead(seq=rows[0][0], hash=rows[0][1]) if rows else None
            records = list(_chunks(conn, head["seq"] if head else None))
            last = conn.execute("SELECT max(seq) FROM audit").fetchall()[0][0] or 0
        report = verify_chain(records, head=head, key=self._key)
        extra = kept_head_problems(head, last)
        if not extra:
            return report
        return VerifyReport(records=report.records, head=head, problems=report.problems + extra)

    def close(self) -> None:
        """Close every connection this log opened; a later call opens new ones."""
        self._file.close()


def _chunks(conn: sqlite3.Connection, upto: int | None) -> Iterator[AuditRecord]:
    """The records up to `upto` (None: all) in `seq` order, `_CHUNK` rows per query."""
    after: float = float("-inf")  # even a tampered seq of 0 or below is read
    query = f"SELECT {_COLUMNS} FROM audit WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
    while True:
        bound = float("inf") if upto is None else upto
        rows = conn.execute(query, (after, bound, _CHUNK)).fetchall()
        yield from (_record(row) for row in rows)
        if len(rows) < _CHUNK:
            return
        after = rows[-1][0]


def _row(record: AuditRecord) -> tuple[Any, ...]:
    values = {**record, "detail": canonical(record["detail"]).decode()}
    return tuple(values[name] for name in _NAMES)


def _record(row: tuple[Any, ...]) -> AuditRecord:
    record = dict(zip(_NAMES, row, strict=True))
    try:
        record["detail"] = json.loads(record["detail"])
    except (TypeError, ValueError):  # a tampered row: verify reports it as altered
        record["detail"] = {"unreadable": record["detail"]}
    return record  # type: ignore[return-value]
