"""The write and read path of versioned memory: commits through the log, governed reads."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from langgraph.store.base import BaseStore

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
    check_namespace,
)
from memory.freshness import SourceMonitor
from memory.layout import (
    ns_of,
    record_from,
    tags_payload,
)
from memory.projection import Key, Projector
from memory.reads import GovernedReads
from memory.records import Change, Commit, CommitResult, Conflict, MemoryRecord, Recalled

__all__ = ["Key", "MemoryCore", "Staged"]


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
        self.projector = Projector(short=self.short, long=self.long, log=log, lease_s=lease_s)
        self.reads = GovernedReads(self.projector, self.monitor, clock)

    # -- configuration -------------------------------------------------------------------------

    def store(self, tier: Tier) -> BaseStore:
        """The store of a tier."""
        return self.projector.store(tier)

    def stores(self) -> list[BaseStore]:
        """The distinct stores (one when both tiers share a store)."""
        return self.projector.stores()

    def catch_up(
        self, tenant: str, *, known: Mapping[str, list[MemoryRecord]] | None = None
    ) -> LogEntry | None:
        """See `Projector.catch_up`."""
        return self.projector.catch_up(tenant, known=known)

    def load_commit(self, tenant: str, commit_id: str) -> Commit:
        """See `Projector.load_commit`."""
        return self.projector.load_commit(tenant, commit_id)

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
        since: int | None = None,
        message: str = "",
    ) -> CommitResult:
        """Write `staged` as one commit, or nothing at all.

        Args:
            scope: who writes (tenant, author agent, run, decision).
            staged: the writes; a key may appear once.
            reads: versions the writer read (its expectation for keys without an explicit one).
            since: log position the writer's view dates from; a key neither read nor given an
                expected version that a later commit changed is a conflict. None: no check.
            message: why, kept on the commit.

        Returns:
            `committed`, `empty`, or `conflict` / `escalated` (nothing written; conflicts listed).
        """
        if len({(s.namespace, s.key) for s in staged}) != len(staged):
            raise MemoryContractError("a commit may write each key once; merge the writes first")
        tenant = scope.tenant
        for _ in range(self._max_attempts):
            head = self.catch_up(tenant)
            attempt = self._prepare(scope, staged, reads or {}, since, head, message)
            if isinstance(attempt, CommitResult):
                return attempt
            commit, records, overwrote = attempt
            self.projector.write_pending(tenant, commit, records)
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
        since: int | None,
        head: LogEntry | None,
        message: str,
    ) -> tuple[Commit, list[MemoryRecord], tuple[Conflict, ...]] | CommitResult:
        current = self.projector.current(scope.tenant, [(s.namespace, s.key) for s in staged])
        now, commit_id = self.clock(), f"c{secrets.token_hex(8)}"
        refused: list[Conflict] = []
        overwrote: list[Conflict] = []
        records: list[MemoryRecord] = []
        for write in staged:
            payload, version = current[(write.namespace, write.key)]
            expected = write.expected_version
            if expected is None:
                expected = reads.get((write.namespace, write.key))
            if expected is None and since is not None and payload is not None:
                expected = self._version_at(scope.tenant, write, payload, since)
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

    def _version_at(
        self, tenant: str, write: Staged, payload: Mapping[str, Any], since: int
    ) -> int | None:
        """For a blind write: the key's version at log position `since` when a later commit
        changed it (its writer never saw that change), else None (nothing to check)."""
        written_at = self.log.locate(tenant, str(payload["commit"]))
        if written_at is None or written_at <= since:
            return None
        for entry in self.log.entries(tenant, after=since, upto=written_at):
            for change in self.load_commit(tenant, entry.commit_id).changes:
                if (change.namespace, change.key) == (write.namespace, write.key):
                    return change.previous_version
        return None

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
        # The refused value lives no longer than its retention class would have let it.
        ttl_s = self.retention_class(write.tags.retention).ttl_s if write.tags else None
        now = self.clock()
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
                "filed_at": now,
                "expires_at": now + ttl_s if ttl_s is not None else None,
                "status": "open",
            },
            index=False,
        )

    def _observe_sources(self, scope: MemoryScope, records: list[MemoryRecord]) -> None:
        for record in records:
            if not record.deleted:
                self.monitor.observe(
                    self.long, scope.tenant, record.tags.lineage.source, record.value,
                    by=scope.agent,
                )  # fmt: skip

    # -- reads -----------------------------------------------------------------------------------

    def get(self, scope: MemoryScope, namespace: Sequence[str], key: str) -> MemoryRecord | None:
        """See `GovernedReads.get`."""
        return self.reads.get(scope, namespace, key)

    def recall(
        self,
        scope: MemoryScope,
        query: str | None = None,
        *,
        namespace: Sequence[str] = (),
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
    ) -> list[Recalled]:
        """See `GovernedReads.recall`."""
        return self.reads.recall(scope, query, namespace=namespace, limit=limit, filter=filter)
