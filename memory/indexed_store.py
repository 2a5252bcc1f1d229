"""A LangGraph `BaseStore` that adds a per-tenant HNSW vector index (usearch) to any inner store."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    ensure_embeddings,
    get_text_at_path,
    tokenize_path,
)

from memory.vector_partition import HnswParams, Ref, VectorPartition

__all__ = ["HnswParams", "IndexedStore", "IndexedStoreConfigError"]

Fields = bool | list[str] | None
"""Which fields to embed, with `PutOp.index` semantics (None: the configured default)."""
_PAGE, _OVERLAP = 5_000, 64
"""Rebuild page size; pages overlap so a row deleted meanwhile (TTL sweep) shifts none away."""


class IndexedStoreConfigError(ValueError):
    """An `IndexedStore` was configured wrongly (the message names the setting and the fix)."""


class IndexedStore(BaseStore):
    """Vector search over any LangGraph store: an in-memory HNSW per tenant (`namespace[0]`).

    The inner store (e.g. `SqliteStore`, `InMemoryStore`, created *without* an index) keeps
    the items; this store embeds the configured fields on `put` (same field rules as
    `InMemoryStore`: `index=None` default fields, `False` none, a list those paths) and answers
    `search(query=...)` from the tenant's index, so a search never touches another tenant's
    vectors. Partitions under `exact_below` vectors are searched exactly; bigger ones by HNSW
    with oversampling and exact re-scoring, falling back to an exact scan whenever filters or
    namespace prefixes leave fewer hits than asked. Scores are cosine similarities.

    Rebuild cost: the index lives in memory. The first use of a tenant in a process (search or
    put) pages all of its items out of the inner store, re-embeds them and builds the graph,
    holding that tenant's searches and writes meanwhile. For 100k items on 2 cores: 7-11 s
    with precomputed vectors (B6), plus the embedder's time (~8 s for `HashingEmbedder`, many
    minutes for MiniLM). Call `warm(tenant)` at startup to pay it up front. Every write must
    go through this store, in one process: another writer's changes are not seen.

    Hits are fetched from the inner store with the search's `refresh_ttl`; an item the inner
    store no longer has (a TTL sweep) is skipped.

    Bulk ingest with precomputed vectors: give an embedder whose `embed_array(texts)` returns
    the rows for ids put in the indexed field (a lookup table), and put in batches.
    """

    def __init__(
        self,
        inner: BaseStore,
        *,
        index: IndexConfig,
        exact_below: int = 2048,
        hnsw: HnswParams | None = None,
        rebuild_fields: Callable[[Item], Fields] | None = None,
    ) -> None:
        """Wrap `inner`.

        Args:
            inner: The store that keeps the items; it must have no index of its own.
            index: `dims`, `embed` (LangChain `Embeddings` or a function) and `fields`
                (default `["$"]`, the whole value). An embedder with `embed_array(texts)`
                returning a numpy array is used for documents in one call.
            exact_below: Partitions with fewer vectors are searched exactly.
            hnsw: Graph settings (`HnswParams()` by default).
            rebuild_fields: Which fields to embed for an item found while rebuilding, as
                `PutOp.index` would say (default: the configured fields for every item). The
                inner store does not record a put's `index`, so layouts that keep unembedded
                copies (e.g. history) must exclude them here.
        """
        if getattr(inner, "index_config", None):
            raise IndexedStoreConfigError(
                f"`inner` ({type(inner).__name__}) has an index of its own, so every put would "
                "be embedded twice; create it without `index=`"
            )
        dims, embed = index.get("dims"), index.get("embed")
        if not isinstance(dims, int) or dims < 1 or embed is None:
            raise IndexedStoreConfigError(
                f"`index` needs an int `dims` ≥ 1 and an `embed`; got dims={dims!r}, "
                f"embed={embed!r}. Hint: index={{'dims': 384, 'embed': HashingEmbedder()}}"
            )
        if exact_below < 0:
            raise IndexedStoreConfigError(f"`exact_below` must be ≥ 0, got {exact_below}")
        self._inner, self._dims, self._exact_below = inner, dims, exact_below
        self._embeddings = ensure_embeddings(embed)
        self._fields = _tokenized(index.get("fields") or ["$"])
        self._hnsw = hnsw or HnswParams()
        self._rebuild_fields = rebuild_fields
        self._partitions: dict[str, VectorPartition] = {}
        self._partitions_lock = threading.Lock()
        self.supports_ttl = inner.supports_ttl
        self.ttl_config = inner.ttl_config

    def warm(self, tenant: str) -> int:
        """Build `tenant`'s index now (from the inner store) if not built yet; return its size."""
        return len(self._partition(tenant))

    def refresh(self, refs: Iterable[Ref]) -> None:
        """Re-index these (namespace, key) items from the inner store: for writes made by
        another process, which this index cannot see (fields chosen as on a rebuild)."""
        for tenant, group in _by_tenant(list(refs)).items():
            partition = self._partition(tenant)
            with partition.lock.write():  # read and index together: no put can interleave
                items = self._inner.batch([GetOp(ns, key, False) for ns, key in group])
                texts = [
                    (ref, self._texts(item.value, self._rebuild(item)) if item else [])
                    for ref, item in zip(group, cast(list[Item | None], items), strict=True)
                ]
                self._update(tenant, partition, self._vectors(texts))

    def stats(self, tenant: str) -> dict[str, int | bool]:
        """`tenant`'s index: items, vectors, whether it has a graph, and graph tombstones."""
        partition = self._partition(tenant)
        with partition.lock.read():
            return {
                "items": len(partition.slots),
                "vectors": len(partition),
                "graph": partition.hnsw is not None,
                "tombstones": partition.removed,
            }

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Reads first, then writes, like the LangGraph stores (a batch reads its own past)."""
        ops = list(ops)
        results: list[Result] = [None] * len(ops)
        passthrough = [
            i for i, op in enumerate(ops) if not isinstance(op, PutOp | SearchOp) or _plain(op)
        ]
        if passthrough:
            for i, result in zip(
                passthrough, self._inner.batch([ops[i] for i in passthrough]), strict=True
            ):
                results[i] = result
        for i, op in enumerate(ops):
            if isinstance(op, SearchOp) and not _plain(op):
                results[i] = self._search(op)
        puts = [op for op in ops if isinstance(op, PutOp)]
        if puts:
            self._put(puts)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """`batch` in a worker thread: index work is CPU-bound, and `SqliteStore` is sync-only."""
        return await asyncio.to_thread(self.batch, list(ops))

    # --- writes -----------------------------------------------------------------------------

    def _texts(self, value: Mapping[str, Any] | None, fields: Fields) -> list[str]:
        if value is None or fields is False:
            return []
        paths = self._fields if fields is None or fields is True else _tokenized(fields)
        found: list[str] = []
        for path in paths:
            # Fast path for a plain top-level string field (the common case in bulk ingest).
            head = path[0] if isinstance(path, list) and len(path) == 1 else ""
            text = value.get(head) if head.isidentifier() else None
            found += [text] if isinstance(text, str) else get_text_at_path(value, path)
        return found

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 rows (zero rows stay zero), one per text."""
        if not texts:
            return np.zeros((0, self._dims), dtype=np.float32)
        fast = getattr(self._embeddings, "embed_array", None)
        raw = fast(texts) if callable(fast) else self._embeddings.embed_documents(list(texts))
        rows = np.asarray(raw, dtype=np.float32).reshape(len(texts), -1)
        if rows.shape[1] != self._dims:
            raise IndexedStoreConfigError(
                f"the embedder returned {rows.shape[1]}-dim vectors but `index['dims']` is "
                f"{self._dims}; make them agree"
            )
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)

    def _vectors(self, values: Sequence[tuple[Ref, list[str]]]) -> list[tuple[Ref, np.ndarray]]:
        texts = sorted({text for _, item_texts in values for text in item_texts})
        rows = self._embed(texts)
        row_of = {text: n for n, text in enumerate(texts)}
        return [(ref, rows[[row_of[t] for t in item_texts]]) for ref, item_texts in values]

    def _put(self, puts: list[PutOp]) -> None:
        by_ref = {(op.namespace, op.key): op for op in puts}
        for tenant, refs in _by_tenant(list(by_ref)).items():
            ops = [by_ref[ref] for ref in refs]
            # Embedding (slow) happens outside the lock; inner write + index update inside it,
            # so concurrent writers of one key leave the index matching the last value stored.
            changes = self._vectors(
                [((op.namespace, op.key), self._texts(op.value, op.index)) for op in ops]
            )
            partition = self._partition(tenant)
            with partition.lock.write():
                self._inner.batch([op._replace(index=False) for op in ops])
                self._update(tenant, partition, changes)

    def _partition(self, tenant: str) -> VectorPartition:
        partition = self._partitions.get(tenant)
        if partition is None:
            with self._partitions_lock:
                partition = self._partitions.get(tenant)
                if partition is None:
                    partition = VectorPartition(self._dims, self._hnsw)
                    self._partitions[tenant] = partition
        if not partition.loaded:
            with partition.lock.write():
                if not partition.loaded:
                    self._update(tenant, partition, self._vectors(self._scan(tenant)))
                    partition.loaded = True
        return partition

    def _update(
        self, tenant: str, partition: VectorPartition, changes: list[tuple[Ref, np.ndarray]]
    ) -> None:
        """Apply `changes`; if that fails, drop the partition so its next use rebuilds it."""
        try:
            partition.replace(changes, self._exact_below)
        except BaseException:
            with self._partitions_lock:
                if self._partitions.get(tenant) is partition:
                    del self._partitions[tenant]
            raise

    def _rebuild(self, item: Item) -> Fields:
        return self._rebuild_fields(item) if self._rebuild_fields else None

    def _scan(self, tenant: str) -> list[tuple[Ref, list[str]]]:
        """Every item of `tenant` in the inner store with the texts to embed for it."""
        found: dict[Ref, list[str]] = {}
        offset = 0
        while True:
            page = self._inner.search((tenant,), limit=_PAGE, offset=offset, refresh_ttl=False)
            for item in page:
                found[(item.namespace, item.key)] = self._texts(item.value, self._rebuild(item))
            if len(page) < _PAGE:
                return [(ref, texts) for ref, texts in found.items() if texts]
            offset += _PAGE - _OVERLAP

    # --- search -----------------------------------------------------------------------------

    def _search(self, op: SearchOp) -> list[SearchItem]:
        assert op.query is not None
        query = self._embed_query(op.query)
        need = max(op.offset, 0) + max(op.limit, 0)
        if op.namespace_prefix:
            tenants = [op.namespace_prefix[0]]
        else:
            tenants = [ns[0] for ns in self._inner.list_namespaces(max_depth=1, limit=1 << 30)]
        cache: dict[Ref, Item | None] = {}
        scored: list[tuple[float | None, Item]] = []
        for tenant in tenants:
            scored += self._search_partition(self._partition(tenant), query, op, need, cache)
        scored.sort(key=lambda hit: -(hit[0] or 0.0))
        if len(scored) < need:  # like InMemoryStore: fill up with matching unembedded items
            seen = {(item.namespace, item.key) for _, item in scored}
            more = self._inner.search(
                op.namespace_prefix, filter=op.filter, limit=need, refresh_ttl=op.refresh_ttl
            )
            scored += [(None, i) for i in more if (i.namespace, i.key) not in seen]
        return [
            SearchItem(i.namespace, i.key, i.value, i.created_at, i.updated_at, score)
            for score, i in scored[op.offset : need]
        ]

    def _embed_query(self, text: str) -> np.ndarray:
        vector = np.asarray(self._embeddings.embed_query(text), dtype=np.float32)
        if vector.shape != (self._dims,):
            raise IndexedStoreConfigError(
                f"the embedder returned a query vector of shape {vector.shape}; "
                f"`index['dims']` is {self._dims}"
            )
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def _search_partition(
        self,
        partition: VectorPartition,
        query: np.ndarray,
        op: SearchOp,
        need: int,
        cache: dict[Ref, Item | None],
    ) -> list[tuple[float | None, Item]]:
        """Up to `need` best items of one partition under the prefix and filter."""
        with partition.lock.read():  # held while fetching: no write can reuse a slot meanwhile
            size = len(partition)
            if not need or not size:
                return []
            count = max(need * self._hnsw.oversample, 16)
            if partition.hnsw is not None and size >= self._exact_below:
                hits, examined = partition.ann(query, count)
            else:
                hits, examined = partition.exact(query, count)
            found = self._take(hits, op, need, cache)
            if len(found) >= need or examined >= size:
                return found
            # Too few survived the prefix / filter: rank the whole partition exactly.
            return self._take(partition.exact(query, size)[0], op, need, cache)

    def _take(
        self,
        ranked: list[tuple[float, Ref]],
        op: SearchOp,
        need: int,
        cache: dict[Ref, Item | None],
    ) -> list[tuple[float | None, Item]]:
        """The first `need` ranked items under the prefix that exist and pass the filter."""
        prefix, depth = op.namespace_prefix, len(op.namespace_prefix)
        wanted = [(score, ref) for score, ref in ranked if ref[0][:depth] == prefix]
        found: list[tuple[float | None, Item]] = []
        start, chunk = 0, need
        while start < len(wanted) and len(found) < need:
            # Filters reject an unknown share, so each fetch doubles (bounded round trips).
            batch = wanted[start : start + chunk]
            start, chunk = start + len(batch), min(chunk * 2, 4096) if op.filter else need
            missing = [ref for _, ref in batch if ref not in cache]
            fetched = self._inner.batch([GetOp(ns, key, op.refresh_ttl) for ns, key in missing])
            cache.update(zip(missing, cast(list[Item | None], fetched), strict=True))
            for score, ref in batch:
                item = cache[ref]
                if item is not None and (not op.filter or _matches(item.value, op.filter)):
                    found.append((score, item))
        return found[:need]


