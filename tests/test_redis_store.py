"""RedisMemoryStore: the shared BaseStore suite, stricter checks on both stores, then Redis only."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator

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
from store_behaviour import *  # noqa: F403 (the shared suite: pytest collects it here)
from store_behaviour import (
    BULK,
    FACTS,
    INDEX,
    NOTES,
    bulk_key,
    keys,
    seed_bulk,
    seed_facts,
    seed_notes,
    seed_prefix_tree,
    test_list_namespaces,
    test_tenants_never_see_each_other,
    test_the_async_api_matches_the_sync_one,
)

from memory.commitlog import MemoryBackendError
from memory.embeddings import HashingEmbedder
from memory.redis_store import RedisMemoryStore, namespace_digests

pytestmark = pytest.mark.redis


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


# --- more BaseStore behaviour Redis promises, still checked on InMemoryStore too ---------------


def test_an_update_keeps_created_at_no_later_than_updated_at(store: BaseStore) -> None:
    ns = ("acme", "memory", "u1")
    store.put(ns, "pref", {"text": "likes email"})
    store.put(ns, "pref", {"text": "likes phone"})
    again = store.get(ns, "pref")
    assert again is not None and again.value["text"] == "likes phone"
    assert again.created_at <= again.updated_at


def test_multi_label_namespaces_and_odd_labels_round_trip(store: BaseStore) -> None:
    namespaces = [("acme",), ("acme", "x"), ("acme", "x", "y", "z"), ("a c", "ü-1", "50%/2")]
    for n, ns in enumerate(namespaces):
        store.put(ns, "k", {"n": n})
    for n, ns in enumerate(namespaces):
        got = store.get(ns, "k")
        assert got is not None and got.namespace == ns and got.value == {"n": n}
    assert store.get(("acme", "x", "y"), "k") is None


def test_prefixes_ignore_look_alike_labels_and_an_empty_one_spans_tenants(
    store: BaseStore,
) -> None:
    seed_prefix_tree(store)
    store.put(("acme-1", "memory", "a"), "6", {"text": "one"})  # tokenisers split on `-`
    store.put(("acme", "x-1"), "7", {"text": "seven"})
    assert keys(store.search(("acme",), limit=50)) == {"1", "2", "3", "4", "5", "7"}
    assert keys(store.search(("acme",), query="one", limit=50)) == {"1", "2", "3", "4", "5", "7"}
    assert keys(store.search(("acme", "memory"), limit=50)) == {"1", "2", "3"}
    assert keys(store.search(("acme", "memory", "a"), limit=50)) == {"1", "3"}
    assert keys(store.search(("acme", "x"), limit=50)) == set()
    assert keys(store.search(("acme-1",), limit=50)) == {"6"}
    assert keys(store.search((), limit=50)) == {"1", "2", "3", "4", "5", "6", "7"}


def test_a_filtered_query_finds_an_item_ranked_last(store: BaseStore) -> None:
    seed_facts(store)
    store.put(FACTS, "zebra", {"text": "zebra crossing ahead", "n": 99, "odd": 1})
    rare = store.search(FACTS, query="fact", filter={"n": 99}, limit=1)  # ranked last of 13
    assert keys(rare) == {"zebra"} and rare[0].score is not None


def test_query_scores_are_similarities_between_minus_one_and_one(store: BaseStore) -> None:
    seed_notes(store)
    scores = [r.score for r in store.search(NOTES, query="prefers email contact", limit=3)]
    assert len(scores) == 3 and all(isinstance(s, float) and -1.0 <= s <= 1.0 for s in scores)
    assert scores[0] > scores[-1]  # type: ignore[operator]


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


def test_a_filter_reaches_both_ends_past_a_server_page(store: BaseStore) -> None:
    seed_bulk(store)
    ends = store.search(BULK, filter={"edge": True}, limit=100)  # the first and last 20 of 620
    assert keys(ends) == {bulk_key(n) for n in [*range(20), *range(600, 620)]}


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


def test_listing_ignores_look_alikes_and_spans_tenants_without_a_prefix(store: BaseStore) -> None:
    store.put(("acme", "memory", "u1"), "k2", {"text": "y"})
    store.put(("acme-1", "memory"), "k", {"text": "x"})
    test_list_namespaces(store)  # the shared expectations hold with these two present
    assert store.list_namespaces(max_depth=1) == [("acme",), ("acme-1",)]  # no prefix: all
    assert store.list_namespaces(suffix=("memory",)) == [("acme-1", "memory")]


def test_a_tenant_whose_name_prefixes_another_is_walled_off_too(store: BaseStore) -> None:
    store.put(("tenant", "memory"), "secret", {"text": "private fact", "owner": "t"})
    test_tenants_never_see_each_other(store)  # the shared walls hold with `tenant` present
    assert {i.value["owner"] for i in store.search(("tenant",), query="fact", limit=50)} == {"t"}


def test_sync_reads_see_async_writes(store: BaseStore) -> None:
    test_the_async_api_matches_the_sync_one(store)
    hits = store.search(("acme", "memory"), query="email please", limit=1)
    assert [h.key for h in hits] == ["pref"]


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
