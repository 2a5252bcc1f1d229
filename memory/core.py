"""The write and read path of versioned memory: commits through the log, governed reads."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from langgraph.store.base import BaseStore, GetOp, Item, PutOp

from memory.base import CommitLog, LogEntry
from memory.commitlog import MemoryBackendError
from memory.contract import (
    DEFAULT_RETENTION,
    ConflictPolicy,
    Lineage,
    MemoryContractError,
    MemoryScope,
    MemoryTags,
    RetentionClass,
    Tier,
    check_key,
    check_namespace,
    sensitivity_rank,
)
from memory.freshness import SourceMonitor, SourceStatus
from memory.layout import (
    INDEX_FIELDS,
    commit_from,
    commit_payload,
    matches_filter,
    ns_of,
    record_from,
    record_payload,
    tags_payload,
    version_key,
)
from memory.records import Change, Commit, CommitResult, Conflict, MemoryRecord, Recalled

__all__ = ["Key", "MemoryCore", "Staged"]

Key = tuple[tuple[str, ...], str]
_LEASE_POLL_S = 0.002


@dataclass(frozen=True, kw_only=True)
class Staged:
    """A write waiting for its commit."""

    namespace: tuple[str, ...]
    key: str
    op: Literal["put", "delete"]
    value: Mapping[str, Any] | None = None
    tags: MemoryTags | None = None
    """None for a delete: the tombstone keeps the record's tags."""
    expected_version: int | None = None
    """Version the writer requires (compare-and-set); None: the version it read, if any."""
    strict: bool = False
    """Refuse on any conflict whatever the namespace policy, and leave source freshness alone:
    reverts, promotions and settlements restore data, they are not news from its source."""


