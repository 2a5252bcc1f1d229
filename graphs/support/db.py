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

SCHEMA = """
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
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS order_events (
    id INTEGER PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id), event TEXT NOT NULL,
    detail TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS outbound_emails (
    id INTEGER PRIMARY KEY, to_addr TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'sent')), idempotency_key TEXT NOT NULL UNIQUE,
    send_key TEXT UNIQUE, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""

EFFECT_TABLES = ("refunds", "order_events", "outbound_emails")
TABLES = ("customers", "orders", "invoices", "refunds", "order_events", "outbound_emails")


class SupportDB:
    """The business database at `path`, created and seeded from the repo's data on first use."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            conn.executescript(SCHEMA)
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
