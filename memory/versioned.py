"""VersionedMemory: remember, recall, forget, history, diff, revert, as_of, promotion, retention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from memory.contract import (
    Lineage,
    MemoryContractError,
    MemoryScope,
    Sensitivity,
    check_key,
    check_namespace,
    sensitivity_rank,
)
from memory.core import MemoryCore, Staged
from memory.freshness import SourceStatus
from memory.layout import all_items, ns_of, record_from, tags_from
from memory.records import (
    Commit,
    CommitResult,
    Conflict,
    DiffEntry,
    MemoryDiff,
    MemoryRecord,
)
from memory.session import MemorySession

__all__ = ["MemorySnapshot", "VersionedMemory"]


class VersionedMemory(MemoryCore):
    """Governed, versioned, tenant-walled memory over LangGraph `BaseStore`s.

    Every call takes a `MemoryScope` built from the run context: its tenant prefixes every
    namespace, its purposes and clearance filter every read, and its agent, run and decision
    are the lineage of every write. Constructor arguments: see `MemoryCore`.
    """

    # -- writes ----------------------------------------------------------------------------------

    def session(self, scope: MemoryScope, message: str = "") -> MemorySession:
        """A reasoning cycle: reads recorded, writes committed together on exit."""
        return MemorySession(self, scope, message)

    def remember(
        self,
        scope: MemoryScope,
        namespace: Sequence[str],
        key: str,
        value: Mapping[str, Any],
        *,
        purpose: str,
        retention: str,
        sensitivity: Sensitivity,
        source: str | None = None,
        expected_version: int | None = None,
        message: str = "",
    ) -> CommitResult:
        """Write one record as its own commit (a session with one write)."""
        session = self.session(scope, message)
        session.remember(
            namespace, key, value, purpose=purpose, retention=retention,
            sensitivity=sensitivity, source=source, expected_version=expected_version,
        )  # fmt: skip
        return session.commit()

    def forget(
        self,
        scope: MemoryScope,
        namespace: Sequence[str],
        key: str,
        *,
        expected_version: int | None = None,
        message: str = "",
    ) -> CommitResult:
        """Delete a record by a tombstone commit (`empty` if there is nothing to forget)."""
        session = self.session(scope, message)
        session.forget(namespace, key, expected_version=expected_version)
        return session.commit()

    def revert(self, scope: MemoryScope, commit_id: str, *, reason: str) -> CommitResult:
        """Undo a commit by a new commit restoring every key it changed (history is kept).

        A key changed again after `commit_id` is a conflict: nothing is reverted, and the
        result lists those keys (revert the later commits first, or write by hand).
        """
        commit = self.commit_of(scope, commit_id)
        staged = []
        for change in commit.changes:
            before = self._version(scope.tenant, change.namespace, change.key,
                                   change.previous_version)  # fmt: skip
            common = {
                "namespace": change.namespace, "key": change.key,
                "expected_version": change.version, "strict": True,
            }  # fmt: skip
            if before is None or before.deleted:
                staged.append(Staged(op="delete", **common))  # type: ignore[arg-type]
            else:
                lineage = Lineage(
                    source=before.tags.lineage.source, run_id=scope.run_id,
                    decision_id=scope.decision_id,
                )  # fmt: skip
                tags = replace(before.tags, lineage=lineage)
                staged.append(Staged(op="put", value=before.value, tags=tags, **common))  # type: ignore[arg-type]
        return self.commit(scope, staged, message=f"revert {commit.id}: {reason}")

    def consolidate(self, scope: MemoryScope) -> CommitResult:
        """Promote short-term records whose retention class says so to the long-term tier."""
        staged = []
        for item in all_items(self.short, ns_of(scope.tenant, "memory")):
            payload = item.value
            rule = self.retention.get(payload["retention"])
            expired = (
                payload.get("expires_at") is not None and payload["expires_at"] <= self.clock()
            )
            if rule is None or rule.promote_to is None or payload.get("tier") != "short" or expired:
                continue
            self.retention_class(rule.promote_to)
            tags = tags_from(payload)
            lineage = replace(tags.lineage, run_id=scope.run_id, decision_id=scope.decision_id)
            staged.append(
                Staged(
                    namespace=tuple(item.namespace[2:]), key=item.key, op="put",
                    value=payload["data"], expected_version=int(payload["version"]), strict=True,
                    tags=replace(tags, retention=rule.promote_to, lineage=lineage),
                )
            )  # fmt: skip
        return self.commit(scope, staged, message="promote short-term records to long-term")

    def purge(self) -> int:
        """Delete every expired record, version and filed conflict from the stores; returns
        how many records (current versions) went. Commits keep their metadata, never values."""
        now, purged = self.clock(), 0
        for tenant in self.log.tenants():
            for store in self.stores():
                for area in ("memory", "history", "conflicts"):
                    for item in all_items(store, ns_of(tenant, area)):
                        expires = item.value.get("expires_at")
                        if expires is None or expires > now:
                            continue
                        if area == "memory":
                            purged += 1
                            self.long.put(
                                ns_of(tenant, "tombs", tuple(item.namespace[2:])), item.key,
                                {"version": int(item.value["version"])}, index=False,
                            )  # fmt: skip
                        store.delete(item.namespace, item.key)
        return purged

    # -- history ---------------------------------------------------------------------------------

    def commits(self, scope: MemoryScope, *, after: int = 0, limit: int = 50) -> list[Commit]:
        """The tenant's commits after position `after`, oldest first (at most `limit`)."""
        entries = self.log.entries(scope.tenant, after=after, upto=after + limit)
        return [self.load_commit(scope.tenant, entry.commit_id) for entry in entries]

    def commit_of(self, scope: MemoryScope, commit_id: str) -> Commit:
        """A commit of the scope's tenant, or a contract error (unknown or another tenant's)."""
        if self.log.locate(scope.tenant, commit_id) is None:
            raise MemoryContractError(
                f"no commit {commit_id!r} in the memory of tenant {scope.tenant!r}; "
                "`bastion memory log` lists them"
            )
        return self.load_commit(scope.tenant, commit_id)

    def history(self, scope: MemoryScope, namespace: Sequence[str], key: str) -> list[MemoryRecord]:
        """Every accepted version of a record, oldest first (tombstones included), that this
        scope's purposes and clearance allow; versions past their retention are gone."""
        return [r for r in self._versions(scope.tenant, namespace, key) if self._may_see(scope, r)]

    def as_of(self, scope: MemoryScope, commit_id: str) -> MemorySnapshot:
        """Memory as it stood right after `commit_id`."""
        self.commit_of(scope, commit_id)
        return MemorySnapshot(memory=self, scope=scope, commit_id=commit_id)

    def diff(self, scope: MemoryScope, base: str | None, target: str) -> MemoryDiff:
        """How the tenant's memory changed from `base` (None: empty) to `target`."""
        start = self.log.locate(scope.tenant, base) if base else 0
        end = self.log.locate(scope.tenant, target)
        if start is None or end is None:
            missing = base if start is None else target
            raise MemoryContractError(f"no commit {missing!r} in tenant {scope.tenant!r}")
        if start > end:
            raise MemoryContractError(f"diff base {base!r} comes after target {target!r}")
        entries, ids = [], []
        touched: dict[tuple[tuple[str, ...], str], None] = {}
        for entry in self.log.entries(scope.tenant, after=start, upto=end):
            ids.append(entry.commit_id)
            for change in self.load_commit(scope.tenant, entry.commit_id).changes:
                touched[(change.namespace, change.key)] = None
        for namespace, key in touched:
            before = self.state_at(scope, namespace, key, start)
            after = self.state_at(scope, namespace, key, end)
            if _same(before, after):
                continue
            status: Literal["added", "removed", "changed"] = (
                "added" if before is None else "removed" if after is None else "changed"
            )
            entries.append(DiffEntry(namespace=namespace, key=key, status=status,
                                     before=before, after=after))  # fmt: skip
        return MemoryDiff(base=base, target=target, entries=tuple(entries), commits=tuple(ids))

    def state_at(
        self, scope: MemoryScope, namespace: tuple[str, ...], key: str, seq: int
    ) -> MemoryRecord | None:
        """A record as it stood after the commit at position `seq` (None: absent or deleted)."""
        latest = None
        for record in self._versions(scope.tenant, namespace, key):
            at = self.log.locate(scope.tenant, record.commit_id)
            if at is not None and at <= seq:
                latest = record
        if latest is None or latest.deleted or not self._may_see(scope, latest):
            return None
        return latest

    # -- sources and conflicts -------------------------------------------------------------------

    def sources(self, scope: MemoryScope) -> list[SourceStatus]:
        """Freshness state of every source the tenant's memory has seen."""
        statuses = self.monitor.statuses(self.long, scope.tenant, fresh=True)
        return sorted(statuses.values(), key=lambda status: status.source)

    def set_source(
        self, scope: MemoryScope, source: str, *, enabled: bool, reason: str
    ) -> SourceStatus:
        """Enable or disable a source for reads (who and why are kept)."""
        return self.monitor.set_enabled(
            self.long, scope.tenant, source, enabled, by=scope.agent, reason=reason
        )

    def open_conflicts(self, scope: MemoryScope) -> list[Conflict]:
        """Escalated conflicts of the tenant awaiting a person."""
        items = all_items(self.long, ns_of(scope.tenant, "conflicts"), status="open")
        now = self.clock()
        return [
            _conflict_from(item.key, item.value)
            for item in items
            if (item.value.get("expires_at") or now + 1) > now  # expired: the value is gone
        ]

    def settle(
        self, scope: MemoryScope, conflict_id: str, *, keep: Literal["mine", "theirs"], reason: str
    ) -> CommitResult:
        """Settle an escalated conflict: `mine` writes the refused value over the current one
        (if nothing changed since), `theirs` keeps the current one. Who and why are kept."""
        space = ns_of(scope.tenant, "conflicts")
        item = self.long.get(space, conflict_id)
        expires = item.value.get("expires_at") if item is not None else None
        if item is None or item.value.get("status") != "open":
            raise MemoryContractError(f"no open memory conflict {conflict_id!r}")
        if expires is not None and expires <= self.clock():
            raise MemoryContractError(
                f"memory conflict {conflict_id!r} expired with its value's retention; "
                "nothing is left to settle"
            )
        filed = item.value
        result = CommitResult(status="empty")
        if keep == "mine":
            common = {
                "namespace": tuple(filed["namespace"]), "key": filed["key"],
                "expected_version": filed["actual_version"], "strict": True,
            }  # fmt: skip
            write = (
                Staged(op="delete", **common)  # type: ignore[arg-type]
                if filed["op"] == "delete"
                else Staged(op="put", value=filed["value"], tags=tags_from(filed["tags"]), **common)  # type: ignore[arg-type]
            )
            result = self.commit(scope, [write], message=f"settle {conflict_id}: {reason}")
            if not result.ok:
                return result
        settled = {"status": f"kept {keep}", "settled_by": scope.agent, "reason": reason}
        self.long.put(space, conflict_id, {**filed, **settled}, index=False)
        return result

    # -- helpers ---------------------------------------------------------------------------------

    def _versions(self, tenant: str, namespace: Sequence[str], key: str) -> list[MemoryRecord]:
        namespace = check_namespace(tuple(namespace))
        check_key(key)
        space = ns_of(tenant, "history", namespace)
        records, now = [], self.clock()
        for store in self.stores():
            for item in all_items(store, space, key=key):
                if tuple(item.namespace) == space and item.value.get("key") == key:
                    record = record_from(namespace, item.value)
                    if record.expires_at is not None and record.expires_at <= now:
                        continue  # past retention: gone from history as from reads
                    if self.log.locate(tenant, record.commit_id) is not None:
                        records.append(record)
        return sorted(records, key=lambda record: record.version)

    def _version(
        self, tenant: str, namespace: tuple[str, ...], key: str, version: int
    ) -> MemoryRecord | None:
        if version < 1:
            return None
        for record in self._versions(tenant, namespace, key):
            if record.version == version:
                return record
        raise MemoryContractError(
            f"version {version} of {key!r} in {namespace!r} is past its retention (expired "
            "or purged); it cannot be restored"
        )

    def _may_see(self, scope: MemoryScope, record: MemoryRecord) -> bool:
        return record.tags.purpose in scope.purposes and sensitivity_rank(
            record.tags.sensitivity
        ) <= sensitivity_rank(scope.clearance)


