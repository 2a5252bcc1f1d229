"""A LangGraph `BaseStore` on Redis hashes and RediSearch: exact namespace-prefix tags, HNSW."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
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
    tokenize_path,
    validate_op_namespace,
)

# InMemoryStore's own filter and namespace-match semantics, reused so both stores agree exactly.
from langgraph.store.memory import _compare_values, _does_match
from redis.commands.search.aggregation import AggregateRequest
from redis.commands.search.query import Query

from memory.commitlog import MemoryBackendError
from observability.endpoints import redis_client, safe_url

__all__ = ["RedisMemoryStore", "namespace_digests"]

_TIMEOUT_S = 10.0
"""Socket timeout of a client opened from a URL: a dead server fails instead of hanging."""

_SEP = "\x1f"  # joins namespace labels in the `ns` field; refused inside labels
_PAGE = 500  # documents per FT.SEARCH page when a filter is applied here
_RETURN = ("ns", "key", "value", "created_at", "updated_at", "ttl")
_NO_SLIDING_TTL: TTLConfig = {"refresh_on_read": False}  # retention, not reads, sets expiry
_HINT = (
    "is Redis running there? Check BASTION_REDIS_URL (or unset it to use the embedded store); "
    "the store needs the search module (Redis 8 or Redis Stack) and `store.setup()` once"
)


def _digest(labels: Sequence[str]) -> str:
    return hashlib.sha1(_SEP.join(labels).encode()).hexdigest()[:16]


def namespace_digests(namespace: Sequence[str]) -> list[str]:
    """Tags of every non-empty prefix of `namespace`: a prefix search is one exact TAG match."""
    return [_digest(namespace[:n]) for n in range(1, len(namespace) + 1)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _time(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def _item(fields: Mapping[str, Any], score: float | None = None, *, scored: bool = False) -> Item:
    """An `Item` (a `SearchItem` when `scored`) from a hash's or a search hit's fields."""
    parts: dict[str, Any] = {
        "namespace": tuple(_text(fields["ns"]).split(_SEP)),
        "key": _text(fields["key"]),
        "value": json.loads(fields["value"]),
        "created_at": _time(fields["created_at"]),
        "updated_at": _time(fields["updated_at"]),
    }
    return SearchItem(**parts, score=score) if scored else Item(**parts)


def _passes(fields: Mapping[str, Any], op: SearchOp) -> bool:
    """Inside the prefix (guards against a digest collision) and through the value filter."""
    prefix = op.namespace_prefix
    if tuple(_text(fields["ns"]).split(_SEP))[: len(prefix)] != prefix:
        return False
    value = json.loads(fields["value"]) if op.filter else {}
    return all(_compare_values(value.get(k), v) for k, v in (op.filter or {}).items())


def _checked(ops: Iterable[Op]) -> list[Op]:
    """The ops, with valid labels; no stored label holds `_SEP`, so `ns` splits back exactly."""
    checked = list(ops)
    for op in checked:
        if not isinstance(op, GetOp | SearchOp | ListNamespacesOp | PutOp):
            raise ValueError(f"unknown store operation {type(op).__name__}")
        validate_op_namespace(op)
        if isinstance(op, PutOp) and (bad := [label for label in op.namespace if _SEP in label]):
            raise InvalidNamespaceError(
                f"namespace label {bad[0]!r} contains the unit separator `\\x1f`, which "
                "RedisMemoryStore uses to join labels; remove it from the label"
            )
    return checked


class RedisMemoryStore(BaseStore):
    """A LangGraph `BaseStore` of Redis hashes, searched with RediSearch (DIALECT 2).

    An item is the hash `{prefix}:item:{sha1([namespace, key])}`, so a get is one HGETALL.
    Its `nsp` TAG holds a digest of every namespace prefix: a prefix search is an exact tag
    match, so `("acme",)` never matches `("acme-1",)` and no label needs escaping. With an
    `index`, the item's indexed fields (joined by newlines: one vector per item, unlike
    InMemoryStore's one per field) are embedded into an HNSW cosine index; a query returns
    the nearest items scored by cosine similarity, then unembedded ones unscored. Value
    filters run here with InMemoryStore's semantics, oversampling the KNN. Searches without
    a query return the newest first. Redis is not tenant-partitioned: the tenant wall is the
    namespace prefix every read carries. TTLs (minutes) are Redis key expiries; by default
    reads do not extend them. The index name derives from `prefix`, so stores with different
    prefixes never see each other's items.
    """

    supports_ttl = True

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        *,
        prefix: str = "bastion:mem",
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = _NO_SLIDING_TTL,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 100,
        hnsw_ef_runtime: int = 64,
        oversample: int = 4,
    ) -> None:
        """Wrap a client (or connect to a URL); call `setup()` once to create the index.

        Args:
            client_or_url: A redis-py client (the caller closes it) or a `redis://` URL.
            prefix: Key prefix; names the search index too. Must not contain an `item` part.
            index: `dims`, `embed` (LangChain `Embeddings` or a function) and `fields`.
            ttl: LangGraph TTL settings (`default_ttl`, `refresh_on_read`); `None` means
                LangGraph's defaults (reads extend TTLs).
            hnsw_m: HNSW graph degree (`M`).
            hnsw_ef_construction: HNSW candidate list size while indexing.
            hnsw_ef_runtime: HNSW candidate list size while searching (at least `k` is used).
            oversample: KNN candidates per wanted hit when a value filter is given.
        """
        if not prefix or "item" in prefix.split(":"):
            raise ValueError(f"`prefix` {prefix!r} must be non-empty and have no `item` part")
        if oversample < 1:
            raise ValueError(f"`oversample` must be at least 1, got {oversample!r}")
        self._owned = isinstance(client_or_url, str)
        self.client = redis_client(client_or_url, _TIMEOUT_S)
        self._where = safe_url(client_or_url)
        self.prefix = prefix
        self.index_name = f"{prefix}:idx"
        self.ttl_config = ttl.copy() if ttl is not None else None
        self.index_config = dict(index) if index else None
        self.embeddings = ensure_embeddings(index.get("embed")) if index else None
        self.dims = int(index["dims"]) if index else None
        self._fields = self._paths((index or {}).get("fields") or ["$"])
        self._hnsw = ["M", hnsw_m, "EF_CONSTRUCTION", hnsw_ef_construction]
        self._hnsw += ["EF_RUNTIME", hnsw_ef_runtime]
        self.oversample = oversample

    def close(self) -> None:
        """Close the client if this store opened it from a URL."""
        if self._owned:
            self.client.close()

    def setup(self) -> None:
        """Create the search index if it is missing (idempotent, race-safe); check its dims."""
        schema: list[Any] = ["nsp", "TAG", "SEPARATOR", ",", "tenant", "TAG"]
        schema += ["updated_at", "NUMERIC", "SORTABLE", "emb", "TAG"]
        if self.dims:
            params = ["TYPE", "FLOAT32", "DIM", self.dims, "DISTANCE_METRIC", "COSINE", *self._hnsw]
            schema += ["vec", "VECTOR", "HNSW", len(params), *params]
        with self._backend("create the search index"):
            names = {_text(n) for n in self.client.execute_command("FT._LIST")}
            if self.index_name not in names:
                try:
                    self.client.execute_command(
                        "FT.CREATE", self.index_name, "ON", "HASH", "PREFIX", 1,
                        f"{self.prefix}:item:", "SCHEMA", *schema,
                    )  # fmt: skip
                except redis.ResponseError as error:
                    if "already exists" not in str(error).lower():  # else: another process won
                        raise
            attributes = self.client.ft(self.index_name).info().get("attributes", [])
        vec: list[Any] = next((a for a in attributes if _text(a[1]) == "vec"), [])
        dim = dict(zip(map(_text, vec[::2]), vec[1::2], strict=False)).get("dim")
        if self.dims and (dim is None or int(dim) != self.dims):
            raise MemoryBackendError(
                f"search index `{self.index_name}` at {self._where} has vector dims {dim!r}, "
                f"the embedder makes {self.dims}; use another `prefix` for this embedder"
            )

    def item_key(self, namespace: Sequence[str], key: str) -> str:
        """The Redis key of the item `(namespace, key)`."""
        name = json.dumps([list(namespace), key], ensure_ascii=False)
        return f"{self.prefix}:item:{hashlib.sha1(name.encode()).hexdigest()}"

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ops in order; reads see the state before this batch's writes (as InMemoryStore)."""
        checked = _checked(ops)
        puts = {(op.namespace, op.key): op for op in checked if isinstance(op, PutOp)}
        vectors = self._embed_puts(list(puts.values()))
        queries: dict[str, bytes | None] = {}
        if self.embeddings is not None:
            asked = {op.query for op in checked if isinstance(op, SearchOp) and op.query}
            queries = {q: self._vector(self.embeddings.embed_query(q)) for q in asked}
        with self._backend("run a store batch"):
            results = self._read(checked, queries)
            if puts:
                self._write(list(puts.values()), vectors)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """`batch` in the event loop's default thread pool."""
        return await asyncio.get_running_loop().run_in_executor(None, self.batch, list(ops))

    @staticmethod
    def _paths(fields: Sequence[str]) -> list[str | list[str]]:
        return [f if f == "$" else tokenize_path(f) for f in fields]

    def _embed_puts(self, puts: list[PutOp]) -> dict[tuple[tuple[str, ...], str], bytes | None]:
        """Vector bytes per written item (`None`: not embedded), in one `embed_documents` call."""
        texts: dict[tuple[tuple[str, ...], str], str] = {}
        for op in puts if self.embeddings is not None else ():
            if op.value is not None and op.index is not False:
                paths = self._fields if op.index is None else self._paths(op.index)
                parts = [t for path in paths for t in get_text_at_path(op.value, path)]
                if parts:
                    texts[(op.namespace, op.key)] = "\n".join(parts)
        if not texts or self.embeddings is None:
            return {}
        found = self.embeddings.embed_documents(list(texts.values()))
        return {where: self._vector(v) for where, v in zip(texts, found, strict=True)}

    def _vector(self, vector: Sequence[float]) -> bytes | None:
        """float32 bytes of a vector; `None` for all zeros (no direction for cosine)."""
        if len(vector) != self.dims:
            raise ValueError(f"embedder returned {len(vector)}-dim vectors; index `dims` is "
                             f"{self.dims}: set `dims` to the embedder's size")  # fmt: skip
        array = np.asarray(vector, dtype=np.float32)
        return array.tobytes() if array.any() else None

    def _read(self, ops: list[Op], queries: Mapping[str, bytes | None]) -> list[Result]:
        results: list[Result] = [None] * len(ops)
        gets = [(i, op) for i, op in enumerate(ops) if isinstance(op, GetOp)]
        refresh: list[tuple[str, Any]] = []
        if gets:
            pipe = self.client.pipeline(transaction=False)
            for _, get in gets:
                pipe.hgetall(self.item_key(get.namespace, get.key))
            for (i, get), raw in zip(gets, pipe.execute(), strict=True):
                fields = {_text(k): v for k, v in raw.items() if k not in (b"vec", "vec")}
                results[i] = _item(fields) if "value" in fields else None
                if results[i] is not None and get.refresh_ttl:
                    refresh.append((self.item_key(get.namespace, get.key), fields.get("ttl")))
        for i, op in enumerate(ops):
            if isinstance(op, SearchOp):
                hits = self._search(op, queries.get(op.query) if op.query else None)
                results[i] = [_item(fields, score, scored=True) for fields, score in hits]
                if op.refresh_ttl:
                    refresh += [(fields["id"], fields.get("ttl")) for fields, _ in hits]
            elif isinstance(op, ListNamespacesOp):
                results[i] = self._list(op)
        self._refresh(refresh)
        return results

    def _refresh(self, items: list[tuple[str, Any]]) -> None:
        """Push back the expiry of read items that have a TTL (LangGraph's refresh-on-read)."""
        pipe = self.client.pipeline(transaction=False)
        for key, ttl in items:
            if ttl and float(ttl) > 0:
                pipe.pexpire(key, max(1, int(float(ttl) * 60_000)))
        pipe.execute()

    def _where_clause(self, prefix: Sequence[str], extra: str = "") -> str:
        clause = f"@nsp:{{{_digest(prefix)}}}" if prefix else ""
        return f"{clause} {extra}".strip() or "*"

    def _find(
        self, query: str, start: int, num: int, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """One FT.SEARCH page: fields of each hit (vector hits by distance, else newest first)."""
        extra, (order, asc) = (("dist",), ("dist", True)) if params else ((), ("updated_at", False))
        q = Query(query).paging(start, num).dialect(2).return_fields(*_RETURN, *extra)
        q = q.sort_by(order, asc=asc)
        docs = self.client.ft(self.index_name).search(q, query_params=dict(params or {})).docs
        return [vars(d) for d in docs if hasattr(d, "value")]  # a key may expire mid-query

    def _search(self, op: SearchOp, vector: bytes | None) -> list[tuple[dict[str, Any], Any]]:
        if op.limit <= 0:
            return []
        where = self._where_clause(op.namespace_prefix)
        if vector is None:
            return [(f, None) for f in self._scan(where, op, op.offset, op.limit)]
        want = op.offset + op.limit
        k = want * (self.oversample if op.filter else 1)
        knn = f"({where})=>[KNN $K @vec $B AS dist]"
        while True:  # widen the KNN until enough hits pass the filter or none are left
            found = self._find(knn, 0, k, {"K": k, "B": vector})
            hits = [(f, 1.0 - float(f["dist"])) for f in found if _passes(f, op)]
            if len(hits) >= want or len(found) < k:
                break
            k *= 4
        kept: list[tuple[dict[str, Any], Any]] = list(hits[op.offset : want])
        if len(kept) < op.limit:  # then unembedded items, unscored, as InMemoryStore does
            plain = self._where_clause(op.namespace_prefix, "@emb:{0}")
            skip = max(0, op.offset - len(hits))
            kept += [(f, None) for f in self._scan(plain, op, skip, op.limit - len(kept))]
        return kept

    def _scan(self, query: str, op: SearchOp, skip: int, count: int) -> list[dict[str, Any]]:
        """Hits `skip` to `skip + count` of `query` that pass `op`'s filter, newest first."""
        if not op.filter:
            return [f for f in self._find(query, skip, count) if _passes(f, op)]
        kept: list[dict[str, Any]] = []
        start, page = 0, max(_PAGE, 2 * (skip + count))
        while len(kept) < skip + count:
            found = self._find(query, start, page)
            kept += [f for f in found if _passes(f, op)]
            if len(found) < page:
                break
            start += page
        return kept[skip : skip + count]

    def _list(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        scope: tuple[str, ...] = ()
        for condition in op.match_conditions or ():
            path = tuple(condition.path)
            if condition.match_type == "prefix":
                scope = path[: path.index("*")] if "*" in path else path
                break
        request = AggregateRequest(self._where_clause(scope)).load("@ns").group_by("@ns")
        result = self.client.ft(self.index_name).aggregate(request.cursor(count=1000).dialect(2))
        found: set[tuple[str, ...]] = set()
        while True:
            found |= {tuple(_text(row[1]).split(_SEP)) for row in result.rows}
            if not result.cursor or not result.cursor.cid:
                break
            result = self.client.ft(self.index_name).aggregate(result.cursor)
        conditions = op.match_conditions or ()
        found = {ns for ns in found if all(_does_match(c, ns) for c in conditions)}
        if op.max_depth is not None:
            found = {ns[: op.max_depth] for ns in found}
        return sorted(found)[op.offset : op.offset + op.limit]

    def _write(self, ops: list[PutOp], vectors: Mapping[Any, bytes | None]) -> None:
        """Apply the batch's last write per item in one MULTI/EXEC transaction."""
        now = time.time()
        pipe = self.client.pipeline(transaction=True)
        for op in ops:
            key = self.item_key(op.namespace, op.key)
            if op.value is None:
                pipe.delete(key)
                continue
            try:
                value = json.dumps(dict(op.value), ensure_ascii=False)
            except TypeError as error:
                raise ValueError(
                    f"value of {op.namespace!r} / {op.key!r} is not JSON: {error}"
                ) from None
            vector = vectors.get((op.namespace, op.key))
            fields: dict[Any, Any] = {
                "ns": _SEP.join(op.namespace), "key": op.key, "value": value,
                "updated_at": now, "nsp": ",".join(namespace_digests(op.namespace)),
                "tenant": op.namespace[0], "emb": 0 if vector is None else 1,
                "ttl": op.ttl or 0,
            }  # fmt: skip
            if vector is not None:
                fields["vec"] = vector
            # created_at first: after HSET it re-indexes the vector (HNSW delete + insert).
            pipe.hsetnx(key, "created_at", now)
            pipe.hset(key, mapping=fields)
            if vector is None:
                pipe.hdel(key, "vec")
            if op.ttl:
                pipe.pexpire(key, max(1, int(op.ttl * 60_000)))
            else:
                pipe.persist(key)
        pipe.execute()

    @contextmanager
    def _backend(self, doing: str) -> Iterator[None]:
        """Turn client errors into a `MemoryBackendError` naming the server and a fix."""
        try:
            yield
        except redis.RedisError as error:
            raise MemoryBackendError(
                f"Redis at {self._where} failed to {doing} ({error}); {_HINT}"
            ) from error