def _by_tenant(refs: list[Ref]) -> dict[str, list[Ref]]:
    groups: dict[str, list[Ref]] = {}
    for namespace, key in refs:
        if not namespace:
            raise IndexedStoreConfigError(
                f"key {key!r} has an empty namespace; start it with a tenant"
            )
        groups.setdefault(namespace[0], []).append((namespace, key))
    return groups


def _tokenized(fields: list[str]) -> list[str | list[str]]:
    return [field if field == "$" else tokenize_path(field) for field in fields]


def _plain(op: PutOp | SearchOp) -> bool:
    """A search without a query goes straight to the inner store."""
    return isinstance(op, SearchOp) and not op.query


def _matches(value: Any, wanted: Any) -> bool:
    """`InMemoryStore`'s filter semantics: nested equality and `$eq $ne $gt $gte $lt $lte`.

    Unlike `InMemoryStore`, a range operator on a missing or non-numeric field does not match
    instead of raising.
    """
    if isinstance(wanted, dict):
        if any(key.startswith("$") for key in wanted):
            return all(_compare(value, operator, arg) for operator, arg in wanted.items())
        return isinstance(value, dict) and all(_matches(value.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list | tuple):
        return (
            isinstance(value, list | tuple)
            and len(value) == len(wanted)
            and all(_matches(v, w) for v, w in zip(value, wanted, strict=True))
        )
    return bool(value == wanted)


def _compare(value: Any, operator: str, arg: Any) -> bool:
    if operator in ("$eq", "$ne"):
        return (value == arg) is (operator == "$eq")
    compare: dict[str, Callable[[float, float], bool]] = {
        "$gt": float.__gt__,
        "$gte": float.__ge__,
        "$lt": float.__lt__,
        "$lte": float.__le__,
    }
    if operator not in compare:
        raise IndexedStoreConfigError(
            f"unsupported filter operator `{operator}`; use one of $eq $ne $gt $gte $lt $lte"
        )
    try:
        return compare[operator](float(value), float(arg))
    except (TypeError, ValueError):  # a missing or non-numeric field: no match (as in SQL)
        return False
