"""The BaseStore behaviour suite every memory store backend passes, and the seeds it writes."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.store.base import BaseStore, IndexConfig, PutOp

from memory.embeddings import HashingEmbedder

INDEX: IndexConfig = {"dims": 64, "embed": HashingEmbedder(dims=64), "fields": ["text"]}
FACTS = ("acme", "facts")
NOTES = ("acme", "memory", "customer-7")
BULK = ("acme", "bulk")
BULK_SIZE = 620  # past one 500-document server page (Redis filters page by page)


def keys(items: list[Any]) -> set[str]:
    """The keys of `items` (search results), as a set."""
    return {item.key for item in items}


def bulk_key(n: int) -> str:
    """The key `seed_bulk` gives item `n`."""
    return f"k{n:04d}"


def seed_prefix_tree(store: BaseStore) -> None:
    """Keys 1-5 at namespaces that share label prefixes (`a` vs `ab`, `a` vs `a/deep`)."""
    store.put(("acme", "memory", "a"), "1", {"text": "one"})
    store.put(("acme", "memory", "ab"), "2", {"text": "two"})
    store.put(("acme", "memory", "a", "deep"), "3", {"text": "three"})
    store.put(("acme", "history"), "4", {"text": "four"})
    store.put(("acme",), "5", {"text": "root"})


def seed_facts(store: BaseStore) -> None:
    """Twelve facts `k0`..`k11` in `FACTS`, each with its number `n` and parity `odd`."""
    store.batch(
        [PutOp(FACTS, f"k{n}", {"text": f"fact {n}", "n": n, "odd": n % 2}) for n in range(12)]
    )


def seed_notes(store: BaseStore) -> None:
    """Three customer notes in `NOTES` on unrelated topics: contact, billing, shipping."""
    store.put(NOTES, "contact", {"text": "customer prefers email contact in the morning"})
    store.put(NOTES, "billing", {"text": "invoice overdue payment reminder sent"})
    store.put(NOTES, "shipping", {"text": "shipping address changed to the warehouse"})


def seed_bulk(store: BaseStore) -> None:
    """`BULK_SIZE` items in `BULK`, each with `n`; `edge` is true for the first and last 20."""
    store.batch(
        [
            PutOp(BULK, bulk_key(n), {"text": f"item {n}", "n": n, "edge": not 20 <= n < 600})
            for n in range(BULK_SIZE)
        ]
    )


# Each backend's test module star-imports the tests below next to its own `store` fixture
# (parametrised over InMemoryStore, which keeps the suite honest, and the backend), so pytest
# collects them there. Stricter expectations of one backend stay in its own module, reusing the
# `seed_*` helpers above.


def test_put_get_update_delete(store: BaseStore) -> None:
    ns = ("acme", "memory", "u1")
    assert store.get(ns, "pref") is None
    store.put(ns, "pref", {"text": "likes email", "n": 1})
    got = store.get(ns, "pref")
    assert got is not None and got.value == {"text": "likes email", "n": 1}
    assert got.namespace == ns and got.key == "pref" and got.created_at <= got.updated_at
    store.put(ns, "pref", {"text": "likes phone", "n": 2})
    again = store.get(ns, "pref")
    assert again is not None and again.value["text"] == "likes phone"
    store.delete(ns, "pref")
    assert store.get(ns, "pref") is None
    assert store.search(("acme",)) == []


def test_search_by_prefix_follows_label_boundaries(store: BaseStore) -> None:
    seed_prefix_tree(store)
    assert keys(store.search(("acme",), limit=50)) == {"1", "2", "3", "4", "5"}
    assert keys(store.search(("acme", "memory"), limit=50)) == {"1", "2", "3"}
    assert keys(store.search(("acme", "memory", "a"), limit=50)) == {"1", "3"}
    assert keys(store.search(("acme", "memory", "a", "deep"))) == {"3"}
    assert store.search(("acme", "nothing")) == []


def test_filters_apply_before_limit_and_offset(store: BaseStore) -> None:
    seed_facts(store)
    big = store.search(FACTS, filter={"n": {"$gte": 3}}, limit=100)
    assert keys(big) == {f"k{n}" for n in range(3, 12)}
    pages = [store.search(FACTS, filter={"n": {"$gte": 3}}, limit=4, offset=o) for o in (0, 4, 8)]
    assert [len(p) for p in pages] == [4, 4, 1]
    assert set().union(*(keys(p) for p in pages)) == keys(big)
    assert keys(store.search(FACTS, filter={"odd": 1, "n": {"$lt": 6}})) == {"k1", "k3", "k5"}
    ne_zero = store.search(FACTS, filter={"n": {"$ne": 0}}, limit=100)
    assert keys(ne_zero) == keys(big) | {"k1", "k2"}
    ranked = store.search(FACTS, query="fact", filter={"odd": 0}, limit=3, offset=1)
    assert len(ranked) == 3 and all(item.value["odd"] == 0 for item in ranked)


def test_a_query_ranks_the_matching_item_first(store: BaseStore) -> None:
    seed_notes(store)
    results = store.search(NOTES, query="prefers email contact", limit=3)
    assert results[0].key == "contact"
    scores = [r.score for r in results if isinstance(r.score, float)]
    assert len(scores) == len(results) and scores == sorted(scores, reverse=True)
    assert store.search(NOTES, query="overdue invoice", limit=1)[0].key == "billing"


def test_unindexed_items_are_kept_but_not_scored(store: BaseStore) -> None:
    ns = ("acme", "memory")
    store.put(ns, "indexed", {"text": "email preference"})
    store.put(ns, "plain", {"text": "email preference"}, index=False)
    results = store.search(ns, query="email preference", limit=5)
    assert [(r.key, r.score is None) for r in results] == [("indexed", False), ("plain", True)]
    assert store.get(ns, "plain") is not None


def test_paging_walks_past_a_server_page(store: BaseStore) -> None:
    seed_bulk(store)
    seen: list[str] = []
    for offset in range(0, BULK_SIZE + 80, 150):
        seen += [item.key for item in store.search(BULK, limit=150, offset=offset)]
    assert len(seen) == BULK_SIZE and set(seen) == {bulk_key(n) for n in range(BULK_SIZE)}
    tail = store.search(BULK, filter={"n": {"$gte": 600}}, limit=50)
    assert keys(tail) == {bulk_key(n) for n in range(600, BULK_SIZE)}


def test_list_namespaces(store: BaseStore) -> None:
    for ns in [("acme", "memory", "u1"), ("acme", "memory", "u2", "v1"), ("acme", "history")]:
        store.put(ns, "k", {"text": "x"})
    assert store.list_namespaces(prefix=("acme",)) == [
        ("acme", "history"),
        ("acme", "memory", "u1"),
        ("acme", "memory", "u2", "v1"),
    ]
    assert store.list_namespaces(prefix=("acme",), max_depth=2) == [
        ("acme", "history"),
        ("acme", "memory"),
    ]
    assert store.list_namespaces(prefix=("acme", "memory")) == [
        ("acme", "memory", "u1"),
        ("acme", "memory", "u2", "v1"),
    ]
    assert store.list_namespaces(prefix=("acme", "*", "u1")) == [("acme", "memory", "u1")]
    assert store.list_namespaces(prefix=("acme",), suffix=("v1",)) == [
        ("acme", "memory", "u2", "v1")
    ]
    assert store.list_namespaces(prefix=("acme",), limit=1, offset=1) == [("acme", "memory", "u1")]
    assert store.list_namespaces(prefix=("nobody",)) == []


def test_tenants_never_see_each_other(store: BaseStore) -> None:
    store.put(("tenant-a", "memory"), "secret", {"text": "a's private fact", "owner": "a"})
    store.put(("tenant-b", "memory"), "secret", {"text": "b's private fact", "owner": "b"})
    store.put(("tenant-a", "memory", "deep"), "other", {"text": "private fact", "owner": "a"})
    for tenant, other in [("tenant-a", "b"), ("tenant-b", "a")]:
        got = store.get((tenant, "memory"), "secret")
        assert got is not None and got.value["owner"] == tenant[-1]
        found = store.search((tenant,), query="private fact", limit=50)
        found += store.search((tenant,), filter={"owner": other}, limit=50)
        assert all(item.namespace[0] == tenant and item.value["owner"] != other for item in found)
        listed = store.list_namespaces(prefix=(tenant,))
        assert listed and all(ns[0] == tenant for ns in listed)
    store.delete(("tenant-a", "memory"), "secret")
    assert store.get(("tenant-b", "memory"), "secret") is not None
    assert store.search(("tenant-c",), query="private fact") == []


def test_the_async_api_matches_the_sync_one(store: BaseStore) -> None:
    ns = ("acme", "memory")

    async def scenario() -> tuple[Any, ...]:
        await store.aput(ns, "pref", {"text": "prefers email"})
        await store.aput(ns, "other", {"text": "likes cats"})
        got = await store.aget(ns, "pref")
        hits = await store.asearch(ns, query="email please", limit=1)
        listed = await store.alist_namespaces(prefix=("acme",))
        await store.adelete(ns, "other")
        return got, hits, listed, await store.aget(ns, "other")

    got, hits, listed, gone = asyncio.run(scenario())
    assert got is not None and got.value == {"text": "prefers email"}
    assert [h.key for h in hits] == ["pref"] and listed == [ns] and gone is None


# `from store_behaviour import *` brings exactly the suite, however many tests it grows to.
__all__ = sorted(name for name in dict(globals()) if name.startswith("test_"))
