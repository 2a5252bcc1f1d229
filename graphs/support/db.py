"""The support example's business database (SQLite): customers, orders, invoices, refunds, emails.

Side effects of the demo are real rows here. Every write carries the gateway's idempotency key
under a UNIQUE constraint, so a retried, resumed or re-run call returns the first result instead
of writing twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["SupportDB"]

OUTBOUND_EMAILS = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY, to_addr TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'sent', 'voided')),
    idempotency_key TEXT NOT NULL UNIQUE, send_key TEXT UNIQUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, voided_at TEXT, void_key TEXT)"""
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, tier TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id), item TEXT NOT NULL,
    amount REAL NOT NULL, status TEXT NOT NULL, placed_at TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS invoices (
    id TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id), amount REAL NOT NULL,
    status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (
    id INTEGER PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id), amount REAL NOT NULL,
    reason TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    status TEXT NOT NULL DEFAULT 'issued' CHECK (status IN ('issued', 'reversed')),
    reversed_at TEXT, reversal_key TEXT);
CREATE TABLE IF NOT EXISTS order_events (
    id INTEGER PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id), event TEXT NOT NULL,
    detail TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, previous_status TEXT);
"""
    + OUTBOUND_EMAILS.format(name="outbound_emails")
    + """;
CREATE UNIQUE INDEX IF NOT EXISTS refunds_reversal_key ON refunds(reversal_key);
CREATE UNIQUE INDEX IF NOT EXISTS outbound_emails_void_key ON outbound_emails(void_key);
"""
)
"""The current schema. `CREATE ... IF NOT EXISTS` leaves older tables as they are; `_migrate`
brings them up to date first."""

ADDED_COLUMNS = {
    "refunds": (
        ("status", "TEXT NOT NULL DEFAULT 'issued' CHECK (status IN ('issued', 'reversed'))"),
        ("reversed_at", "TEXT"),
        ("reversal_key", "TEXT"),
    ),
    "order_events": (("previous_status", "TEXT"),),
}
"""Columns added since the first schema (ALTER TABLE cannot add UNIQUE ones: those are unique
indexes in `SCHEMA`)."""
FIRST_OUTBOUND_COLUMNS = "id, to_addr, subject, body, status, idempotency_key, send_key, created_at"

EFFECT_TABLES = ("refunds", "order_events", "outbound_emails")
TABLES = ("customers", "orders", "invoices", "refunds", "order_events", "outbound_emails")


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database made by an earlier version (`make demo` before undo) up to date."""
    for table, columns in ADDED_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for column, declaration in columns:
            if have and column not in have:  # `have` is empty when the table is new
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    found = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbound_emails'"
    ).fetchone()
    if found is not None and "'voided'" not in found[0]:
        # A CHECK constraint cannot be altered: rebuild the table (SQLite's documented recipe).
        conn.execute(OUTBOUND_EMAILS.format(name="outbound_emails_new"))
        conn.execute(
            f"INSERT INTO outbound_emails_new ({FIRST_OUTBOUND_COLUMNS}) "
            f"SELECT {FIRST_OUTBOUND_COLUMNS} FROM outbound_emails"
        )
        conn.execute("DROP TABLE outbound_emails")
        conn.execute("ALTER TABLE outbound_emails_new RENAME TO outbound_emails")