@dataclass(frozen=True, kw_only=True)
class MemorySnapshot:
    """Read-only memory as it stood after one commit (`VersionedMemory.as_of`)."""

    memory: VersionedMemory
    scope: MemoryScope
    commit_id: str

    @property
    def seq(self) -> int:
        """Position of the commit in the tenant's log."""
        return self.memory.log.locate(self.scope.tenant, self.commit_id) or 0

    def get(self, namespace: Sequence[str], key: str) -> MemoryRecord | None:
        """The record as it stood then (None: absent, deleted, or hidden from this scope)."""
        return self.memory.state_at(self.scope, check_namespace(tuple(namespace)), key, self.seq)

    def records(self) -> list[MemoryRecord]:
        """Every record that existed then and this scope may see."""
        keys: dict[tuple[tuple[str, ...], str], None] = {}
        for commit in self.memory.commits(self.scope, limit=self.seq):
            for change in commit.changes:
                keys[(change.namespace, change.key)] = None
        found = (self.memory.state_at(self.scope, ns, key, self.seq) for ns, key in keys)
        return [record for record in found if record is not None]


def _same(before: MemoryRecord | None, after: MemoryRecord | None) -> bool:
    if before is None or after is None:
        return before is after
    return before.value == after.value and (
        before.tags.purpose,
        before.tags.retention,
        before.tags.sensitivity,
    ) == (after.tags.purpose, after.tags.retention, after.tags.sensitivity)


def _conflict_from(conflict_id: str, filed: Mapping[str, Any]) -> Conflict:
    return Conflict(
        namespace=tuple(filed["namespace"]),
        key=filed["key"],
        expected_version=filed["expected_version"],
        actual_version=filed["actual_version"],
        actual_author=filed["actual_author"],
        policy="escalate",
        conflict_id=conflict_id,
    )
