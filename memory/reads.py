"""Governed reads: only what the scope's tenant, purposes, clearance, retention and source
freshness allow (the read side of the memory contract)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langgraph.store.base import BaseStore, Item

from memory.commitlog import MemoryBackendError
from memory.contract import (
    MemoryContractError,
    MemoryScope,
    check_key,
    check_namespace,
    sensitivity_rank,
)
from memory.freshness import SourceMonitor, SourceStatus
from memory.layout import matches_filter, ns_of, record_from
from memory.projection import Projector
from memory.records import MemoryRecord, Recalled

__all__ = ["GovernedReads"]


class GovernedReads:
    """The read path of `VersionedMemory`.

    Args:
        projector: applies pending commits before a read, and reads current records.
        monitor: source freshness.
        clock: seconds since the epoch.
    """

    def __init__(
        self, projector: Projector, monitor: SourceMonitor, clock: Callable[[], float]
    ) -> None:
        self.projector, self.monitor, self.clock = projector, monitor, clock

    def get(self, scope: MemoryScope, namespace: Sequence[str], key: str) -> MemoryRecord | None:
        """The current version of a record, if this scope may see it."""
        namespace = check_namespace(tuple(namespace))
        check_key(key)
        self.projector.catch_up(scope.tenant)
        payload, _ = self.projector.current(scope.tenant, [(namespace, key)])[(namespace, key)]
        if payload is None:
            return None
        statuses = self.monitor.statuses(self.projector.long, scope.tenant)
        hit = self._visible(
            scope, ns_of(scope.tenant, "memory", namespace), payload, None, statuses
        )
        return hit.record if hit else None

    def recall(
        self,
        scope: MemoryScope,
        query: str | None = None,
        *,
        namespace: Sequence[str] = (),
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
    ) -> list[Recalled]:
        """Records this scope may see, closest to `query` first (newest first without one).

        Reads are filtered by tenant (the namespace prefix), purpose, clearance, retention and
        source freshness; hidden records never count towards `limit`. `filter` compares the
        record's value fields (`{"plan": "pro"}`, `{"score": {"$gte": 3}}`), and its tags
        `source`, `purpose`, `retention`, `sensitivity` and `author` where the value has no
        field of that name.
        """
        if limit < 1:
            raise MemoryContractError(f"recall limit must be at least 1; got {limit}")
        below = check_namespace(tuple(namespace)) if namespace else ()
        prefix = ns_of(scope.tenant, "memory", below)
        self.projector.catch_up(scope.tenant)
        statuses = self.monitor.statuses(self.projector.long, scope.tenant)
        found: list[Recalled] = []
        for store in self.projector.stores():
            found += self._recall_from(store, scope, prefix, query, limit, filter, statuses)
        if query is None:
            found.sort(key=lambda hit: hit.record.written_at, reverse=True)
        else:
            found.sort(key=lambda hit: hit.score if hit.score is not None else -1.0, reverse=True)
        return found[:limit]

    def _recall_from(
        self,
        store: BaseStore,
        scope: MemoryScope,
        prefix: tuple[str, ...],
        query: str | None,
        limit: int,
        filter: Mapping[str, Any] | None,
        statuses: Mapping[str, SourceStatus],
    ) -> list[Recalled]:
        kept: list[Recalled] = []
        page, offset = max(limit * 3, 16), 0
        while query is None or len(kept) < limit:  # stores keep no time order: read all
            items = store.search(prefix, query=query, limit=page, offset=offset)
            inside = [i for i in items if tuple(i.namespace[: len(prefix)]) == prefix]
            hits = self.govern(scope, inside, statuses)  # a store may match `crm` to `crmx`
            kept += [hit for hit in hits if not filter or matches_filter(_fields(hit), filter)]
            if len(items) < page:
                break
            offset += page
        return kept

    def govern(
        self,
        scope: MemoryScope,
        items: Sequence[Item],
        statuses: Mapping[str, SourceStatus] | None = None,
    ) -> list[Recalled]:
        """The items this scope may read, as records (the memory contract's read filter)."""
        if statuses is None:
            statuses = self.monitor.statuses(self.projector.long, scope.tenant)
        visible = []
        for item in items:
            score = getattr(item, "score", None)
            hit = self._visible(scope, tuple(item.namespace), item.value, score, statuses)
            if hit is not None:
                visible.append(hit)
        return visible

    def _visible(
        self,
        scope: MemoryScope,
        namespace: tuple[str, ...],
        value: Mapping[str, Any],
        score: float | None,
        statuses: Mapping[str, SourceStatus],
    ) -> Recalled | None:
        if namespace[0] != scope.tenant:
            raise MemoryBackendError(
                f"a store returned a record of tenant {namespace[0]!r} to a read by tenant "
                f"{scope.tenant!r}; the backend breaks the tenant wall, stop using it"
            )
        expires_at = value.get("expires_at")
        if (
            value.get("deleted")
            or value["purpose"] not in scope.purposes
            or sensitivity_rank(value["sensitivity"]) > sensitivity_rank(scope.clearance)
            or (expires_at is not None and expires_at <= self.clock())
        ):
            return None
        verdict = self.monitor.verdict(statuses, value["source"], value["written_at"])
        if verdict == "blocked":
            return None
        record = record_from(namespace[2:], value)
        return Recalled(record=record, score=score, stale=verdict == "stale")


def _fields(hit: Recalled) -> dict[str, Any]:
    """What a recall filter sees: the record's tags, overlaid by its value's fields."""
    record = hit.record
    tags = {
        "source": record.tags.lineage.source,
        "purpose": record.tags.purpose,
        "retention": record.tags.retention,
        "sensitivity": record.tags.sensitivity,
        "author": record.author,
    }
    return {**tags, **(record.value or {})}
