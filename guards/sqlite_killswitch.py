"""The SQLite kill switch: kills shared by every process on one machine through one WAL file."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from guards.base import KillRecord, KillScope, KillTarget
from guards.errors import GuardConfigError
from guards.killswitch import (
    DEFAULT_HISTORY_SIZE,
    KillEvent,
    KillSwitchBackendError,
    KillWatcher,
    broadest_first,
    check_history_limit,
    check_kill_args,
    target_keys,
)
from observability.sqlite_files import SqliteFile

__all__ = ["WATCH_POLL_S", "SqliteKillSwitch"]

logger = logging.getLogger(__name__)

WATCH_POLL_S = 0.05
"""How often a watcher looks for new events: an event reaches a watcher at most this long
(plus one small query) after the `kill` or `lift` that made it was committed, in any process."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kill_scopes (
  scope TEXT PRIMARY KEY, rank INTEGER NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('global', 'tenant', 'workflow', 'run')), value TEXT NOT NULL,
  requester TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kill_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL, scope TEXT NOT NULL,
  requester TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL
);
CREATE TRIGGER IF NOT EXISTS kill_scopes_history AFTER INSERT ON kill_scopes BEGIN
  INSERT INTO kill_events (event, scope, requester, reason, at)
  VALUES ('kill', NEW.scope, NEW.requester, NEW.reason, NEW.at);