class SupportDB:
    """The business database at `path`, created and seeded from the repo's data on first use.

    A database made by an earlier version is migrated in place (columns added, never dropped).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write transaction: two processes opening a fresh or old file migrate it once.
        with self.write() as conn:
            _migrate(conn)
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0] == 0:
                self._seed(conn)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction: committed on success, rolled back on error."""
        # A connection per operation: tools run on the graph's worker threads, and the server
        # may run several graphs at once; SQLite's own locking serialises the writers.
        conn = sqlite3.connect(self.path, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its first statement.

        `BEGIN IMMEDIATE` (not the default deferred begin) means a check made inside it cannot
        go stale before the write: a concurrent writer waits for the commit. Commits on
        success, rolls back on any error.
        """
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    @contextmanager
    def effect(
        self, table: str, key: str
    ) -> Iterator[tuple[sqlite3.Connection, dict[str, Any] | None]]:
        """A `write()` transaction for one idempotent effect, with the row recorded under `key`.

        Yields the connection and the row an earlier attempt wrote with this idempotency key
        (None on the first attempt). Two workers with the same key never both see None: the
        second waits for the first to commit, then gets its row.
        """
        if table not in EFFECT_TABLES:
            raise ValueError(f"{table!r} records no effects; effect tables: {EFFECT_TABLES}")
        with self.write() as conn:
            row = conn.execute(f"SELECT * FROM {table} WHERE idempotency_key = ?", (key,))
            found = row.fetchone()
            yield conn, dict(found) if found else None

    @staticmethod
    def _seed(conn: sqlite3.Connection) -> None:
        seed = json.loads(resources.files("graphs.support").joinpath("data/seed.json").read_text())
        conn.executemany(
            "INSERT INTO customers VALUES (:id, :name, :email, :tier)", seed["customers"]
        )
        conn.executemany(
            "INSERT INTO orders VALUES "
            "(:id, :customer_id, :item, :amount, :status, :placed_at, :notes)",
            [{"notes": "", **order} for order in seed["orders"]],
        )
        conn.executemany(
            "INSERT INTO invoices VALUES (:invoice, :id, :amount, 'paid')",
            [{**order, "invoice": order["id"].replace("ORD", "INV")} for order in seed["orders"]],
        )

    @staticmethod
    def refunded(conn: sqlite3.Connection, order_id: str) -> float:
        """Money refunded on `order_id` so far; reversed refunds do not count."""
        row = conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE order_id = ? AND status = 'issued'",
            (order_id,),
        ).fetchone()
        return float(row[0])

    def uncancel(self, order_id: str, event_id: int, restore: str, key: str) -> str | None:
        """Undo cancellation event `event_id` of `order_id` under idempotency key `key`: the
        order goes back to status `restore` and an `uncancelled` event is recorded.

        Returns None when done (now, or earlier under `key`); otherwise what stands in the way:
        the order's status when it is no longer cancelled or changed after that event.
        """
        with self.effect("order_events", key) as (conn, done):
            if done is not None:
                return None
            row = conn.execute(
                "SELECT status, (SELECT MAX(id) FROM order_events WHERE order_id = ?) AS latest "
                "FROM orders WHERE id = ?",
                (order_id, order_id),
            ).fetchone()
            if row is None or row["status"] != "cancelled" or row["latest"] != event_id:
                return "missing" if row is None else str(row["status"])
            conn.execute("UPDATE orders SET status = ? WHERE id = ?", (restore, order_id))
            conn.execute(
                "INSERT INTO order_events (order_id, event, detail, idempotency_key, "
                "previous_status) VALUES (?, 'uncancelled', ?, ?, 'cancelled')",
                (order_id, f"restored to {restore}", key),
            )
        return None

    def reverse_refund(self, refund_id: int, order_id: str, key: str) -> str | None:
        """Mark refund `refund_id` on `order_id` reversed under idempotency key `key`.

        Returns its status before (reversing a reversed refund changes nothing), or None when
        there is no such refund.
        """
        with self.write() as conn:
            row = conn.execute(
                "SELECT status FROM refunds WHERE id = ? AND order_id = ?", (refund_id, order_id)
            ).fetchone()
            if row is not None and row["status"] == "issued":
                conn.execute(
                    "UPDATE refunds SET status = 'reversed', reversed_at = CURRENT_TIMESTAMP, "
                    "reversal_key = ? WHERE id = ?",
                    (key, refund_id),
                )
        return None if row is None else str(row["status"])

    def void_draft(self, draft_id: int, key: str) -> str | None:
        """Withdraw draft email `draft_id` under idempotency key `key` if it is still a draft.

        Returns its status before (a sent email stays sent, a voided one voided), or None when
        there is no such email.
        """
        with self.write() as conn:
            row = conn.execute(
                "SELECT status FROM outbound_emails WHERE id = ?", (draft_id,)
            ).fetchone()
            if row is not None and row["status"] == "draft":
                conn.execute(
                    "UPDATE outbound_emails SET status = 'voided', voided_at = CURRENT_TIMESTAMP,"
                    " void_key = ? WHERE id = ?",
                    (key, draft_id),
                )
        return None if row is None else str(row["status"])

    def one(self, sql: str, *params: Any) -> dict[str, Any] | None:
        """First row of a query, as a dict."""
        with self.connect() as conn:
            row = conn.execute(sql, params).fetchone()
        return dict(row) if row else None

    def all(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """All rows of a query, as dicts."""
        with self.connect() as conn:
            return [dict(row) for row in conn.execute(sql, params).fetchall()]

    def counts(self) -> dict[str, int]:
        """Rows per table: how the demo shows its side effects."""
        with self.connect() as conn:
            return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
