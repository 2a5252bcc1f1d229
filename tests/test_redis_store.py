"""RedisMemoryStore: one BaseStore suite on InMemoryStore and the real Redis, then Redis only."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    PutOp,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore

from memory.commitlog import MemoryBackendError
from memory.embeddings import HashingEmbedder
from memory.redis_store import RedisMemoryStore, namespace_digests

pytestmark = pytest.mark.redis
INDEX: IndexConfig = {"dims": 64, "embed": HashingEmbedder(dims=64), "fields": ["text"]}


@pytest.fixture(params=["in-memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[BaseStore]:
    """InMemoryStore (proves the suite honest), then a RedisMemoryStore on the real server."""
    if request.param == "in-memory":
        yield InMemoryStore(index=INDEX)
        return
    opened = RedisMemoryStore(request.getfixturevalue("redis_url"), prefix="t:mem", index=INDEX)
    opened.setup()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    opened = redis.Redis.from_url(redis_url)
    try:
        yield opened
    finally:
        opened.close()


def keys(items: list[Any]) -> set[str]:
    return {item.key for item in items}


# --- the BaseStore behaviour suite (mirrors tests/test_weaviate_store.py) ------------------------


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
    assert again.created_at <= again.updated_at
    store.delete(ns, "pref")
    assert store.get(ns, "pref") is None
    assert store.search(("acme",)) == []


def test_multi_label_namespaces_and_odd_labels_round_trip(store: BaseStore) -> None:
    namespaces = [("acme",), ("acme", "x"), ("acme", "x", "y", "z"), ("a c", "ü-1", "50%/2")]
    for n, ns in enumerate(namespaces):
        store.put(ns, "k", {"n": n})
    for n, ns in enumerate(namespaces):
        got = store.get(ns, "k")
        assert got is not None and got.namespace == ns and got.value == {"n": n}
    assert store.get(("acme", "x", "y"), "k") is None


def test_search_by_prefix_follows_label_boundaries(store: BaseStore) -> None:
    store.put(("acme", "memory", "a"), "1", {"text": "one"})
    store.put(("acme", "memory", "ab"), "2", {"text": "two"})
    store.put(("acme", "memory", "a", "deep"), "3", {"text": "three"})
    store.put(("acme", "history"), "4", {"text": "four"})
    store.put(("acme",), "5", {"text": "root"})
    store.put(("acme-1", "memory", "a"), "6", {"text": "one"})  # tokenisers split on `-`
    store.put(("acme", "x-1"), "7", {"text": "seven"})
    assert keys(store.search(("acme",), limit=50)) == {"1", "2", "3", "4", "5", "7"}
    assert keys(store.search(("acme",), query="one", limit=50)) == {"1", "2", "3", "4", "5", "7"}
    assert keys(store.search(("acme", "memory"), limit=50)) == {"1", "2", "3"}
    assert keys(store.search(("acme", "memory", "a"), limit=50)) == {"1", "3"}
    assert keys(store.search(("acme", "memory", "a", "deep"))) == {"3"}
    assert keys(store.search(("acme", "x"), limit=50)) == set()
    assert keys(store.search(("acme-1",), limit=50)) == {"6"}
    assert store.search(("acme", "nothing")) == []
    assert keys(store.search((), limit=50)) == {"1", "2", "3", "4", "5", "6", "7"}


def test_filters_apply_before_limit_and_offset(store: BaseStore) -> None:
    ns = ("acme", "facts")
    store.batch(
        [PutOp(ns, f"k{n}", {"text": f"fact {n}", "n": n, "odd": n % 2}) for n in range(12)]
    )
    big = store.search(ns, filter={"n": {"$gte": 3}}, limit=100)
    assert keys(big) == {f"k{n}" for n in range(3, 12)}
    pages = [store.search(ns, filter={"n": {"$gte": 3}}, limit=4, offset=o) for o in (0, 4, 8)]
    assert [len(p) for p in pages] == [4, 4, 1]
    assert set().union(*(keys(p) for p in pages)) == keys(big)
    assert keys(store.search(ns, filter={"odd": 1, "n": {"$lt": 6}})) == {"k1", "k3", "k5"}
    assert keys(store.search(ns, filter={"n": {"$ne": 0}}, limit=100)) == keys(big) | {"k1", "k2"}
    ranked = store.search(ns, query="fact", filter={"odd": 0}, limit=3, offset=1)
    assert len(ranked) == 3 and all(item.value["odd"] == 0 for item in ranked)
    store.put(ns, "zebra", {"text": "zebra crossing ahead", "n": 99, "odd": 1})
    rare = store.search(ns, query="fact", filter={"n": 99}, limit=1)  # ranked last of 13
    assert keys(rare) == {"zebra"} and rare[0].score is not None


def test_a_query_ranks_the_matching_item_first(store: BaseStore) -> None:
    ns = ("acme", "memory", "customer-7")
    store.put(ns, "contact", {"text": "customer prefers email contact in the morning"})
    store.put(ns, "billing", {"text": "invoice overdue payment reminder sent"})
    store.put(ns, "shipping", {"text": "shipping address changed to the warehouse"})
    results = store.search(ns, query="prefers email contact", limit=3)
    assert results[0].key == "contact"
    scores = [r.score for r in results if isinstance(r.score, float)]
    assert len(scores) == len(results) and scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores) and scores[0] > scores[-1]
    assert store.search(ns, query="overdue invoice", limit=1)[0].key == "billing"


def test_query_scores_are_cosine_similarities_as_in_memory(store: BaseStore) -> None:
    reference = InMemoryStore(index=INDEX)
    ns = ("acme", "memory")
    for target in (store, reference):
        target.put(ns, "a", {"text": "refund the duplicate charge"})
        target.put(ns, "b", {"text": "the customer wants a refund"})
    ours = {r.key: r.score for r in store.search(ns, query="refund please")}
    theirs = {r.key: r.score for r in reference.search(ns, query="refund please")}
    assert ours.keys() == theirs.keys()
    assert all(abs(ours[k] - theirs[k]) < 1e-5 for k in ours)  # type: ignore[operator]


def test_unindexed_items_are_kept_but_not_scored(store: BaseStore) -> None:
    ns = ("acme", "memory")
    store.put(ns, "indexed", {"text": "email preference"})
    store.put(ns, "plain", {"text": "email preference"}, index=False)
    results = store.search(ns, query="email preference", limit=5)
    assert [(r.key, r.score is None) for r in results] == [("indexed", False), ("plain", True)]
    assert store.get(ns, "plain") is not None


def test_paging_walks_past_a_server_page(store: BaseStore) -> None:
    ns = ("acme", "bulk")
    store.batch(
        [
            PutOp(ns, f"k{n:04d}", {"text": f"item {n}", "n": n, "edge": not 20 <= n < 600})
            for n in range(620)
        ]
    )
    seen: list[str] = []
    for offset in range(0, 700, 150):
        seen += [item.key for item in store.search(ns, limit=150, offset=offset)]
    assert len(seen) == 620 and set(seen) == {f"k{n:04d}" for n in range(620)}
    tail = store.search(ns, filter={"n": {"$gte": 600}}, limit=50)
    assert keys(tail) == {f"k{n:04d}" for n in range(600, 620)}
    ends = store.search(ns, filter={"edge": True}, limit=100)  # both ends of the 620
    assert keys(ends) == {f"k{n:04d}" for n in [*range(20), *range(600, 620)]}


def test_a_batch_reads_the_state_before_its_writes(store: BaseStore) -> None:
    ns = ("acme", "memory")
    store.put(ns, "k", {"text": "old"})
    got, _, _, found = store.batch(
        [
            GetOp(ns, "k"),
            PutOp(ns, "k", {"text": "first"}),
            PutOp(ns, "k", {"text": "last"}),
            SearchOp(ns),
        ]
    )
    assert got is not None and got.value == {"text": "old"}  # type: ignore[union-attr]
    assert [i.value for i in found] == [{"text": "old"}]  # type: ignore[union-attr]
    after = store.get(ns, "k")
    assert after is not None and after.value == {"text": "last"}


def test_list_namespaces(store: BaseStore) -> None:
    for ns in [("acme", "memory", "u1"), ("acme", "memory", "u2", "v1"), ("acme", "history")]:
        store.put(ns, "k", {"text": "x"})
    store.put(("acme", "memory", "u1"), "k2", {"text": "y"})
    store.put(("acme-1", "memory"), "k", {"text": "x"})
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
    assert store.list_namespaces(max_depth=1) == [("acme",), ("acme-1",)]  # no prefix: all
    assert store.list_namespaces(suffix=("memory",)) == [("acme-1", "memory")]


def test_tenants_never_see_each_other(store: BaseStore) -> None:
    store.put(("tenant-a", "memory"), "secret", {"text": "a's private fact", "owner": "a"})
    store.put(("tenant-b", "memory"), "secret", {"text": "b's private fact", "owner": "b"})
    store.put(("tenant-a", "memory", "deep"), "other", {"text": "private fact", "owner": "a"})
    store.put(("tenant", "memory"), "secret", {"text": "private fact", "owner": "t"})
    for tenant, other in [("tenant-a", "b"), ("tenant-b", "a")]:
        got = store.get((tenant, "memory"), "secret")
        assert got is not None and got.value["owner"] == tenant[-1]
        found = store.search((tenant,), query="private fact", limit=50)
        found += store.search((tenant,), filter={"owner": other}, limit=50)
        assert all(item.namespace[0] == tenant and item.value["owner"] != other for item in found)
        listed = store.list_namespaces(prefix=(tenant,))
        assert listed and all(ns[0] == tenant for ns in listed)
    assert {i.value["owner"] for i in store.search(("tenant",), query="fact", limit=50)} == {"t"}
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
    assert [h.key for h in store.search(ns, query="email please", limit=1)] == ["pref"]


# --- Redis only ---------------------------------------------------------------------------------


def test_items_are_hashes_in_the_documented_layout(client: redis.Redis) -> None:
    store = RedisMemoryStore(client, prefix="t:mem", index=INDEX)
    store.setup()
    store.put(("acme", "memory", "u1"), "pref", {"text": "likes email"})
    store.put(("acme", "memory", "u1"), "raw", {"text": "likes email"}, index=False)
    key = store.item_key(("acme", "memory", "u1"), "pref")
    name = '[["acme", "memory", "u1"], "pref"]'
    assert key == f"t:mem:item:{hashlib.sha1(name.encode()).hexdigest()}"
    fields = client.hgetall(key)
    assert fields[b"ns"] == b"acme\x1fmemory\x1fu1" and fields[b"key"] == b"pref"
    assert fields[b"value"] == b'{"text": "likes email"}' and fields[b"emb"] == b"1"
    assert fields[b"nsp"].decode().split(",") == namespace_digests(("acme", "memory", "u1"))
    assert len(fields[b"vec"]) == 64 * 4 and float(fields[b"created_at"]) > 1e9
    raw = client.hgetall(store.item_key(("acme", "memory", "u1"), "raw"))
    assert b"vec" not in raw and raw[b"emb"] == b"0"
    assert client.pttl(key) == -1  # no TTL given: the key never expires


def test_rewriting_an_item_unindexed_drops_its_vector(client: redis.Redis) -> None:
    """InMemoryStore keeps the stale vector here (it never drops one on update); Redis must not."""
    store = RedisMemoryStore(client, prefix="t:mem", index=INDEX)
    store.setup()
    ns = ("acme", "memory")
    store.put(ns, "k", {"text": "email preference"})
    store.put(ns, "k", {"text": "phone preference"}, index=False)
    assert b"vec" not in client.hgetall(store.item_key(ns, "k"))
    [hit] = store.search(ns, query="email preference")
    assert hit.score is None and hit.value == {"text": "phone preference"}
    store.put(ns, "k", {"text": "phone preference"})
    assert store.search(ns, query="phone")[0].score is not None


def test_namespace_digests_are_one_per_prefix_and_label_exact() -> None:
    digests = namespace_digests(("acme", "x"))
    assert len(digests) == 2 and all(len(d) == 16 for d in digests)
    assert digests[0] == namespace_digests(("acme",))[0] != namespace_digests(("acme-1",))[0]
    assert namespace_digests(("acme", "x"))[1] != namespace_digests(("acmex",))[0]


def test_ttl_sets_a_key_expiry_that_reads_do_not_extend(client: redis.Redis) -> None:
    store = RedisMemoryStore(client, prefix="t:mem")
    store.setup()
    ns = ("acme", "session")
    store.put(ns, "turn", {"text": "short lived"}, ttl=1)
    key = store.item_key(ns, "turn")
    assert 55_000 < client.pttl(key) <= 60_000
    client.pexpire(key, 5_000)  # as if 55 s had passed
    assert store.get(ns, "turn") is not None and store.search(ns)
    assert client.pttl(key) <= 5_000  # plain reads leave the expiry alone
    assert store.get(ns, "turn", refresh_ttl=True) is not None
    assert client.pttl(key) > 55_000  # asked to: back to the full minute
    store.put(ns, "keep", {"text": "permanent"})
    assert store.get(ns, "keep", refresh_ttl=True) and store.search(ns, refresh_ttl=True)
    assert client.pttl(store.item_key(ns, "keep")) == -1  # nothing to refresh: stays permanent
    store.put(ns, "turn", {"text": "now permanent"})
    assert client.pttl(key) == -1
    client.delete(key)  # what expiry does: the item is gone from reads and searches
    assert store.get(ns, "turn") is None and keys(store.search(ns)) == {"keep"}


def test_two_prefixes_in_one_redis_are_isolated(client: redis.Redis) -> None:
    short = RedisMemoryStore(client, prefix="t:short")
    long = RedisMemoryStore(client, prefix="t:long", index=INDEX)
    for store in (short, long):
        store.setup()
    short.put(("acme", "memory"), "k", {"text": "short fact"})
    long.put(("acme", "memory"), "k", {"text": "long fact"})
    for store, word in ((short, "short"), (long, "long")):
        got = store.get(("acme", "memory"), "k")
        assert got is not None and got.value["text"] == f"{word} fact"
        assert [i.value["text"] for i in store.search(("acme",), query="fact")] == [f"{word} fact"]
        assert store.list_namespaces() == [("acme", "memory")]
    short.delete(("acme", "memory"), "k")
    assert long.get(("acme", "memory"), "k") is not None
    assert {b"t:short:idx", b"t:long:idx"} <= set(client.execute_command("FT._LIST"))


def test_setup_is_idempotent_and_refuses_other_dims(client: redis.Redis) -> None:
    RedisMemoryStore(client, prefix="t:mem", index=INDEX).setup()
    RedisMemoryStore(client, prefix="t:mem", index=INDEX).setup()
    other: IndexConfig = {"dims": 32, "embed": HashingEmbedder(dims=32), "fields": ["text"]}
    with pytest.raises(MemoryBackendError, match=r"`t:mem:idx`.*dims 64.*makes 32.*prefix"):
        RedisMemoryStore(client, prefix="t:mem", index=other).setup()


def test_a_search_before_setup_says_to_run_setup(client: redis.Redis) -> None:
    with pytest.raises(MemoryBackendError, match=r"setup\(\)"):
        RedisMemoryStore(client, prefix="t:none").search(("acme",))


def test_bad_prefixes_and_separator_labels_are_refused(client: redis.Redis) -> None:
    for prefix in ("", "a:item", "item"):
        with pytest.raises(ValueError, match="prefix"):
            RedisMemoryStore(client, prefix=prefix)
    store = RedisMemoryStore(client, prefix="t:mem")
    with pytest.raises(InvalidNamespaceError, match="x1f"):
        store.put(("acme\x1fx",), "k", {"a": 1})
    with pytest.raises(InvalidNamespaceError):
        store.put(("acme.x",), "k", {"a": 1})


def test_a_dead_server_is_a_backend_error_naming_it_without_the_password() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisMemoryStore(f"redis://:hunter2@127.0.0.1:{port}/0", prefix="t:mem")
    try:
        for call in (store.setup, lambda: store.get(("acme",), "k")):
            with pytest.raises(MemoryBackendError) as caught:
                call()
            message = str(caught.value)
            assert f"127.0.0.1:{port}" in message and "BASTION_REDIS_URL" in message
            assert "hunter2" not in message and "search module" in message
    finally:
        store.close()
