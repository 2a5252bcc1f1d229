"""IndexedStore: a per-tenant HNSW index over a LangGraph store, vs InMemoryStore and numpy."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from langgraph.store.base import BaseStore, IndexConfig, PutOp, SearchItem
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore

from memory.indexed_store import HnswParams, IndexedStore, IndexedStoreConfigError

DIMS = 32


class TableEmbedder(Embeddings):
    """A fixed random unit vector per text (crc32-seeded), or a row of `table` for `#<row>`."""

    def __init__(self, table: np.ndarray | None = None) -> None:
        self.table = table
        self.calls = 0

    def _one(self, text: str) -> np.ndarray:
        if self.table is not None and text.startswith("#"):
            return self.table[int(text[1:])]
        return np.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIMS)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [self._one(text).tolist() for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._one(text).tolist()


class ArrayEmbedder(TableEmbedder):
    """The same vectors through the `embed_array` fast path."""

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.array([self._one(text) for text in texts])


def _config(embedder: Embeddings, fields: list[str] | None = None) -> IndexConfig:
    return {"dims": DIMS, "embed": embedder, "fields": fields or ["text"]}


def _sqlite(path: Path) -> SqliteStore:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    store = SqliteStore(conn)
    store.setup()
    return store


def _keys(hits: list[SearchItem]) -> list[str]:
    return [hit.key for hit in hits]


def _clustered(count: int, seed: int = 3) -> np.ndarray:
    """Unit vectors around 20 centres (like real embeddings, unlike uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIMS))
    rows = centres[rng.integers(0, 20, count)] + 0.5 * rng.standard_normal((count, DIMS))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def sqlite_inner(tmp_path: Path) -> Iterator[SqliteStore]:
    store = _sqlite(tmp_path / "store.sqlite")
    yield store
    store.conn.close()


WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "kappa", "mu"]


def _fill(stores: Sequence[BaseStore], count: int = 120) -> None:
    """The same puts into each store: nested namespaces, list fields, unembedded items."""
    rng = np.random.default_rng(7)
    for n in range(count):
        namespace = ("acme", "memory", str(rng.choice(["prefs", "facts", "notes"])))
        value: dict[str, Any] = {
            "text": " ".join([*rng.choice(WORDS, 3), str(n)]),
            # Distinct texts: InMemoryStore fails on a text repeated within a put (see report),
            # and equal texts in two items tie, which the stores break in different orders.
            "tags": [f"tag {t} {n}" for t in rng.choice(WORDS, int(rng.integers(0, 3)), False)],
            "kind": str(rng.choice(["a", "b"])),
            "n": int(n % 9),
        }
        index: bool | list[str] | None = False if n % 17 == 0 else None
        for store in stores:
            store.put(namespace, f"k{n}", value, index=index)


@pytest.mark.parametrize("embedder", [TableEmbedder, ArrayEmbedder])
@pytest.mark.parametrize(
    ("prefix", "search"),
    [
        (("acme",), {}),
        (("acme", "memory"), {"limit": 5, "offset": 4}),
        (("acme", "memory", "facts"), {"limit": 50}),
        (("acme",), {"filter": {"kind": "b"}}),
        (("acme",), {"filter": {"n": {"$gte": 6}}, "limit": 7}),
        (("acme", "memory", "notes"), {"filter": {"kind": "a", "n": {"$lt": 4}}, "limit": 30}),
    ],
)
def test_exact_partitions_rank_like_in_memory_store(
    embedder: type[TableEmbedder], prefix: tuple[str, ...], search: dict[str, Any]
) -> None:
    fields = ["text", "tags[*]"]  # several vectors per item: max pooling must agree too
    reference = InMemoryStore(index=_config(embedder(), fields))
    store = IndexedStore(InMemoryStore(), index=_config(embedder(), fields))
    _fill([reference, store])
    for query in ("alpha beta", "kappa", "mu mu zeta"):
        want = reference.search(prefix, query=query, **search)
        got = store.search(prefix, query=query, **search)
        assert _keys(got) == _keys(want)
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
        assert [h.value for h in got] == [h.value for h in want]


def test_hnsw_partition_recall_at_10_against_brute_force() -> None:
    docs = _clustered(5000)
    rng = np.random.default_rng(11)
    # cos(query, its source item) ≈ 0.75: a paraphrase, not a copy and not noise
    queries = docs[rng.integers(0, 5000, 100)] + 0.15 * rng.standard_normal((100, DIMS))
    table = np.vstack([docs, queries])  # queries are `#5000`, `#5001`, ...
    store = IndexedStore(InMemoryStore(), index=_config(ArrayEmbedder(table)), exact_below=256)
    store.batch(PutOp(("acme", "docs"), str(row), {"text": f"#{row}"}) for row in range(5000))
    assert store.stats("acme") == {"items": 5000, "vectors": 5000, "graph": True, "tombstones": 0}
    hits = 0
    for n, query in enumerate(queries):
        truth = set(np.argsort(-(docs @ query))[:10].tolist())
        found = store.search(("acme",), query=f"#{5000 + n}", limit=10)
        hits += len({int(hit.key) for hit in found} & truth)
    assert hits / 1000 >= 0.95


