"""Backend protocols of memory: the commit log that orders every tenant's writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["CommitLog", "LogEntry"]


@dataclass(frozen=True, kw_only=True)
class LogEntry:
    """A commit's place in its tenant's log."""

    seq: int
    """Position, from 1, without gaps."""
    commit_id: str
    """The commit at that position."""


@runtime_checkable
class CommitLog(Protocol):
    """The order of a tenant's commits, and the one atomic step of a memory write.

    Stores (`BaseStore`) have no compare-and-set, so a commit is accepted by appending its id
    at `head + 1` here: of two writers racing for the same position exactly one wins, and the
    other re-reads and tries again. Records and commits live in the stores; this log holds
    only ids. Implementations: `InMemoryCommitLog`, `SqliteCommitLog`, `RedisCommitLog`; the
    conformance suite in `tests/conformance/test_commit_log.py` runs them all.
    """

    def head(self, tenant: str) -> LogEntry | None:
        """The latest accepted commit of `tenant`, or None before its first."""
        ...

    def append(self, tenant: str, seq: int, commit_id: str) -> bool:
        """Accept `commit_id` at position `seq` if the head is exactly `seq - 1`.

        Returns:
            True when appended; False when another commit holds `seq` (or `seq` skips ahead).
        """
        ...

    def entries(self, tenant: str, *, after: int = 0, upto: int | None = None) -> list[LogEntry]:
        """Accepted commits with `after < seq <= upto` (all after `after` when `upto` is None),
        oldest first."""
        ...

    def locate(self, tenant: str, commit_id: str) -> int | None:
        """Position of an accepted commit of `tenant`, or None (unknown or another tenant's)."""
        ...

    def projected(self, tenant: str) -> int:
        """Highest position whose changes are applied to the stores (0 before any)."""
        ...

    def mark_projected(self, tenant: str, seq: int) -> None:
        """Record that commits up to `seq` are applied; never moves backwards."""
        ...

    def claim_projection(self, tenant: str, owner: str, lease_s: float) -> bool:
        """Become the one writer applying `tenant`'s commits to the stores, for `lease_s`
        seconds (or extend the lease `owner` already holds).

        Applying is check-then-put on stores without compare-and-set; two appliers could put
        an older version over a newer one, so only the lease holder applies. A holder that
        died loses the lease when it runs out.

        Returns:
            True when `owner` holds the lease; False while someone else does.
        """
        ...

    def release_projection(self, tenant: str, owner: str) -> None:
        """Give the lease back (a no-op unless `owner` holds it)."""
        ...

    def tenants(self) -> list[str]:
        """Tenants with at least one commit (for retention sweeps)."""
        ...

    def close(self) -> None:
        """Release connections the log opened itself."""
        ...