class MemoryCore:
    """Commits and governed reads over a short-term and a long-term `BaseStore`
    (`VersionedMemory` adds the rest of the API on top).

    Args:
        short: store of the short-term tier (session context with TTL).
        long: store of the long-term tier (facts, preferences; semantic search). It also holds
            the commits. Defaults to `short`.
        log: the commit log (the atomic step of every write).
        retention: retention classes by name (`DEFAULT_RETENTION`).
        conflicts: conflict policy per namespace prefix (`{"preferences": "cas"}`); the longest
            matching prefix applies.
        default_conflict: policy of namespaces without one.
        monitor: freshness rules per source; None checks no freshness.
        clock: seconds since the epoch (injectable for tests).
        max_attempts: commit attempts before giving up when writers keep racing.
        lease_s: how long a writer may take to apply a commit before another may take over.
    """

    def __init__(
        self,
        *,
        short: BaseStore,
        long: BaseStore | None = None,
        log: CommitLog,
        retention: Mapping[str, RetentionClass] = DEFAULT_RETENTION,
        conflicts: Mapping[str | tuple[str, ...], ConflictPolicy | str] | None = None,
        default_conflict: ConflictPolicy | str = ConflictPolicy.LWW,
        monitor: SourceMonitor | None = None,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 64,
        lease_s: float = 30.0,
    ) -> None:
        self.short, self.long = short, long if long is not None else short
        self.log = log
        self.retention = dict(retention)
        self._conflicts = {
            check_namespace(prefix): ConflictPolicy(policy)
            for prefix, policy in (conflicts or {}).items()
        }
        self._default_conflict = ConflictPolicy(default_conflict)
        self.monitor = monitor or SourceMonitor(clock=clock)
        self.clock = clock
        self._max_attempts = max_attempts
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._lease_s = lease_s

    # -- configuration -------------------------------------------------------------------------

    def store(self, tier: Tier) -> BaseStore:
        """The store of a tier."""
        return self.short if tier == "short" else self.long

    def stores(self) -> list[BaseStore]:
        """The distinct stores (one when both tiers share a store)."""
        return [self.short] if self.short is self.long else [self.short, self.long]

    def retention_class(self, name: str) -> RetentionClass:
        """The retention class named `name`, or a contract error listing the known ones."""
        try:
            return self.retention[name]
        except KeyError:
            raise MemoryContractError(
                f"unknown retention class {name!r}; expected one of {', '.join(self.retention)}"
            ) from None

    def policy_for(self, namespace: tuple[str, ...]) -> ConflictPolicy:
        """Conflict policy of a namespace (longest configured prefix, else the default)."""
        for depth in range(len(namespace), 0, -1):
            policy = self._conflicts.get(namespace[:depth])
            if policy is not None:
                return policy
        return self._default_conflict

    # -- writes ----------------------------------------------------------------------------------

    def commit(
        self,
        scope: MemoryScope,
        staged: Sequence[Staged],
        *,
        reads: Mapping[Key, int] | None = None,
        message: str = "",
    ) -> CommitResult:
        """Write `staged` as one commit, or nothing at all.

        Args:
            scope: who writes (tenant, author agent, run, decision).
            staged: the writes; a key may appear once.
            reads: versions the writer read (its expectation for keys without an explicit one).
            message: why, kept on the commit.

        Returns:
            `committed`, `empty`, or `conflict` / `escalated` (nothing written; conflicts listed).
        """
        if len({(s.namespace, s.key) for s in staged}) != len(staged):
            raise MemoryContractError("a commit may write each key once; merge the writes first")
        tenant = scope.tenant
        for _ in range(self._max_attempts):
            head = self.catch_up(tenant)
            attempt = self._prepare(scope, staged, reads or {}, head, message)
            if isinstance(attempt, CommitResult):
                return attempt
            commit, records, overwrote = attempt
            self._write_pending(tenant, commit, records)
            if self.log.append(tenant, commit.seq, commit.id):
                self.catch_up(tenant, known={commit.id: records})
                fresh = {(s.namespace, s.key) for s in staged if not s.strict}
                self._observe_sources(scope, [r for r in records if (r.namespace, r.key) in fresh])
                return CommitResult(status="committed", commit=commit, conflicts=overwrote)
        raise MemoryBackendError(
            f"memory commit for tenant {tenant!r} lost the race {self._max_attempts} times in a "
            "row; writers are contending on this tenant, retry later"
        )

    def _prepare(
        self,
        scope: MemoryScope,
        staged: Sequence[Staged],
        reads: Mapping[Key, int],
        head: LogEntry | None,
        message: str,
    ) -> tuple[Commit, list[MemoryRecord], tuple[Conflict, ...]] | CommitResult:
        current = self._current(scope.tenant, [(s.namespace, s.key) for s in staged])
        now, commit_id = self.clock(), f"c{secrets.token_hex(8)}"
        refused: list[Conflict] = []
        overwrote: list[Conflict] = []
        records: list[MemoryRecord] = []
        for write in staged:
            payload, version = current[(write.namespace, write.key)]
            expected = write.expected_version
            if expected is None:
                expected = reads.get((write.namespace, write.key))
            if expected is not None and expected != version:
                policy = ConflictPolicy.CAS if write.strict else self.policy_for(write.namespace)
                conflict = Conflict(
                    namespace=write.namespace,
                    key=write.key,
                    expected_version=expected,
                    actual_version=version,
                    actual_author=payload["author"] if payload else "",
                    policy=policy.value,
                )
                (overwrote if policy is ConflictPolicy.LWW else refused).append(conflict)
            record = self._next_version(scope, write, payload, version, commit_id, now)
            if record is not None:
                records.append(record)
        if refused:
            return self._refuse(scope, staged, refused)
        if not records:
            return CommitResult(status="empty")
        commit = Commit(
            id=commit_id,
            seq=(head.seq if head else 0) + 1,
            parent=head.commit_id if head else None,
            tenant=scope.tenant,
            author=scope.agent,
            run_id=scope.run_id,
            decision_id=scope.decision_id,
            ts=now,
            message=message,
            changes=tuple(
                Change(
                    namespace=r.namespace,
                    key=r.key,
                    op="delete" if r.deleted else "put",
                    version=r.version,
                    previous_version=r.version - 1,
                    tier=r.tier,
                )
                for r in records
            ),
        )
        return commit, records, tuple(overwrote)

    def _next_version(
        self,
        scope: MemoryScope,
        write: Staged,
        payload: Mapping[str, Any] | None,
        version: int,
        commit_id: str,
        now: float,
    ) -> MemoryRecord | None:
        if write.op == "delete":
            if payload is None:
                return None  # forgetting what is not there changes nothing
            old = record_from(write.namespace, payload)
            tags = replace(
                old.tags,
                lineage=Lineage(
                    source="forget", run_id=scope.run_id, decision_id=scope.decision_id
                ),
            )
            value = None
        else:
            assert write.tags is not None
            tags, value = write.tags, write.value
        rule = self.retention_class(tags.retention)
        return MemoryRecord(
            namespace=write.namespace,
            key=write.key,
            value=value,
            tags=tags,
            version=version + 1,
            commit_id=commit_id,
            author=scope.agent,
            written_at=now,
            expires_at=now + rule.ttl_s if rule.ttl_s is not None else None,
            tier=rule.tier,
            deleted=write.op == "delete",
        )

    def _refuse(
        self, scope: MemoryScope, staged: Sequence[Staged], refused: list[Conflict]
    ) -> CommitResult:
        if all(conflict.policy == ConflictPolicy.CAS.value for conflict in refused):
            return CommitResult(status="conflict", conflicts=tuple(refused))
        by_key = {(s.namespace, s.key): s for s in staged}
        filed = []
        for conflict in refused:
            if conflict.policy == ConflictPolicy.ESCALATE.value:
                conflict = replace(conflict, conflict_id=f"x{secrets.token_hex(6)}")
                self._file_conflict(scope, conflict, by_key[(conflict.namespace, conflict.key)])
            filed.append(conflict)
        return CommitResult(status="escalated", conflicts=tuple(filed))

    def _file_conflict(self, scope: MemoryScope, conflict: Conflict, write: Staged) -> None:
        self.long.put(
            ns_of(scope.tenant, "conflicts"),
            str(conflict.conflict_id),
            {
                "namespace": list(conflict.namespace),
                "key": conflict.key,
                "expected_version": conflict.expected_version,
                "actual_version": conflict.actual_version,
                "actual_author": conflict.actual_author,
                "op": write.op,
                "value": dict(write.value) if write.value is not None else None,
                "tags": tags_payload(write.tags) if write.tags else None,
                "filed_by": scope.agent,
                "run_id": scope.run_id,
                "filed_at": self.clock(),
                "status": "open",
            },
            index=False,
        )

    def _write_pending(self, tenant: str, commit: Commit, records: list[MemoryRecord]) -> None:
        """Commit and versions go in before the log append; if the append loses, they are
        orphans no history walk reaches."""
        ops: dict[int, tuple[BaseStore, list[Any]]] = {}
        for record in records:
            store = self.store(record.tier)
            ops.setdefault(id(store), (store, []))[1].append(
                PutOp(
                    ns_of(tenant, "history", record.namespace),
                    version_key(record.key, commit.id),
                    record_payload(record),
                    index=False,
                    ttl=self._ttl(store, record),
                )
            )
        commit_op = PutOp(ns_of(tenant, "commits"), commit.id, commit_payload(commit), index=False)
        ops.setdefault(id(self.long), (self.long, []))[1].append(commit_op)
        for store, batch in ops.values():
            store.batch(batch)

    def catch_up(
        self, tenant: str, *, known: Mapping[str, list[MemoryRecord]] | None = None
    ) -> LogEntry | None:
        """Apply accepted commits not yet applied to the stores (another process wrote, or a
        writer crashed between its append and applying it). Returns the log head.

        Only the holder of the log's projection lease applies, in log order, so a slow
        applier can never put an older version over a newer one.
        """
        head = self.log.head(tenant)
        if head is None or self.log.projected(tenant) >= head.seq:
            return head
        owner = f"{self._owner}:{threading.get_ident()}"
        waited = 0.0
        while not self.log.claim_projection(tenant, owner, self._lease_s):
            if self.log.projected(tenant) >= head.seq:
                return head  # the holder applied our commit too
            if waited > 2 * self._lease_s:
                raise MemoryBackendError(
                    f"memory of tenant {tenant!r} is being applied by another writer that "
                    f"has not finished in {waited:.0f}s; retry, or check for a hung process"
                )
            time.sleep(_LEASE_POLL_S)  # backoff while another writer applies
            waited += _LEASE_POLL_S
        try:
            done = self.log.projected(tenant)
            for entry in self.log.entries(tenant, after=done, upto=head.seq):
                records = (known or {}).get(entry.commit_id)
                if records is None:
                    records = self.load_versions(tenant, entry.commit_id)
                self._project(tenant, records)
                self.log.mark_projected(tenant, entry.seq)
        finally:
            self.log.release_projection(tenant, owner)
        return head

    def load_commit(self, tenant: str, commit_id: str) -> Commit:
        """A commit's metadata from the long-term store."""
        item = self.long.get(ns_of(tenant, "commits"), commit_id)
        if item is None:
            raise MemoryBackendError(
                f"commit {commit_id!r} of tenant {tenant!r} is in the log but not in the store; "
                "the long-term store lost data (restore it from backup)"
            )
        return commit_from(item.value)

    def load_versions(self, tenant: str, commit_id: str) -> list[MemoryRecord]:
        """The versions a commit wrote (those retention has not purged)."""
        commit = self.load_commit(tenant, commit_id)
        records = []
        for change in commit.changes:
            item = self.store(change.tier).get(
                ns_of(tenant, "history", change.namespace), version_key(change.key, commit.id)
            )
            if item is not None:
                records.append(record_from(change.namespace, item.value))
        return records

    def _project(self, tenant: str, records: Iterable[MemoryRecord]) -> None:
        for record in records:
            current = self._current(tenant, [(record.namespace, record.key)])
            if current[(record.namespace, record.key)][1] >= record.version:
                continue  # a newer version is already in place (another process projected it)
            space = ns_of(tenant, "memory", record.namespace)
            for store in self.stores():
                if record.deleted or store is not self.store(record.tier):
                    store.delete(space, record.key)
            if record.deleted:
                self.long.put(
                    ns_of(tenant, "tombs", record.namespace),
                    record.key,
                    {"version": record.version},
                    index=False,
                )
            else:
                store = self.store(record.tier)
                store.put(
                    space,
                    record.key,
                    record_payload(record),
                    index=INDEX_FIELDS,
                    ttl=self._ttl(store, record),
                )

    def _current(
        self, tenant: str, keys: Sequence[Key]
    ) -> dict[Key, tuple[dict[str, Any] | None, int]]:
        """Current value (None if absent or deleted) and version of each key."""
        found: dict[Key, tuple[dict[str, Any] | None, int]] = {key: (None, 0) for key in keys}
        for store in self.stores():
            ops: list[GetOp] = [GetOp(ns_of(tenant, "memory", ns), key) for ns, key in keys]
            if store is self.long:
                ops += [GetOp(ns_of(tenant, "tombs", ns), key) for ns, key in keys]
            results = store.batch(ops)
            for index, item in enumerate(results):
                if not isinstance(item, Item):
                    continue
                key = keys[index % len(keys)]
                version = int(item.value["version"])
                if version > found[key][1]:
                    is_record = index < len(keys)
                    found[key] = (dict(item.value) if is_record else None, version)
        return found

    def _ttl(self, store: BaseStore, record: MemoryRecord) -> float | None:
        if record.expires_at is None or not store.supports_ttl:
            return None
        return max((record.expires_at - record.written_at) / 60.0, 1.0)

    def _observe_sources(self, scope: MemoryScope, records: list[MemoryRecord]) -> None:
        for record in records:
            if not record.deleted:
                self.monitor.observe(
                    self.long, scope.tenant, record.tags.lineage.source, record.value,
                    by=scope.agent,
                )  # fmt: skip

    # -- reads -----------------------------------------------------------------------------------

    def get(self, scope: MemoryScope, namespace: Sequence[str], key: str) -> MemoryRecord | None:
        """The current version of a record, if this scope may see it."""
        namespace = check_namespace(tuple(namespace))
        check_key(key)
        self.catch_up(scope.tenant)
        payload, _ = self._current(scope.tenant, [(namespace, key)])[(namespace, key)]
        if payload is None:
            return None
        statuses = self.monitor.statuses(self.long, scope.tenant)
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
        self.catch_up(scope.tenant)
        statuses = self.monitor.statuses(self.long, scope.tenant)
        found: list[Recalled] = []
        for store in self.stores():
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
            statuses = self.monitor.statuses(self.long, scope.tenant)
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
