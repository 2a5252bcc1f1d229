"""Where memory keeps things in a `BaseStore`, and how records become store values and back.

Every namespace starts with the tenant, so any store that partitions by the first label
(Weaviate tenants, the embedded index) walls tenants apart as well:

- `(tenant, "memory", *ns)` / key: the current version (the one searched; embedded).
- `(tenant, "history", *ns)` / `key@commit`: every version, immutable, not embedded.
- `(tenant, "tombs", *ns)` / key: the version counter of a deleted key.
- `(tenant, "commits")` / commit id: commit metadata (no values, so retention can purge them).
- `(tenant, "conflicts")` / conflict id: escalated conflicts awaiting a person.
- `(tenant, "sources")` / source: freshness state of a source.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from langgraph.store.base import BaseStore, Item
from langgraph.store.memory import _compare_values  # the operators InMemoryStore supports

from memory.contract import Lineage, MemoryTags
from memory.records import Change, Commit, MemoryRecord

__all__ = [
    "INDEX_FIELDS",
    "all_items",
    "commit_from",
    "commit_payload",
    "matches_filter",
    "ns_of",
    "record_from",
    "record_payload",
    "tags_from",
    "tags_payload",
    "text_of",
    "version_key",
]

INDEX_FIELDS = ["text"]


def ns_of(tenant: str, area: str, namespace: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Store namespace of `area` (`memory`, `history`, `tombs`, …) for a tenant."""
    return (tenant, area, *namespace)


def version_key(key: str, commit_id: str) -> str:
    """History key of the version of `key` written by `commit_id` (unique per attempt)."""
    return f"{key}@{commit_id}"


def text_of(value: Mapping[str, Any] | None) -> str:
    """The text that is embedded for a value: its `text` field, else its canonical JSON."""
    if not value:
        return ""
    text = value.get("text")
    if isinstance(text, str):
        return text
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def record_payload(record: MemoryRecord) -> dict[str, Any]:
    """Store value of a record version."""
    return {
        "key": record.key,
        "data": dict(record.value) if record.value is not None else None,
        "text": text_of(record.value),
        **tags_payload(record.tags),
        "author": record.author,
        "version": record.version,
        "commit": record.commit_id,
        "written_at": record.written_at,
        "expires_at": record.expires_at,
        "tier": record.tier,
        "deleted": record.deleted,
    }


def tags_payload(tags: MemoryTags) -> dict[str, Any]:
    """Store fields of a write's tags (flat, so stores can filter on them)."""
    return {
        "purpose": tags.purpose,
        "retention": tags.retention,
        "sensitivity": tags.sensitivity,
        "source": tags.lineage.source,
        "run_id": tags.lineage.run_id,
        "decision_id": tags.lineage.decision_id,
    }


def tags_from(payload: Mapping[str, Any]) -> MemoryTags:
    """The tags stored by `tags_payload`."""
    return MemoryTags(
        purpose=payload["purpose"],
        retention=payload["retention"],
        sensitivity=payload["sensitivity"],
        lineage=Lineage(
            source=payload["source"],
            run_id=payload["run_id"],
            decision_id=payload.get("decision_id"),
        ),
    )


def record_from(namespace: tuple[str, ...], payload: Mapping[str, Any]) -> MemoryRecord:
    """The record a store value holds (`namespace` is below the tenant and area)."""
    return MemoryRecord(
        namespace=namespace,
        key=payload["key"],
        value=payload.get("data"),
        tags=tags_from(payload),
        version=int(payload["version"]),
        commit_id=payload["commit"],
        author=payload["author"],
        written_at=float(payload["written_at"]),
        expires_at=payload.get("expires_at"),
        tier=payload.get("tier", "long"),
        deleted=bool(payload.get("deleted")),
    )


def commit_payload(commit: Commit) -> dict[str, Any]:
    """Store value of a commit."""
    return {
        "id": commit.id,
        "seq": commit.seq,
        "parent": commit.parent,
        "tenant": commit.tenant,
        "author": commit.author,
        "run_id": commit.run_id,
        "decision_id": commit.decision_id,
        "ts": commit.ts,
        "message": commit.message,
        "changes": [
            {
                "namespace": list(change.namespace),
                "key": change.key,
                "op": change.op,
                "version": change.version,
                "previous_version": change.previous_version,
                "tier": change.tier,
            }
            for change in commit.changes
        ],
    }


def commit_from(payload: Mapping[str, Any]) -> Commit:
    """The commit a store value holds."""
    return Commit(
        id=payload["id"],
        seq=int(payload["seq"]),
        parent=payload.get("parent"),
        tenant=payload["tenant"],
        author=payload["author"],
        run_id=payload["run_id"],
        decision_id=payload.get("decision_id"),
        ts=float(payload["ts"]),
        message=payload.get("message", ""),
        changes=tuple(
            Change(
                namespace=tuple(change["namespace"]),
                key=change["key"],
                op=change["op"],
                version=int(change["version"]),
                previous_version=int(change["previous_version"]),
                tier=change["tier"],
            )
            for change in payload["changes"]
        ),
    )


def all_items(
    store: BaseStore, namespace: tuple[str, ...], *, page: int = 500, **filters: Any
) -> list[Item]:
    """Every item under a namespace prefix (optionally where value fields equal `filters`)."""
    items: list[Item] = []
    while True:
        batch = store.search(namespace, filter=filters or None, limit=page, offset=len(items))
        items.extend(batch)
        if len(batch) < page:
            return items


def matches_filter(value: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    """Whether a value passes a store filter (`$eq $ne $gt $gte $lt $lte`, nested equality),
    with the semantics of LangGraph's `InMemoryStore`."""
    return not filter or all(_compare_values(value.get(k), v) for k, v in filter.items())
