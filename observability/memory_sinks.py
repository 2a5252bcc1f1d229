"""In-process reference implementations of `TraceSink` and `AuditLog` (thread-safe)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from observability.chain import GENESIS, VerifyReport, check_entry, seal, verify_chain
from observability.events import AuditEntry, AuditHead, AuditRecord, RunSummary, TraceEvent
from observability.runs import fold_run

__all__ = ["InMemoryAuditLog", "InMemoryTraceSink", "filter_records"]


class InMemoryTraceSink:
    """Keeps the newest `capacity` events and every run summary in this process."""

    def __init__(self, *, capacity: int = 100_000) -> None:
        self._events: deque[TraceEvent] = deque(maxlen=capacity)
        self._runs: dict[str, RunSummary] = {}
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def write(self, events: Sequence[TraceEvent]) -> None:
        """Store events and fold them into their runs (a retried event is stored once)."""
        with self._lock:
            for event in events:
                if event["event_id"] in self._ids:
                    continue
                if len(self._events) == self._events.maxlen:
                    self._ids.discard(self._events[0]["event_id"])
                self._events.append(event)
                self._ids.add(event["event_id"])
                if event["run_id"]:
                    self._runs[event["run_id"]] = fold_run(self._runs.get(event["run_id"]), event)

    def events(
        self, *, run_id: str | None = None, tenant: str | None = None, limit: int = 10_000
    ) -> list[TraceEvent]:
        """Stored events, oldest first (the newest `limit`)."""
        with self._lock:
            chosen = [
                e
                for e in self._events
                if (run_id is None or e["run_id"] == run_id)
                and (tenant is None or e["tenant"] == tenant)
            ]
        return chosen[-limit:] if limit > 0 else []

    def runs(self, *, tenant: str | None = None, limit: int = 100) -> list[RunSummary]:
        """Run summaries, most recently updated first."""
        with self._lock:
            chosen = [r for r in self._runs.values() if tenant is None or r["tenant"] == tenant]
        return sorted(chosen, key=lambda r: r["updated_at"], reverse=True)[:limit]

    def close(self) -> None:
        """Nothing to release."""


def filter_records(
    records: Sequence[AuditRecord],
    *,
    after: int,
    limit: int,
    tenant: str | None,
    kind: str | None,
    run_id: str | None,
) -> list[AuditRecord]:
    """`AuditLog.records` semantics over records in sequence order."""
    chosen: list[AuditRecord] = []
    for record in records:
        if len(chosen) >= limit:
            break
        if (
            record["seq"] > after
            and (tenant is None or record["tenant"] in (tenant, "*"))
            and (kind is None or record["kind"] == kind)
            and (run_id is None or record["run_id"] == run_id)
        ):
            chosen.append(record)
    return chosen


class InMemoryAuditLog:
    """A hash-chained audit log in this process; `key` makes the chain an HMAC chain."""

    def __init__(self, *, key: bytes | None = None) -> None:
        self._key = key
        self._records: list[AuditRecord] = []
        self._head: AuditHead | None = None
        self._lock = threading.Lock()

    def append(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Seal entries after the head, all or none."""
        clean = [check_entry(entry) for entry in entries]
        with self._lock:
            prev = self._head["hash"] if self._head else GENESIS
            seq = self._head["seq"] if self._head else 0
            sealed = []
            for entry in clean:
                seq += 1
                record = seal(entry, seq=seq, prev=prev, key=self._key)
                sealed.append(record)
                prev = record["hash"]
            self._records.extend(sealed)
            if sealed:
                self._head = AuditHead(seq=seq, hash=prev)
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
        with self._lock:
            records = list(self._records)
        return filter_records(
            records, after=after, limit=limit, tenant=tenant, kind=kind, run_id=run_id
        )

    def head(self) -> AuditHead | None:
        """The last sealed record's position and hash."""
        with self._lock:
            return None if self._head is None else AuditHead(**self._head)

    def verify(self) -> VerifyReport:
        """Check the whole chain against the kept head."""
        with self._lock:
            records, head = list(self._records), self._head
        return verify_chain(records, head=head, key=self._key)

    def close(self) -> None:
        """Nothing to release."""

    @property
    def raw(self) -> list[AuditRecord]:
        """The stored records themselves (tamper tests edit them in place)."""
        return self._records
