"""One SQLite file in WAL mode shared by processes: per-thread connections, fork safety, errors.

Used by the trace sink and audit log here, and by the kill switch in `guards` (which passes its
own error type)."""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Protocol

from observability.base import TraceBackendError

__all__ = ["SqliteFile"]

_OPEN: weakref.WeakSet[SqliteFile] = weakref.WeakSet()
"""Every live file, so a forked child drops the connections it inherited (SQLite forbids using
a connection across `fork`)."""

_INHERITED: list[object] = []
"""In a forked child: the parent's connections, kept open and unused for good."""


class BackendErrorType(Protocol):
    """An exception type taking a message and the backend's address (`url=`)."""

    def __call__(self, message: str, *, url: str) -> Exception: ...


class _Connection(sqlite3.Connection):
    """A plain connection that can be weakly referenced (the base class cannot)."""


class SqliteFile:
    """A SQLite file in WAL mode, opened with its schema; hands out this thread's connection.

    Each thread gets its own connection (autocommit; transactions are explicit), opened on
    first use; a forked child opens its own. `backend(action)` turns any SQLite or file-system
    failure into the file's error type (`TraceBackendError` by default) naming the file, what
    failed and a hint.
    """

    def __init__(
        self,
        path: Path,
        *,
        schema: str,
        busy_timeout_s: float,
        synchronous: Literal["NORMAL", "FULL"],
        what: str,
        default_name: str,
        integrity_hint: str | None = None,
        error_type: BackendErrorType = TraceBackendError,
        consequence: str = "",
    ) -> None:
        """Open the file, creating it and its folder if needed, in WAL mode with `schema`.

        Args:
            path: the SQLite file (absolute), on a local disk (WAL needs shared memory).
            schema: the SQL script creating the tables (`IF NOT EXISTS`).
            busy_timeout_s: how long a call waits for another process's write lock.
            synchronous: the `PRAGMA synchronous` of every connection.
            what: what the file is, as errors name it, e.g. `"trace file"`.
            default_name: the file name a hint suggests when `path` is a folder.
            integrity_hint: the hint for a `sqlite3.IntegrityError` (None: the generic one).
            error_type: what failures raise (`TraceBackendError`; the kill switch passes its
                own, which guards treat as killed).
            consequence: a sentence every failure message carries, e.g. what callers do now.

        Raises:
            TraceBackendError: (or `error_type`) the file cannot be created, opened or put in
                WAL mode.
        """
        self.path = path
        """The file."""
        self.url = str(path)
        """The file, as named in `TraceBackendError`."""
        self._busy_timeout_s = busy_timeout_s
        self._synchronous = synchronous
        self._what = what
        self._default_name = default_name
        self._integrity_hint = integrity_hint
        self._error_type = error_type
        self._consequence = consequence
        self._local = threading.local()
        # Weak: a thread's connection lives in its thread-local and closes when the thread ends.
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        with self.backend(f"create the {what}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self.connection()
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
            conn.executescript(schema)
        if mode != "wal":
            raise error_type(
                f"{what} {self.url} cannot use WAL mode (journal_mode is {mode!r}). "
                "Hint: put it on a local disk, e.g. under BASTION_HOME.",
                url=self.url,
            )
        _OPEN.add(self)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        try:
            conn: sqlite3.Connection = self._local.conn
        except AttributeError:
            conn = self._connect()
        return conn

    def close(self) -> None:
        """Close every connection opened here; a later call opens new ones.

        Call it when no other thread is using the file.
        """
        with self._lock:
            connections, self._connections = list(self._connections), weakref.WeakSet()
            self._local = threading.local()
        for conn in connections:
            conn.close()

    @contextmanager
    def backend(self, action: str, *, outcome: str = "") -> Iterator[None]:
        """Turn any SQLite or file-system failure into the file's error type (`error`).

        Args:
            action: what was being done, e.g. `"write trace events"`.
            outcome: a sentence added after the cause, e.g. `" Nothing was appended."`.
        """
        try:
            yield
        except (sqlite3.Error, OSError) as error:
            raise self.error(action, error, outcome=outcome) from error

    def error(self, action: str, error: BaseException, *, outcome: str = "") -> Exception:
        """The error to raise for `error` while doing `action` (for hot paths that catch
        SQLite errors themselves instead of entering `backend`)."""
        return self._error_type(
            f"{self._what} {self.url} failed: could not {action} "
            f"({type(error).__name__}: {error}).{outcome}{self._consequence} "
            f"Hint: {self._hint(error)}.",
            url=self.url,
        )

    def _connect(self) -> sqlite3.Connection:
        """Open this thread's connection (autocommit; transactions are explicit)."""
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,  # only so that `close()` may close it from another thread
            factory=_Connection,
        )
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        with self._lock:
            self._connections.add(conn)
            self._local.conn = conn
        return conn

    def _after_fork(self) -> None:
        """Forget the connections inherited from the parent process, without closing them:
        closing would run SQLite's close-time WAL work against the parent's files."""
        _INHERITED.append((self._local, list(self._connections)))
        self._connections = weakref.WeakSet()
        self._local = threading.local()
        self._lock = threading.Lock()

    def _hint(self, error: BaseException) -> str:
        text = str(error)
        if self.path.is_dir():
            return f"it is a folder; name a file in it, e.g. {self.path / self._default_name}"
        if "not a database" in text:
            return "it is not a SQLite file; name a new file, e.g. under BASTION_HOME"
        if "locked" in text or "busy" in text:
            return f"another process held the write lock for over {self._busy_timeout_s}s"
        if self._integrity_hint is not None and isinstance(error, sqlite3.IntegrityError):
            return self._integrity_hint
        return "its folder must exist or be creatable, and be writable by this process"


def _forget_inherited_connections() -> None:
    for file in list(_OPEN):
        file._after_fork()


os.register_at_fork(after_in_child=_forget_inherited_connections)
