"""Retention, run on its own: promote what the retention rules promote, purge what expired."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from memory.contract import MemoryScope
from memory.versioned import VersionedMemory

__all__ = ["RetentionSweeper", "SweepReport", "sweep"]

SWEEPER = "system:retention"
"""Author of the commits a sweep makes (promotions)."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SweepReport:
    """What one sweep did."""

    promoted: int
    """Short-term records promoted to the long-term tier (by their retention class)."""
    purged: int
    """Expired records deleted from the stores (their versions and filed conflicts too)."""
    tenants: int
    """Tenants swept."""
    conflicts: int = 0
    """Promotions refused because the record changed during the sweep (retried next sweep)."""


def sweep(memory: VersionedMemory, *, run_id: str = "retention") -> SweepReport:
    """Promote every tenant's due short-term records, then purge every expired record.

    Promotion comes first so a record promoted now is not purged for its short-term TTL. Both
    steps are safe to run from several processes at once: promotions are compare-and-set
    against the version read, and purging deletes what is expired whoever does it.
    """
    promoted = refused = 0
    tenants = memory.log.tenants()
    for tenant in tenants:
        scope = MemoryScope(tenant=tenant, agent=SWEEPER, purposes=frozenset(), run_id=run_id)
        result = memory.consolidate(scope)
        if result.commit is not None:
            promoted += len(result.commit.changes)
        refused += len(result.conflicts) if not result.ok else 0
    return SweepReport(
        promoted=promoted, purged=memory.purge(), tenants=len(tenants), conflicts=refused
    )


class RetentionSweeper:
    """Runs `sweep` every `interval_s` seconds on a daemon thread until `stop()`.

    The first sweep comes one interval after `start()`, so short-lived processes (a CLI
    command) never pay for a sweep. A failing sweep (a backend down) is logged and kept in
    `last_error`; the next interval tries again.

    Args:
        memory: the memory to sweep.
        interval_s: seconds between sweeps (> 0).
    """

    def __init__(self, memory: VersionedMemory, *, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0 seconds; got {interval_s!r}")
        self.memory, self.interval_s = memory, interval_s
        self.last: SweepReport | None = None
        """The latest successful sweep."""
        self.last_error: BaseException | None = None
        """The latest failure (cleared by the next successful sweep)."""
        self.sweeps = 0
        """Sweeps attempted so far."""
        self._stopped = threading.Event()
        self._swept = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="bastion-retention", daemon=True)

    def start(self) -> RetentionSweeper:
        """Start the thread (returns self)."""
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the sweep in progress, if any."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        """Whether the thread is alive (started and not stopped)."""
        return self._thread.is_alive()

    def wait_for(self, sweeps: int, timeout_s: float) -> bool:
        """Block until `sweeps` sweeps were attempted; False on timeout."""
        with self._swept:
            return self._swept.wait_for(lambda: self.sweeps >= sweeps, timeout_s)

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.last, self.last_error = sweep(self.memory), None
            except Exception as error:  # a sweep must never end the thread
                self.last_error = error
                _log.warning("memory retention sweep failed (retrying in %ss): %s",
                             self.interval_s, error)  # fmt: skip
            with self._swept:
                self.sweeps += 1
                self._swept.notify_all()