@pytest.mark.parametrize("exact_below", [0, 10_000], ids=["hnsw", "exact"])
def test_updates_and_deletes_show_in_search(sqlite_inner: SqliteStore, exact_below: int) -> None:
    store = IndexedStore(sqlite_inner, index=_config(TableEmbedder()), exact_below=exact_below)
    for n in range(40):
        store.put(("acme", "notes"), f"k{n}", {"text": f"note {n}"})
    assert _keys(store.search(("acme",), query="note 7", limit=1)) == ["k7"]
    store.put(("acme", "notes"), "k7", {"text": "completely different"})
    assert "k7" not in _keys(store.search(("acme",), query="note 7", limit=3))
    assert _keys(store.search(("acme",), query="completely different", limit=1)) == ["k7"]
    store.delete(("acme", "notes"), "k7")
    assert "k7" not in _keys(store.search(("acme",), query="completely different", limit=40))
    assert store.stats("acme")["items"] == 39


def test_unindexed_puts_are_gettable_but_not_found_by_query() -> None:
    store = IndexedStore(InMemoryStore(), index=_config(TableEmbedder()), exact_below=0)
    store.put(("acme", "m"), "seen", {"text": "the launch plan"})
    store.put(("acme", "m"), "hidden", {"text": "the launch plan v2"}, index=False)
    store.put(("acme", "m"), "was", {"text": "an old plan"})
    store.put(("acme", "m"), "was", {"text": "an old plan"}, index=False)  # drops its vector
    assert store.get(("acme", "m"), "hidden").value == {"text": "the launch plan v2"}
    hits = store.search(("acme",), query="the launch plan v2", limit=1)
    assert _keys(hits) == ["seen"]
    assert store.stats("acme")["items"] == 1
    # Asked for more than is embedded, unembedded matches follow unscored (as InMemoryStore).
    everything = store.search(("acme",), query="the launch plan", limit=10)
    assert (everything[0].key, everything[0].score is None) == ("seen", False)
    assert {h.key for h in everything if h.score is None} == {"hidden", "was"}


@pytest.mark.parametrize("exact_below", [0, 10_000], ids=["hnsw", "exact"])
def test_a_tenant_never_sees_another_with_identical_vectors(exact_below: int) -> None:
    store = IndexedStore(InMemoryStore(), index=_config(TableEmbedder()), exact_below=exact_below)
    for tenant in ("acme", "globex"):
        store.batch(PutOp((tenant, "memory"), f"k{n}", {"text": f"fact {n}"}) for n in range(300))
    found_itself = 0
    for n in range(300):
        hits = store.search(("acme",), query=f"fact {n}", limit=20)
        assert {hit.namespace[0] for hit in hits} == {"acme"}
        found_itself += hits[0].key == f"k{n}"
    # HNSW may miss an exact duplicate now and then (a node the graph search never reaches).
    assert found_itself >= (300 if exact_below else 285)
    both = store.search((), query="fact 3", limit=2)  # no prefix: every tenant, merged
    assert sorted(hit.namespace[0] for hit in both) == ["acme", "globex"]


def test_filters_and_sub_prefixes_fall_back_to_exact_when_ann_runs_dry() -> None:
    table = _clustered(3000, seed=5)
    docs = [
        PutOp(("acme", "memory", "rare" if row % 500 == 0 else "common"), str(row), value)
        for row in range(3000)
        for value in [{"text": f"#{row}", "flag": row % 250 == 0}]
    ]
    hnsw = IndexedStore(InMemoryStore(), index=_config(ArrayEmbedder(table)), exact_below=100)
    exact = IndexedStore(InMemoryStore(), index=_config(ArrayEmbedder(table)), exact_below=10**6)
    for store in (hnsw, exact):
        store.batch(docs)
    query = "#1"  # its neighbours are common items: ANN candidates hold almost no rare ones
    for prefix, flt, count in [
        (("acme", "memory", "rare"), None, 6),
        (("acme",), {"flag": True}, 10),
    ]:
        want = exact.search(prefix, query=query, filter=flt, limit=10)
        got = hnsw.search(prefix, query=query, filter=flt, limit=10)
        assert len(want) == count
        assert _keys(got) == _keys(want)


