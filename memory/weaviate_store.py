"""A LangGraph `BaseStore` on Weaviate: one Weaviate tenant per Bastion tenant, hybrid search."""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import weaviate
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    get_text_at_path,
)

# InMemoryStore's own namespace-match semantics, reused so both stores agree exactly.
from langgraph.store.memory import _does_match
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateBaseError

from memory.commitlog import MemoryBackendError
from memory.weaviate_layout import (
    _ITEM_PROPS,
    _VECTOR,
    _checked,
    _client_url,
    _item,
    _passes,
    _paths,
    _properties,
    _scan,
    _take,
    check_tenant_name,
    collection_config,
    decode_namespace,
    encode_namespace,
    list_scope,
    object_uuid,
    parse_weaviate_url,
)
from observability.endpoints import safe_url

__all__ = ["WeaviateStore"]

_COLLECTION = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_MAX_WINDOW = 10_000  # Weaviate's default QUERY_MAXIMUM_RESULTS (offset + limit of one query)
_CHUNK = 1_000  # objects per write request
_HINT = (
    "check Weaviate runs there (and `store.setup()` made the collection), check "
    "BASTION_WEAVIATE_URL, or unset it to use the embedded store"
)
_Hit = tuple[Any, float | None]
_NO_SLIDING_TTL: TTLConfig = {"refresh_on_read": False}  # retention, not reads, sets expiry


