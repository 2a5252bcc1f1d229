"""Values memory hands back: records, reads, commits, conflicts, diffs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from memory.contract import MemoryTags, Tier

__all__ = [
    "Change",
    "Commit",
    "CommitResult",
    "Conflict",
    "DiffEntry",
    "MemoryDiff",
    "MemoryRead",
    "MemoryRecord",
    "Recalled",
]


@dataclass(frozen=True, kw_only=True)
class MemoryRecord:
    """One version of one record."""

    namespace: tuple[str, ...]
    """Namespace below the tenant."""
    key: str
    """Record key within the namespace."""
    value: Mapping[str, Any] | None
    """The data; None for a tombstone (a delete) or a value purged by retention."""
    tags: MemoryTags
    """Purpose, retention, sensitivity and lineage of the write."""
    version: int
    """1 for the first write of the key, +1 per later write or delete."""
    commit_id: str
    """Commit that wrote this version."""
    author: str
    """Agent (or person) whose commit wrote it."""
    written_at: float
    """Unix time of the commit."""
    expires_at: float | None
    """Unix time the record leaves reads; None keeps it."""
    tier: Tier
    """Tier it lives in."""
    deleted: bool = False
    """True for a tombstone."""


@dataclass(frozen=True, kw_only=True)
class Recalled:
    """A record a read returned, with why it ranked and whether it is past its freshness."""

    record: MemoryRecord
    """The current version."""
    score: float | None
    """Similarity to the query (higher is closer); None for a read without a query."""
    stale: bool = False
    """True when the record is older than its source's freshness window (flagged, not hidden)."""


@dataclass(frozen=True, kw_only=True)
class MemoryRead:
    """What a decision read: recorded in the decision's trace."""

    namespace: tuple[str, ...]
    key: str
    version: int
    commit_id: str


@dataclass(frozen=True, kw_only=True)
class Change:
    """One key changed by a commit (values live in the version records, not here, so
    retention can purge them while the commit log stays)."""

    namespace: tuple[str, ...]
    key: str
    op: Literal["put", "delete"]
    version: int
    """Version this change created."""
    previous_version: int
    """Version it replaced (0 if the key was new)."""
    tier: Tier
    """Tier of the record."""


@dataclass(frozen=True, kw_only=True)
class Commit:
    """A group of writes made together (one reasoning cycle)."""

    id: str
    seq: int
    """Position in the tenant's commit log, from 1."""
    parent: str | None
    """Commit before this one in the tenant's log."""
    tenant: str
    author: str
    run_id: str
    decision_id: str | None
    ts: float
    message: str
    changes: tuple[Change, ...]


@dataclass(frozen=True, kw_only=True)
class Conflict:
    """A write whose record changed since the writer read it."""

    namespace: tuple[str, ...]
    key: str
    expected_version: int
    """Version the writer read (or asked for)."""
    actual_version: int
    """Version in memory when the commit was attempted."""
    actual_author: str
    """Who wrote the actual version."""
    policy: str
    """Conflict policy of the namespace (`cas`, `lww`, `escalate`)."""
    conflict_id: str | None = None
    """Id of the filed conflict a person must settle (escalate only)."""


@dataclass(frozen=True, kw_only=True)
class CommitResult:
    """What a commit did."""

    status: Literal["committed", "empty", "conflict", "escalated"]
    """`committed`; `empty` (nothing staged); `conflict` / `escalated`: nothing was written."""
    commit: Commit | None = None
    """The commit, when one was made."""
    conflicts: tuple[Conflict, ...] = ()
    """Refused writes (`conflict`, `escalated`) or overwrites that last-writer-wins settled."""

    @property
    def ok(self) -> bool:
        """True when every staged write is in memory."""
        return self.status in ("committed", "empty")


@dataclass(frozen=True, kw_only=True)
class DiffEntry:
    """How one key differs between two points of history."""

    namespace: tuple[str, ...]
    key: str
    status: Literal["added", "removed", "changed"]
    before: MemoryRecord | None
    after: MemoryRecord | None


@dataclass(frozen=True, kw_only=True)
class MemoryDiff:
    """What changed in a tenant's memory between two commits."""

    base: str | None
    """Older commit (None: empty memory)."""
    target: str
    """Newer commit."""
    entries: tuple[DiffEntry, ...]
    commits: tuple[str, ...]
    """Commits between them, oldest first."""
