"""Protocols of observability's pluggable backends: the trace sink and the audit log.

Each has an in-memory reference (`observability.memory_sinks`), an embedded SQLite backend and
a Redis one, and every implementation passes the suites in `tests/conformance/`. They are
synchronous: the graph never calls them on its hot path (`Tracer` writes from a background
thread), and the CLI and console call them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from observability.chain import VerifyReport
from observability.events import AuditEntry, AuditHead, AuditRecord, RunSummary, TraceEvent

__all__ = ["AuditLog", "TraceBackendError", "TraceSink"]


class TraceBackendError(RuntimeError):
    """A trace sink or audit log cannot be reached or read; says which, why and what to do."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url
        """The backend (file path or redacted URL)."""


@runtime_checkable
class TraceSink(Protocol):
    """Stores trace events and the run summaries folded from them (`fold_run`)."""

    def write(self, events: Sequence[TraceEvent]) -> None:
        """Store events (a batch, any runs) and fold them into their runs' summaries.

        Raises:
            TraceBackendError: nothing of the batch may be assumed stored; the caller retries.
        """
        ...

    def events(
        self, *, run_id: str | None = None, tenant: str | None = None, limit: int = 10_000
    ) -> list[TraceEvent]:
        """Stored events, oldest first, of one run and/or one tenant (the newest `limit`)."""
        ...

    def runs(self, *, tenant: str | None = None, limit: int = 100) -> list[RunSummary]:
        """Run summaries, most recently updated first, optionally of one tenant."""
        ...

    def close(self) -> None:
        """Release connections; later calls may reopen them."""
        ...


@runtime_checkable
class AuditLog(Protocol):
    """An append-only, hash-chained log (see `observability.chain`); safe across processes."""

    def append(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Seal `entries` as consecutive records after the current head, atomically.

        Raises:
            AuditConfigError: an entry is malformed (nothing is appended).
            TraceBackendError: the log cannot be written (nothing is appended).
        """
        ...

    def records(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        tenant: str | None = None,
        kind: str | None = None,
        run_id: str | None = None,
    ) -> list[AuditRecord]:
        """Records with `seq > after`, in sequence order, optionally filtered."""
        ...

    def head(self) -> AuditHead | None:
        """The kept head (last sealed record), or None for an empty log."""
        ...

    def verify(self) -> VerifyReport:
        """Check every record against the chain and the kept head."""
        ...

    def close(self) -> None:
        """Release connections; later calls may reopen them."""
        ...