class WeaviateStore(BaseStore):
    """A LangGraph `BaseStore` in one Weaviate collection, walled by native multi-tenancy.

    `namespace[0]` is the tenant and names the Weaviate tenant the item lives in, so no query
    can cross tenants; searches and listings without a tenant are refused. Vectors come from
    the `index` embedder (bring your own: the collection has no vectorizer); a query runs a
    hybrid search (the query vector plus BM25 on the indexed text, weighted by `alpha`).
    Value filters are applied here with InMemoryStore's semantics, oversampling the server.

    Differences from InMemoryStore: an item's indexed fields are embedded as one text (joined
    by newlines), not one vector per field; scores are Weaviate's fused hybrid scores; searches
    without a query return items in a stable hash order. TTLs (`ttl=` on put) live in
    `expires_at`, are filtered on every read and purged by `sweep_expired`; by default reads
    do not extend them (`refresh_on_read` is False, unlike LangGraph's). Needs Weaviate
    >= 1.27 (the client's minimum). `abatch` embeds with the async embedder API, then runs the
    blocking Weaviate calls in the event loop's default thread pool.
    """

    supports_ttl = True

    def __init__(
        self,
        client: weaviate.WeaviateClient,
        *,
        collection: str = "BastionMemory",
        index: IndexConfig | None = None,
        alpha: float = 0.5,
        ttl: TTLConfig | None = _NO_SLIDING_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Wrap a connected client; call `setup()` once to create the collection.

        Args:
            client: A connected `weaviate.WeaviateClient` (the caller closes it).
            collection: Collection name (Weaviate capitalises the first letter).
            index: `dims`, `embed` (LangChain `Embeddings` or a function) and `fields` to embed.
            alpha: Hybrid weight: 1 is pure vector search, 0 pure keyword (BM25) search.
            ttl: LangGraph TTL settings (`default_ttl`, `refresh_on_read`). The default never
                extends a TTL on read; `None` means LangGraph's defaults (reads extend TTLs).
            clock: Seconds since the epoch, for TTLs (tests pass a fake one).
        """
        if not _COLLECTION.fullmatch(collection):
            raise ValueError(f"collection {collection!r} is not a Weaviate name ([A-Za-z]\\w*)")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be within [0, 1], got {alpha!r}")
        self.client = client
        self.collection_name = collection[0].upper() + collection[1:]
        self.alpha = alpha
        self.ttl_config = ttl.copy() if ttl is not None else None
        self._clock = clock
        self.index_config = dict(index) if index else None
        self.embeddings = ensure_embeddings(index.get("embed")) if index else None
        self._fields = _paths((index or {}).get("fields") or ["$"])
        self._where = _client_url(client)
        self._known: set[str] = set()
        self._collection = client.collections.use(self.collection_name)

    @classmethod
    @contextmanager
    def from_url(
        cls, url: str, *, grpc_port: int | None = None, **kwargs: Any
    ) -> Iterator[WeaviateStore]:
        """Connect to `url` (see `parse_weaviate_url`), yield a store, close the client."""
        params = parse_weaviate_url(url, grpc_port=grpc_port)
        try:
            client = weaviate.connect_to_custom(**params)
        except (WeaviateBaseError, ValueError) as error:  # ValueError: the client's own checks
            raise MemoryBackendError(
                f"cannot reach Weaviate at {safe_url(url)} (gRPC port {params['grpc_port']}): "
                f"{error}; {_HINT}"
            ) from error
        try:
            store = cls(client, **kwargs)
            store._where = safe_url(url)
            yield store
        finally:
            client.close()

    def setup(self) -> None:
        """Create the multi-tenant collection if it is missing (idempotent, race-safe)."""
        collections = self.client.collections
        with self._backend("create the collection"):
            if not collections.exists(self.collection_name):
                try:
                    collections.create(self.collection_name, **collection_config())
                except UnexpectedStatusCodeError:
                    if not collections.exists(self.collection_name):  # else: another process won
                        raise
            config = self._collection.config.get()
        if not config.multi_tenancy_config.enabled:
            raise MemoryBackendError(
                f"collection `{self.collection_name}` at {self._where} exists without "
                "multi-tenancy, so tenants would not be walled apart; use another collection name"
            )

    def sweep_expired(self, tenant: str) -> int:
        """Delete a tenant's items whose TTL has passed; returns how many were deleted."""
        with self._backend("sweep expired items"):
            col = self._tenant(check_tenant_name(tenant))
            if col is None:
                return 0
            where = Filter.by_property("expires_at").less_or_equal(self._clock())
            return int(col.data.delete_many(where=where).successful)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ops in order; reads see the state before this batch's writes (as InMemoryStore)."""
        checked = _checked(ops)
        texts, queries = self._embedding_inputs(checked)
        vectors: dict[Any, list[float]] = {}
        if self.embeddings is not None:
            if texts:
                found = self.embeddings.embed_documents(list(texts.values()))
                vectors = dict(zip(texts, found, strict=True))
            vectors.update({q: self.embeddings.embed_query(q) for q in queries})
        return self._run(checked, texts, vectors)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """`batch`, embedding with the async embedder API and querying in a worker thread."""
        checked = _checked(ops)
        texts, queries = self._embedding_inputs(checked)
        vectors: dict[Any, list[float]] = {}
        if self.embeddings is not None:
            if texts:
                found = await self.embeddings.aembed_documents(list(texts.values()))
                vectors = dict(zip(texts, found, strict=True))
            asked = await asyncio.gather(*(self.embeddings.aembed_query(q) for q in queries))
            vectors.update(zip(queries, asked, strict=True))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._run, checked, texts, vectors)

    def _embedding_inputs(self, ops: list[Op]) -> tuple[dict[Any, str], list[str]]:
        """Text to embed per `(namespace, key)` written (last write wins), and distinct queries."""
        texts: dict[Any, str] = {}
        queries: list[str] = []
        for op in ops if self.embeddings is not None else ():
            if isinstance(op, PutOp):
                texts.pop((op.namespace, op.key), None)
                if op.value is not None and op.index is not False:
                    paths = self._fields if op.index is None else _paths(op.index)
                    parts = [t for _, path in paths for t in get_text_at_path(op.value, path)]
                    if parts:
                        texts[(op.namespace, op.key)] = "\n".join(parts)
            elif isinstance(op, SearchOp) and op.query and op.query not in queries:
                queries.append(op.query)
        return texts, queries

    def _run(
        self, ops: list[Op], texts: dict[Any, str], vectors: dict[Any, list[float]]
    ) -> list[Result]:
        results: list[Result] = [None] * len(ops)
        writes: dict[str, dict[tuple[tuple[str, ...], str], PutOp]] = defaultdict(dict)
        with self._backend("run a store batch"):
            for i, op in enumerate(ops):
                if isinstance(op, GetOp):
                    results[i] = self._get(op)
                elif isinstance(op, SearchOp):
                    results[i] = self._search(op, vectors.get(op.query) if op.query else None)
                elif isinstance(op, ListNamespacesOp):
                    results[i] = self._list(op)
                elif isinstance(op, PutOp):
                    writes[op.namespace[0]][(op.namespace, op.key)] = op  # last write wins
            for tenant, puts in writes.items():
                self._write(tenant, list(puts.values()), texts, vectors)
        return results

    def _tenant(self, tenant: str, *, create: bool = False) -> Any:
        """The tenant's collection handle; `None` if it does not exist and `create` is False."""
        tenants = self._collection.tenants
        if tenant not in self._known:
            if not tenants.exists(tenant):
                if not create:
                    return None
                try:
                    tenants.create(tenant)
                except UnexpectedStatusCodeError as error:
                    if not tenants.exists(tenant):  # else: created concurrently
                        raise MemoryBackendError(
                            f"cannot create tenant {tenant!r} in `{self.collection_name}` at "
                            f"{self._where} ({error}); call `store.setup()` once first"
                        ) from error
            self._known.add(tenant)
        return self._collection.with_tenant(tenant)

    def _get(self, op: GetOp) -> Item | None:
        col = self._tenant(op.namespace[0])
        if col is None:
            return None
        where = Filter.by_id().equal(object_uuid(op.namespace, op.key)) & self._alive()
        found = col.query.fetch_objects(filters=where, limit=1, return_properties=_ITEM_PROPS)
        if op.refresh_ttl:
            self._refresh(col, found.objects)
        return _item(op.namespace[0], found.objects[0]) if found.objects else None

    def _search(self, op: SearchOp, query_vector: list[float] | None) -> list[SearchItem]:
        tenant = op.namespace_prefix[0]
        col = self._tenant(tenant)
        if col is None or op.limit <= 0:
            return []
        where = self._alive()
        if rest := op.namespace_prefix[1:]:
            where &= Filter.by_property("ns_prefixes").contains_any([encode_namespace(rest)])
        want = op.offset + op.limit
        kept: list[_Hit]
        if query_vector is None:
            kept = [(o, None) for o in _take(_scan(col, where), op.filter, want)]
            kept = kept[op.offset :]
        else:
            kept = self._hybrid(col, op, query_vector, where, want)[op.offset :]
            if len(kept) < op.limit:  # then unembedded items, unscored, as InMemoryStore does
                plain = _scan(col, where & Filter.by_property("embedded").equal(False))
                kept += [(o, None) for o in _take(plain, op.filter, op.limit - len(kept))]
        if op.refresh_ttl:
            self._refresh(col, [o for o, _ in kept])
        items = [(_item(tenant, o), score) for o, score in kept]
        return [
            SearchItem(i.namespace, i.key, i.value, i.created_at, i.updated_at, s) for i, s in items
        ]

    def _hybrid(
        self, col: Any, op: SearchOp, vector: list[float], where: Any, want: int
    ) -> list[_Hit]:
        """The first `want` filtered hybrid hits, widening the server window until enough pass."""
        window = min(max(2 * want, 20), _MAX_WINDOW)
        while True:
            found = col.query.hybrid(
                query=op.query,
                vector=vector,
                alpha=self.alpha,
                target_vector=_VECTOR,
                query_properties=["text"],
                filters=where,
                limit=window,
                return_metadata=MetadataQuery(score=True),
                return_properties=_ITEM_PROPS,
            ).objects
            hits: list[_Hit] = [(o, o.metadata.score) for o in found if _passes(o, op.filter)]
            if len(hits) >= want or len(found) < window or window >= _MAX_WINDOW:
                return hits[:want]
            window = min(window * 4, _MAX_WINDOW)

    def _list(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        scope = list_scope(op)
        col = self._tenant(scope[0])
        if col is None:
            return []
        where = self._alive()
        if len(scope) > 1:
            where &= Filter.by_property("ns_prefixes").contains_any([encode_namespace(scope[1:])])
        objects = _scan(col, where, ["ns", "seq"])
        found = {(scope[0], *decode_namespace(o.properties.get("ns") or "")) for o in objects}
        conditions = op.match_conditions or ()
        found = {ns for ns in found if all(_does_match(c, ns) for c in conditions)}
        if op.max_depth is not None:
            found = {ns[: op.max_depth] for ns in found}
        return sorted(found)[op.offset : op.offset + op.limit]

    def _write(
        self, tenant: str, ops: list[PutOp], texts: dict[Any, str], vectors: dict[Any, list[float]]
    ) -> None:
        """Apply one tenant's deletes, then upsert the rest, `_CHUNK` objects per request."""
        deletes = [object_uuid(op.namespace, op.key) for op in ops if op.value is None]
        if deletes and (col := self._tenant(tenant)) is not None:
            for i in range(0, len(deletes), _CHUNK):
                col.data.delete_many(where=Filter.by_id().contains_any(deletes[i : i + _CHUNK]))
        upserts = [op for op in ops if op.value is not None]
        for i in range(0, len(upserts), _CHUNK):
            self._upsert(tenant, upserts[i : i + _CHUNK], texts, vectors)

    def _upsert(
        self, tenant: str, ops: list[PutOp], texts: dict[Any, str], vectors: dict[Any, list[float]]
    ) -> None:
        """Insert or replace objects, keeping the `created_at` of those that exist."""
        col = self._tenant(tenant, create=True)
        ids = [object_uuid(op.namespace, op.key) for op in ops]
        old = col.query.fetch_objects(
            filters=Filter.by_id().contains_any(ids),
            limit=len(ids),
            return_properties=["created_at"],
        ).objects
        created = {o.uuid: o.properties.get("created_at") for o in old}
        now = datetime.fromtimestamp(self._clock(), UTC)
        objects = []
        for op, oid in zip(ops, ids, strict=True):
            vector = self._vector(vectors.get((op.namespace, op.key)))
            # Unembedded items get no BM25 text either: hybrid hits are exactly the embedded ones.
            text = texts.get((op.namespace, op.key), "") if vector else ""
            props = _properties(op, oid, text, now)
            props.update(created_at=created.get(oid) or now, embedded=vector is not None)
            objects.append(DataObject(props, oid, {_VECTOR: vector} if vector else None))
        result = col.data.insert_many(objects)  # a batch with a known uuid replaces the object
        if result.has_errors:
            first = next(iter(result.errors.values())).message
            raise MemoryBackendError(
                f"Weaviate at {self._where} refused {len(result.errors)} of {len(objects)} writes "
                f"to tenant {tenant!r}: {first}"
            )

    def _vector(self, vector: list[float] | None) -> list[float] | None:
        """The vector to store; `None` for none or all zeros (no direction for cosine)."""
        if vector is None or not any(vector):
            return None
        dims = (self.index_config or {}).get("dims")
        if dims and len(vector) != dims:
            raise ValueError(f"embedder returned {len(vector)}-dim vectors; index `dims` is {dims}")
        return [float(x) for x in vector]

    def _alive(self) -> Any:
        return Filter.by_property("expires_at").greater_than(self._clock())

    def _refresh(self, col: Any, objects: Sequence[Any]) -> None:
        """Push back the expiry of read items that have a TTL (LangGraph's refresh-on-read)."""
        for obj in objects:
            if (ttl := obj.properties.get("ttl_minutes") or 0.0) > 0:
                expires = self._clock() + ttl * 60
                col.data.update(uuid=obj.uuid, properties={"expires_at": expires})

    @contextmanager
    def _backend(self, doing: str) -> Iterator[None]:
        """Turn client errors into a `MemoryBackendError` naming the server and a fix."""
        try:
            yield
        except WeaviateBaseError as error:  # the store builds every request: a server problem
            raise MemoryBackendError(
                f"Weaviate at {self._where} failed to {doing} ({error}); {_HINT}"
            ) from error