def test_reopening_rebuilds_from_the_inner_store(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    first_inner = _sqlite(path)
    # Exact search on both sides, so equal results mean an equal index (HNSW builds differ).
    first = IndexedStore(first_inner, index=_config(TableEmbedder()), exact_below=10_000)
    first.batch(PutOp(("acme", "memory"), f"k{n}", {"text": f"item {n}"}) for n in range(400))
    first.put(("acme", "history"), "k1@c1", {"text": "item 1"}, index=False)
    before = [_keys(first.search(("acme",), query=f"item {n}")) for n in range(0, 400, 40)]
    first_inner.conn.close()

    embedder = TableEmbedder()
    reopened_inner = _sqlite(path)
    reopened = IndexedStore(
        reopened_inner,
        index=_config(embedder),
        exact_below=10_000,
        rebuild_fields=lambda item: False if item.namespace[1] == "history" else None,
    )
    assert reopened.warm("acme") == 400  # the unembedded history copy stays unembedded
    assert embedder.calls > 0
    after = [_keys(reopened.search(("acme",), query=f"item {n}")) for n in range(0, 400, 40)]
    assert after == before
    reopened_inner.conn.close()


def test_refresh_picks_up_writes_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    inners = [_sqlite(path), _sqlite(path)]  # two connections, as two processes would have
    ours, theirs = (IndexedStore(inner, index=_config(TableEmbedder())) for inner in inners)
    ours.put(("acme", "m"), "old", {"text": "the old plan"})
    theirs.put(("acme", "m"), "new", {"text": "the new plan"})
    theirs.delete(("acme", "m"), "old")
    # Not in our index (documented): found only as an unscored filler, like unembedded items.
    (hit,) = ours.search(("acme",), query="the new plan")
    assert (hit.key, hit.score) == ("new", None)
    assert ours.stats("acme")["items"] == 1  # still the deleted item's vector
    ours.refresh([(("acme", "m"), "new"), (("acme", "m"), "old")])
    (hit,) = ours.search(("acme",), query="the new plan")
    assert (hit.key, hit.score) == ("new", pytest.approx(1.0, abs=1e-5))
    assert ours.stats("acme")["items"] == 1
    for inner in inners:
        inner.conn.close()


def test_concurrent_writers_and_readers_keep_the_index_consistent() -> None:
    store = IndexedStore(InMemoryStore(), index=_config(ArrayEmbedder()), exact_below=16)
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        start.wait()
        for n in range(60):
            store.put(("acme", "w"), f"{worker}-{n % 20}", {"text": f"w{worker} v{n}"})

    def reader() -> None:
        start.wait()
        for n in range(60):
            store.search(("acme",), query=f"w1 v{n}", limit=5)

    def guarded(target: Any, *args: Any) -> None:
        try:
            target(*args)
        except BaseException as error:  # reported below, with the thread's traceback
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(writer, w)) for w in range(3)]
    threads += [threading.Thread(target=guarded, args=(reader,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.stats("acme")["items"] == 60
    top = 0
    for key in (f"{worker}-{slot}" for worker in range(3) for slot in range(20)):
        text = store.get(("acme", "w"), key).value["text"]
        # Each key holds the vector of its last stored text (score 1), not an earlier one...
        (hit,) = store.search(("acme",), query=text, filter={"text": text}, limit=1)
        assert (hit.key, hit.score) == (key, pytest.approx(1.0, abs=1e-5))
        top += store.search(("acme",), query=text, limit=1)[0].key == key
    assert top >= 54  # ...and the graph reaches (nearly) all of them


def test_async_api_runs_over_a_sync_only_sqlite_store(sqlite_inner: SqliteStore) -> None:
    store = IndexedStore(sqlite_inner, index=_config(TableEmbedder()))

    async def scenario() -> list[SearchItem]:
        await store.aput(("acme", "m"), "a", {"text": "async write"})
        return await store.asearch(("acme",), query="async write", limit=1)

    assert _keys(asyncio.run(scenario())) == ["a"]


def test_heavy_churn_rebuilds_the_graph() -> None:
    store = IndexedStore(InMemoryStore(), index=_config(ArrayEmbedder()), exact_below=32)
    for rewrite in range(3):
        store.batch(PutOp(("acme", "m"), f"k{n}", {"text": f"{rewrite}:{n}"}) for n in range(200))
    stats = store.stats("acme")
    assert stats["items"] == 200 and stats["graph"] is True
    assert stats["tombstones"] == 0  # rebuilt once removals passed half the live count
    found = sum(
        _keys(store.search(("acme",), query=f"2:{n}", limit=1)) == [f"k{n}"] for n in range(200)
    )
    assert found >= 190  # the rebuilt graph finds (nearly) every current text


def test_configuration_mistakes_are_named() -> None:
    with pytest.raises(IndexedStoreConfigError, match="has an index of its own"):
        IndexedStore(InMemoryStore(index=_config(TableEmbedder())), index=_config(TableEmbedder()))
    with pytest.raises(IndexedStoreConfigError, match="`dims`"):
        IndexedStore(InMemoryStore(), index={"embed": TableEmbedder()})
    store = IndexedStore(InMemoryStore(), index={"dims": DIMS + 1, "embed": TableEmbedder()})
    with pytest.raises(IndexedStoreConfigError, match="33"):
        store.put(("acme", "m"), "k", {"text": "x"})
    store = IndexedStore(InMemoryStore(), index=_config(TableEmbedder()))
    store.put(("acme", "m"), "k", {"text": "x"})
    store.put(("acme", "m"), "n", {"text": "y", "n": 5})
    with pytest.raises(IndexedStoreConfigError, match=r"\$near"):
        store.search(("acme",), query="x", filter={"n": {"$near": 1}})
    hits = store.search(("acme",), query="x", filter={"n": {"$gt": 1}}, limit=1)
    assert _keys(hits) == ["n"]  # `k` has no `n`: no match (InMemoryStore would raise)
    assert HnswParams().expansion_search > 0
