"""The in-process effect ledger (reference implementation) and the claim rules and records all
ledgers share."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import replace
from functools import cache
from pathlib import Path

from tools.base import Claim, Compensation, EffectIntent, EffectOutcome, EffectRecord

__all__ = [
    "InMemoryEffectLedger",
    "decide_claim",
    "in_doubt_outcome",
    "new_owner",
    "owner_is_dead",
    "pending_record",
    "shadow_record",
]


@cache
def _process_start(pid: int) -> str:
    return _start_ticks(pid) or "?"


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 counting from 1; 2 fields precede ")"


@cache
def _owner_prefix(pid: int) -> str:
    return f"{socket.gethostname()}|{pid}|{_process_start(pid)}|"


def new_owner() -> str:
    """A claim owner id: host, pid, process start and a nonce (one per claim)."""
    return _owner_prefix(os.getpid()) + os.urandom(6).hex()  # keyed by pid: right after fork


def owner_is_dead(owner: str) -> bool:
    """True only when `owner`'s process provably no longer runs: same host, and its pid is gone
    or now belongs to a process started at another time. Other hosts rely on the lease."""
    try:
        host, pid_text, start, _ = owner.split("|")
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return start not in ("?", _process_start(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    now_start = _start_ticks(pid)
    return start != "?" and now_start is not None and now_start != start


def pending_record(intent: EffectIntent, *, owner: str, lease_s: float, now: float) -> EffectRecord:
    """The record of a first claim (`seq` 0 until the backend numbers it)."""
    return EffectRecord(
        intent=intent,
        status="pending",
        seq=0,
        owner=owner,
        lease_until=now + lease_s,
        attempts=1,
        started_at=now,
    )


def shadow_record(intent: EffectIntent, outcome: EffectOutcome, *, now: float) -> EffectRecord:
    """The record of a shadow call (`seq` 0 until the backend numbers it)."""
    return EffectRecord(
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


def in_doubt_outcome(detail: str) -> EffectOutcome:
    """The outcome `mark_in_doubt` records: not ok, `detail` saying what a person must check."""
    return EffectOutcome(ok=False, content=detail, error_kind="in_doubt")


def decide_claim(
    record: EffectRecord | None,
    intent: EffectIntent,
    *,
    owner: str,
    lease_s: float,
    now: float,
    next_seq: int,
) -> tuple[Claim, bool]:
    """The claim rules, for backends that read the record and write under one lock.

    Returns the claim and whether its record must be written back.
    """
    if record is None:
        fresh = pending_record(intent, owner=owner, lease_s=lease_s, now=now)
        return Claim(kind="acquired", record=replace(fresh, seq=next_seq)), True
    if record.status in ("done", "in_doubt"):
        return Claim(kind=record.status, record=record), False
    if record.status == "pending" and record.lease_until > now and not owner_is_dead(record.owner):
        return Claim(kind="busy", record=record), False
    taken = replace(
        record,
        status="pending",
        owner=owner,
        lease_until=now + lease_s,
        attempts=record.attempts + 1,
        outcome=None,
    )
    return Claim(kind="acquired", record=taken, recovered=record.status == "pending"), True


class InMemoryEffectLedger:
    """Effect ledger for one process (tests, notebooks). Thread-safe."""

    def __init__(self) -> None:
        self._records: dict[str, EffectRecord] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def claim(self, intent: EffectIntent, *, owner: str, lease_s: float, now: float) -> Claim:
        """See `EffectLedger.claim`."""
        with self._lock:
            claim, write = decide_claim(
                self._records.get(intent.key),
                intent,
                owner=owner,
                lease_s=lease_s,
                now=now,
                next_seq=self._seq + 1,
            )
            if write:
                self._seq = max(self._seq, claim.record.seq)
                self._records[intent.key] = claim.record
            return claim

    def _held(self, key: str, owner: str) -> EffectRecord | None:
        record = self._records.get(key)
        if record is None or record.status != "pending" or record.owner != owner:
            return None
        return record

    def finish(self, key: str, *, owner: str, outcome: EffectOutcome, now: float) -> bool:
        """See `EffectLedger.finish`."""
        with self._lock:
            record = self._held(key, owner)
            if record is None:
                return False
            self._records[key] = replace(record, status="done", outcome=outcome, finished_at=now)
            return True

    def mark_in_doubt(self, key: str, *, owner: str, detail: str, now: float) -> bool:
        """See `EffectLedger.mark_in_doubt`."""
        with self._lock:
            record = self._held(key, owner)
            if record is None:
                return False
            doubt = in_doubt_outcome(detail)
            self._records[key] = replace(record, status="in_doubt", outcome=doubt, finished_at=now)
            return True

    def release(self, key: str, *, owner: str) -> bool:
        """See `EffectLedger.release`."""
        with self._lock:
            if self._held(key, owner) is None:
                return False
            del self._records[key]
            return True

    def record_shadow(self, intent: EffectIntent, outcome: EffectOutcome, *, now: float) -> None:
        """See `EffectLedger.record_shadow`."""
        with self._lock:
            self._seq += 1
            record = shadow_record(intent, outcome, now=now)
            self._records[intent.key] = replace(record, seq=self._seq)

    def get(self, key: str) -> EffectRecord | None:
        """See `EffectLedger.get`."""
        with self._lock:
            return self._records.get(key)

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
        with self._lock:
            found = [
                r
                for r in self._records.values()
                if (run_id is None or r.intent.run_id == run_id)
                and (thread_id is None or r.intent.thread_id == thread_id)
                and (tenant is None or r.intent.tenant == tenant)
            ]
        found.sort(key=lambda r: r.seq)
        return found[-limit:]

    def compensate(self, key: str, compensation: Compensation) -> bool:
        """See `EffectLedger.compensate`."""
        with self._lock:
            record = self._records.get(key)
            if record is None or record.status != "done":
                return False
            if record.compensation is not None and record.compensation.ok:
                return False
            self._records[key] = replace(record, compensation=compensation)
            return True
