"""Applying accepted commits to the stores: pending versions in, the log's order out."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.store.base import BaseStore, GetOp, Item, PutOp

from memory.base import CommitLog, LogEntry
from memory.commitlog import MemoryBackendError
from memory.contract import Tier
from memory.layout import (
    INDEX_FIELDS,
    commit_from,
    commit_payload,
    ns_of,
    record_from,
    record_payload,
    version_key,
)
from memory.records import Commit, MemoryRecord

__all__ = ["Key", "Projector"]

Key = tuple[tuple[str, ...], str]
_LEASE_POLL_S = 0.002


class Projector:
    """Puts a commit's versions in before its log append, and applies accepted commits to the
    current records after, in log order, under the log's projection lease.

    Args:
        short: store of the short-term tier.
        long: store of the long-term tier (also holds commits and tombstones).
        log: the commit log.
        lease_s: how long a writer may take to apply commits before another may take over.
    """

    def __init__(
        self, *, short: BaseStore, long: BaseStore, log: CommitLog, lease_s: float
    ) -> None:
        self.short, self.long, self.log = short, long, log
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._lease_s = lease_s
        self._seen: dict[str, int] = {}

    def store(self, tier: Tier) -> BaseStore:
        """The store of a tier."""
        return self.short if tier == "short" else self.long

    def stores(self) -> list[BaseStore]:
        """The distinct stores (one when both tiers share a store)."""
        return [self.short] if self.short is self.long else [self.short, self.long]

    def write_pending(self, tenant: str, commit: Commit, records: list[MemoryRecord]) -> None:
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
        if head is None:
            return None
        projected = self.log.projected(tenant)
        if projected >= head.seq:
            self._refresh_others(tenant, upto=projected)
            return head
        owner = f"{self._owner}:{threading.get_ident()}"
        waited = 0.0
        while not self.log.claim_projection(tenant, owner, self._lease_s):
            projected = self.log.projected(tenant)
            if projected >= head.seq:  # the holder applied our commit too
                self._refresh_others(tenant, upto=projected)
                return head
            if waited > 2 * self._lease_s:
                raise MemoryBackendError(
                    f"memory of tenant {tenant!r} is being applied by another writer that "
                    f"has not finished in {waited:.0f}s; retry, or check for a hung process"
                )
            time.sleep(_LEASE_POLL_S)  # backoff while another writer applies
            waited += _LEASE_POLL_S
        try:
            done = self.log.projected(tenant)
            self._refresh_others(tenant, upto=done)
            for entry in self.log.entries(tenant, after=done, upto=head.seq):
                records = (known or {}).get(entry.commit_id)
                if records is None:
                    records = self.load_versions(tenant, entry.commit_id)
                self._project(tenant, records)
                self.log.mark_projected(tenant, entry.seq)
            self._seen[tenant] = head.seq
        finally:
            self.log.release_projection(tenant, owner)
        return head

    def _refresh_others(self, tenant: str, *, upto: int) -> None:
        """Tell an in-process index (`IndexedStore.refresh`) about the keys other processes
        applied since this one last looked; stores that index server-side need nothing."""
        seen = self._seen.setdefault(tenant, upto)  # first look: the index reads the store
        refresh = getattr(self.long, "refresh", None)
        if upto <= seen or refresh is None:
            return
        refs = [
            (ns_of(tenant, "memory", change.namespace), change.key)
            for entry in self.log.entries(tenant, after=seen, upto=upto)
            for change in self.load_commit(tenant, entry.commit_id).changes
            if change.tier == "long"
        ]
        refresh(refs)
        self._seen[tenant] = upto

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

    def _project(self, tenant: str, records: Sequence[MemoryRecord]) -> None:
        current = self.current(tenant, [(r.namespace, r.key) for r in records])
        for record in records:
            payload, version = current[(record.namespace, record.key)]
            if version >= record.version:
                continue  # already applied (a re-run after a crash, or a lease taken over)
            space = ns_of(tenant, "memory", record.namespace)
            old_tier = payload.get("tier") if payload else None
            if old_tier is not None and (record.deleted or old_tier != record.tier):
                self.store(old_tier).delete(space, record.key)  # deleted, or moved tier
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

    def current(
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