END;
"""
"""`kill_scopes`: the kills in force, clustered on the scope text, so a check is four primary-key
probes. `kill_events`: the capped history; AUTOINCREMENT never reuses an id, so watchers follow
it by id even after old events are trimmed. The trigger records a kill in the kill's own
statement."""

_RECORD = "SELECT kind, value, requester, reason, at FROM kill_scopes"
_KILL = "INSERT INTO kill_scopes VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING at"
_LIFT = "DELETE FROM kill_scopes WHERE scope = ?"
_EVENT = "INSERT INTO kill_events (event, scope, requester, reason, at) VALUES (?, ?, ?, ?, ?)"
_TRIM = "DELETE FROM kill_events WHERE id <= (SELECT max(id) FROM kill_events) - ?"
_CHECK = f"{_RECORD} WHERE scope IN (?, ?, ?, ?) ORDER BY rank LIMIT 1"
_EVENTS = "SELECT id, event, scope, requester, reason, at FROM kill_events"
_NEWER = f"{_EVENTS} WHERE id > ? ORDER BY id"
_RANK = {"global": 0, "tenant": 1, "workflow": 2, "run": 3}


class SqliteKillSwitch:
    """A kill switch shared by every process that opens the same file; thread-safe.

    For embedded mode, where the CLI, the LangGraph dev server and the demo are separate
    processes without a Redis between them. Semantics are those of `InMemoryKillSwitch` (the
    conformance suite runs both):

    - `kill` returns after its transaction is committed and synced (WAL, `synchronous=FULL`),
      so every later `check`, in any process, sees it, and it survives a crash or power loss.
    - `check` is one SELECT over the target's four scope keys (primary-key lookups); nothing
      is cached, SQLite re-validates its page cache against the WAL on every read.
    - Killing a killed scope keeps and returns the first record; nothing is recorded.
    - Lifting does not resume anything; lifting a scope that is not killed returns None.
    - Watchers poll the event table every `poll_s` (see `WATCH_POLL_S`) on a daemon thread.
    - Any SQLite failure raises `KillSwitchBackendError`, which guards treat as killed.

    Each thread gets its own connection, opened on first use.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        history_size: int = DEFAULT_HISTORY_SIZE,
        busy_timeout_s: float = 5.0,
    ) -> None:
        """Open the kill file, creating it and its folder if needed.

        Args:
            path: the SQLite file, e.g. `.bastion/kill.sqlite`; every process must name the same
                file on a local disk (WAL needs shared memory, which network filesystems lack).
            history_size: kill and lift events kept (oldest dropped first).
            busy_timeout_s: how long a call waits for another process's write lock before it
                fails (closed).

        Raises:
            GuardConfigError: `:memory:` or an empty path, or a bad `history_size`.
            KillSwitchBackendError: the file cannot be opened, created or put in WAL mode.
        """
        if str(path) in ("", ":memory:"):
            raise GuardConfigError(
                f"SqliteKillSwitch needs a file shared by the processes, got {str(path)!r}. "
                "Hint: use InMemoryKillSwitch inside one process."
            )
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise GuardConfigError(f"history_size must be a positive integer, got {history_size!r}")
        self.path = Path(path).absolute()
        """The kill file."""
        self.url = str(self.path)
        """Where the kills live, as named in `KillSwitchBackendError`."""
        self._history_size = history_size
        self._file = SqliteFile(
            self.path,
            schema=_SCHEMA,
            busy_timeout_s=busy_timeout_s,
            synchronous="FULL",  # a kill survives a power cut, not just a crash
            what="kill file",
            default_name="kill.sqlite",
            error_type=KillSwitchBackendError,
            consequence=" Guarded actions are refused until it works (fail closed).",
        )
        self._connection = self._file.connection
        self._backend = self._file.backend

    def kill(self, scope: KillScope, *, requester: str, reason: str) -> KillRecord:
        """Stop everything in `scope`; returns the record in force (the first one, if any).

        Raises:
            GuardConfigError: blank requester or reason, or a scope that names nothing.
            KillSwitchBackendError: SQLite failed; the kill is NOT known to be in force.
        """
        scope = check_kill_args(scope, requester, reason, action="kill")
        who, why, key = requester.strip(), reason.strip(), str(scope)
        with self._backend("kill"):
            conn = self._connection()
            while True:
                at = time.time()
                # One statement, its own transaction (a trigger records the event): the sqlite3
                # module lets go of the GIL around each statement, and under busy dispatch
                # threads every hand-back can wait a whole switch interval (5 ms).
                args = (key, _RANK[scope.kind], scope.kind, scope.value, who, why, at)
                if conn.execute(_KILL, args).fetchall():
                    break
                if existing := conn.execute(f"{_RECORD} WHERE scope = ?", (key,)).fetchall():
                    return _record(existing[0])
                # Lifted between the two statements: kill again.
        self._trim(conn)
        return KillRecord(scope=scope, requester=who, reason=why, at=at)

    def lift(self, scope: KillScope, *, requester: str, reason: str) -> KillRecord | None:
        """End a kill; returns the lifted record, or None if `scope` was not killed.

        Raises:
            GuardConfigError: blank requester or reason, or a scope that names nothing.
            KillSwitchBackendError: SQLite failed; the kill may still be in force.
        """
        scope = check_kill_args(scope, requester, reason, action="lift")
        key = str(scope)
        with self._backend("lift a kill"), self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")  # the event's time is taken under the write lock
            rows = conn.execute(f"{_LIFT} RETURNING kind, value, requester, reason, at", (key,))
            lifted = rows.fetchall()
            if lifted:
                conn.execute(_EVENT, ("lift", key, requester.strip(), reason.strip(), time.time()))
        if not lifted:
            return None
        self._trim(conn)
        return _record(lifted[0])

    def check(self, target: KillTarget) -> KillRecord | None:
        """The kill that stops `target` (broadest first), or None. One indexed SELECT.

        Raises:
            KillSwitchBackendError: SQLite failed; treat the target as killed.
        """
        try:
            # fetchall, not fetchone: stepping to the end ends the read transaction, so the
            # connection does not keep an old snapshot that would hide the next kill.
            rows = self._connection().execute(_CHECK, target_keys(target)).fetchall()
        except (sqlite3.Error, OSError) as error:
            raise self._file.error("check", error) from error
        return _record(rows[0]) if rows else None

    def active(self) -> list[KillRecord]:
        """Every kill in force, broadest first."""
        with self._backend("list the active kills"):
            rows = self._connection().execute(_RECORD).fetchall()
        return broadest_first(_record(row) for row in rows)

    def history(self, limit: int = 100) -> list[KillEvent]:
        """The latest kill and lift events, newest first (at most `limit`)."""
        limit = check_history_limit(limit)
        with self._backend("read the kill history"):
            rows = self._connection().execute(
                f"{_EVENTS} ORDER BY id DESC LIMIT ?", (min(limit, self._history_size),)
            )
            return [_event(row) for row in rows.fetchall()]

    def watch(self, callback: KillWatcher, *, poll_s: float = WATCH_POLL_S) -> Callable[[], None]:
        """Call `callback` with every later kill and lift event, from any process; returns `stop()`.

        Events committed after `watch` returns are delivered in commit order, at most `poll_s`
        after their commit; more than `history_size` events between two polls lose the oldest.
        The callback runs on a daemon thread; an exception in it is logged.

        Raises:
            KillSwitchBackendError: the event table cannot be read.
        """
        with self._backend("watch the kill events"):
            last = self._connection().execute("SELECT max(id) FROM kill_events").fetchall()
        stopped = threading.Event()
        thread = threading.Thread(
            target=self._follow,
            args=(callback, last[0][0] or 0, stopped, poll_s),
            name=f"kill-watch:{self.path.name}",
            daemon=True,
        )
        thread.start()

        def stop() -> None:
            stopped.set()
            if thread is not threading.current_thread():
                thread.join(timeout=max(1.0, poll_s * 10))

        return stop

    def close(self) -> None:
        """Close every connection this switch opened; a later call opens new ones.

        Call it when no other thread is using the switch.
        """
        self._file.close()

    def __enter__(self) -> SqliteKillSwitch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _follow(
        self, callback: KillWatcher, last: int, stopped: threading.Event, poll_s: float
    ) -> None:
        """Deliver events with an id above `last` until `stopped` is set."""
        failing = False
        while not stopped.wait(poll_s):
            try:
                rows = self._connection().execute(_NEWER, (last,)).fetchall()
            except (sqlite3.Error, OSError) as error:
                if not failing:  # once per outage, not every poll
                    logger.error("kill switch watcher on %s cannot read: %r", self.url, error)
                failing = True
                continue
            failing = False
            for row in rows:
                last = row[0]
                if stopped.is_set():
                    return
                try:
                    callback(_event(row))
                except Exception:
                    logger.exception("kill switch watcher %r failed on %r", callback, row)

    def _trim(self, conn: sqlite3.Connection) -> None:
        """Drop the events beyond `history_size`, after the change is committed: a failure here
        must not make a kill in force look failed, so it is logged (`history` still caps)."""
        try:
            conn.execute(_TRIM, (self._history_size,)).fetchall()
        except sqlite3.Error as error:
            logger.warning("could not trim the kill history in %s: %r", self.url, error)


def _record(row: tuple[str, str, str, str, float]) -> KillRecord:
    kind, value, requester, reason, at = row
    scope = KillScope(kind=kind, value=value)  # type: ignore[arg-type]
    return KillRecord(scope=scope, requester=requester, reason=reason, at=at)


def _event(row: tuple[int, str, str, str, str, float]) -> KillEvent:
    _, event, scope, requester, reason, at = row
    return {"event": event, "scope": scope, "requester": requester, "reason": reason, "at": at}
