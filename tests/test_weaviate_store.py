"""WeaviateStore: helpers offline; one BaseStore suite on InMemoryStore and (if set) Weaviate."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
import weaviate
from hypothesis import given
from hypothesis import strategies as st
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore
from weaviate.collections.classes.config import _CollectionConfigCreate
from weaviate.connect import ConnectionParams

from memory.commitlog import MemoryBackendError
from memory.embeddings import HashingEmbedder
from memory.layout import matches_filter
from memory.weaviate_layout import (
    check_tenant_name,
    collection_config,
    decode_namespace,
    encode_namespace,
    list_scope,
    namespace_prefixes,
    object_uuid,
    parse_weaviate_url,
    search_tenant,
    seq_of,
)
from memory.weaviate_store import WeaviateStore

WEAVIATE_URL = os.environ.get("BASTION_WEAVIATE_URL")
SKIP_REASON = (
    "BASTION_WEAVIATE_URL is not set: no Weaviate server to test against (Weaviate cannot be "
    "installed on this machine; set it to run the Weaviate backend suite)"
)
needs_weaviate = pytest.mark.skipif(not WEAVIATE_URL, reason=SKIP_REASON)
INDEX: IndexConfig = {"dims": 64, "embed": HashingEmbedder(dims=64), "fields": ["text"]}
labels = st.text(min_size=1, max_size=6).filter(lambda s: "." not in s and "\x00" not in s)
namespaces = st.lists(labels, max_size=4).map(tuple)
S = TypeVar("S", bound=WeaviateStore)


def offline_store(**kwargs: Any) -> WeaviateStore:
    """A store on a real client that was never connected: anything reaching the server fails."""
    return offline_store_of(WeaviateStore, **kwargs)


def offline_store_of(cls: type[S], **kwargs: Any) -> S:
    """`offline_store` of a `WeaviateStore` subclass."""
    params = ConnectionParams.from_params(
        http_host="127.0.0.1",
        http_port=1,
        http_secure=False,
        grpc_host="127.0.0.1",
        grpc_port=2,
        grpc_secure=False,
    )
    client = weaviate.WeaviateClient(connection_params=params, skip_init_checks=True)
    return cls(client, **kwargs)


# --- pure helpers -------------------------------------------------------------------------------


@given(namespaces)
def test_namespace_encoding_round_trips(namespace: tuple[str, ...]) -> None:
    assert decode_namespace(encode_namespace(namespace)) == namespace


@given(namespaces, namespaces)
def test_namespace_encoding_is_injective(a: tuple[str, ...], b: tuple[str, ...]) -> None:
    assert (encode_namespace(a) == encode_namespace(b)) == (a == b)


def test_common_namespaces_read_as_slash_paths() -> None:
    assert encode_namespace(("memory", "u1")) == "memory/u1"
    assert encode_namespace(("a/b", "50%")) == "a%2Fb/50%25"
    assert encode_namespace((" a\t",)) == "%20a%09"  # Weaviate's field tokenization trims spaces
    assert namespace_prefixes(("memory", "u1", "x")) == ["memory", "memory/u1", "memory/u1/x"]
    assert namespace_prefixes(()) == []


@given(namespaces, namespaces.filter(bool))
def test_prefix_membership_is_namespace_prefix(
    ns: tuple[str, ...], prefix: tuple[str, ...]
) -> None:
    """A prefix search (`contains_any` on ns_prefixes) matches exactly the label-wise prefixes."""
    found = encode_namespace(prefix) in namespace_prefixes(ns)
    assert found == (ns[: len(prefix)] == prefix)


def test_object_ids_are_stable_and_distinct() -> None:
    first = object_uuid(("acme", "memory", "u1"), "pref")
    assert first == object_uuid(("acme", "memory", "u1"), "pref")
    assert first == uuid.UUID("3759b1b9-b9b4-5f4f-81e4-92896c69a379")  # stored ids depend on it
    assert first.version == 5
    others = {
        object_uuid(("other", "memory", "u1"), "pref"),
        object_uuid(("acme", "memory"), "pref"),
        object_uuid(("acme", "memory", "u1"), "pref2"),
        object_uuid(("acme", "memory/u1"), "pref"),  # a naive "/"-join would collide here
    }
    assert first not in others and len(others) == 4


@given(st.uuids())
def test_seq_is_an_exact_float(value: uuid.UUID) -> None:
    seq = seq_of(value)
    assert seq.is_integer() and 0 <= seq < 2**52


FILTER_CASES = [
    {"kind": "pref"},
    {"kind": {"$ne": "pref"}},
    {"n": {"$gt": 2}},
    {"n": {"$gte": 2, "$lt": 4}},
    {"n": {"$lte": 1}},
    {"n": {"$eq": 3}, "kind": "fact"},
    {"meta": {"lang": "en"}},
    {"tags": ["a", "b"]},
    {"missing": None},
]
VALUES = [
    {"kind": "pref", "n": 1, "meta": {"lang": "en"}, "tags": ["a", "b"]},
    {"kind": "fact", "n": 2, "meta": {"lang": "fr"}, "tags": ["a"]},
    {"kind": "fact", "n": 3, "meta": {"lang": "en", "x": 1}, "tags": ["b", "a"]},
    {"kind": "pref", "n": 4, "missing": 0},
]


@pytest.mark.parametrize("flt", FILTER_CASES, ids=str)
def test_filter_matching_agrees_with_in_memory_store(flt: dict[str, Any]) -> None:
    reference = InMemoryStore()
    for i, value in enumerate(VALUES):
        reference.put(("t",), str(i), value)
    expected = {item.key for item in reference.search(("t",), filter=flt, limit=100)}
    assert {str(i) for i, v in enumerate(VALUES) if matches_filter(v, flt)} == expected
    assert expected, "each case should match something, or it proves little"


@pytest.mark.parametrize("name", ["acme", "a-b_C9", "x" * 64, "T"])
def test_weaviate_tenant_names_are_accepted(name: str) -> None:
    assert check_tenant_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "acme corp", "a.b", "a/b", "ünï", 7])
def test_other_tenant_names_are_refused_with_the_rule(name: Any) -> None:
    with pytest.raises(InvalidNamespaceError, match="1 to 64 characters") as caught:
        check_tenant_name(name)
    assert repr(name) in str(caught.value)


def test_scans_without_a_tenant_are_refused() -> None:
    with pytest.raises(InvalidNamespaceError, match="cross-tenant"):
        search_tenant(())
    assert search_tenant(("acme", "memory")) == "acme"

    def scope(*conditions: MatchCondition) -> tuple[str, ...]:
        return list_scope(ListNamespacesOp(match_conditions=conditions))

    for bad in [(), (MatchCondition("suffix", ("x",)),), (MatchCondition("prefix", ("*", "m")),)]:
        with pytest.raises(InvalidNamespaceError, match="cross-tenant"):
            scope(*bad)
    assert scope(MatchCondition("prefix", ("acme", "memory", "*", "x"))) == ("acme", "memory")
    assert scope(MatchCondition("suffix", ("v1",)), MatchCondition("prefix", ("acme",))) == (
        "acme",
    )


def test_the_store_refuses_cross_tenant_ops_before_any_io() -> None:
    """The client is not connected: these errors come from the store, not from a server."""
    store = offline_store(index=INDEX)
    with pytest.raises(InvalidNamespaceError, match="cross-tenant"):
        store.search(())
    with pytest.raises(InvalidNamespaceError, match="cross-tenant"):
        store.list_namespaces()
    with pytest.raises(InvalidNamespaceError, match="cross-tenant"):
        store.list_namespaces(suffix=("memory",))
    with pytest.raises(InvalidNamespaceError, match="Weaviate tenant name"):
        store.put(("acme corp", "memory"), "k", {"text": "x"})
    with pytest.raises(InvalidNamespaceError, match="Weaviate tenant name"):
        asyncio.run(store.asearch(("bad tenant!",), query="x"))


def test_an_unreachable_server_is_a_backend_error_naming_it() -> None:
    with pytest.raises(MemoryBackendError, match=r"http://127\.0\.0\.1:1 .*BASTION_WEAVIATE_URL"):
        offline_store().setup()


class OpRecorder(WeaviateStore):
    """Keeps the ops LangGraph's `get`/`search` build from the store's TTL settings."""

    ops: list[Op]

    def batch(self, ops: Any) -> list[Result]:
        self.ops = list(ops)
        return [[] if isinstance(op, SearchOp) else None for op in self.ops]


def read_refreshes(**kwargs: Any) -> list[bool]:
    """Whether a plain `get` and `search` on a store built with `kwargs` refresh TTLs."""
    store = offline_store_of(OpRecorder, **kwargs)
    store.get(("acme", "memory"), "k")
    ops = store.ops
    store.search(("acme",), query="x")
    ops += store.ops
    assert [type(op) for op in ops] == [GetOp, SearchOp]
    return [op.refresh_ttl for op in ops if isinstance(op, GetOp | SearchOp)]


def test_reads_do_not_extend_ttls_unless_asked() -> None:
    """Retention sets expiry: by default no read slides it (LangGraph's default would)."""
    assert read_refreshes() == [False, False]
    assert read_refreshes(ttl={"refresh_on_read": True}) == [True, True]
    assert read_refreshes(ttl=None) == [True, True]  # None: LangGraph's own default


def test_weaviate_urls_parse_to_connection_arguments() -> None:
    assert parse_weaviate_url("http://localhost:8080") == {
        "http_host": "localhost",
        "http_port": 8080,
        "http_secure": False,
        "grpc_host": "localhost",
        "grpc_port": 50051,
        "grpc_secure": False,
        "auth_credentials": None,
    }
    cloud = parse_weaviate_url("https://:s3cret@db.example.com?grpc_port=443&grpc_host=g.example")
    assert (cloud["http_port"], cloud["grpc_port"], cloud["grpc_host"]) == (443, 443, "g.example")
    assert cloud["http_secure"] and cloud["grpc_secure"] and cloud["auth_credentials"] == "s3cret"
    assert parse_weaviate_url("http://h:1?grpc_port=2", grpc_port=3)["grpc_port"] == 3
    with pytest.raises(ValueError, match="http") as caught:
        parse_weaviate_url("redis://:pw@h:6379")
    assert "pw" not in str(caught.value)


def test_from_url_on_a_closed_port_says_where_and_what_to_do() -> None:
    with socket.socket() as rest, socket.socket() as grpc:  # loopback ports nobody listens on
        rest.bind(("127.0.0.1", 0))
        grpc.bind(("127.0.0.1", 0))
        port, grpc_port = rest.getsockname()[1], grpc.getsockname()[1]
    url = f"http://admin:hunter2@127.0.0.1:{port}?grpc_port={grpc_port}"
    with pytest.raises(MemoryBackendError) as caught, WeaviateStore.from_url(url):
        pass
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "BASTION_WEAVIATE_URL" in message
    assert "hunter2" not in message and "***" in message


def test_the_collection_schema_is_valid_for_the_client() -> None:
    """The client's own model validates our `create` arguments and renders the schema."""
    schema = _CollectionConfigCreate(name="Probe", **collection_config())._to_dict()
    assert schema["multiTenancyConfig"] == {
        "enabled": True,
        "autoTenantCreation": True,
        "autoTenantActivation": True,
    }
    assert schema["vectorConfig"]["default"]["vectorizer"] == {"none": {}}
    props = {p["name"]: p for p in schema["properties"]}
    assert {props[n]["tokenization"] for n in ("ns", "ns_prefixes", "key")} == {"field"}
    assert props["ns_prefixes"]["dataType"] == ["text[]"]
    assert props["text"]["tokenization"] == "word"
    assert props["value"]["indexFilterable"] is False and props["value"]["indexSearchable"] is False
    assert {props[n]["dataType"][0] for n in ("created_at", "updated_at")} == {"date"}


# --- the BaseStore behaviour suite --------------------------------------------------------------


@pytest.fixture(params=["in-memory", pytest.param("weaviate", marks=needs_weaviate)])
def store(request: pytest.FixtureRequest) -> Iterator[BaseStore]:
    """InMemoryStore, then a WeaviateStore on a fresh collection (deleted afterwards)."""
    if request.param == "in-memory":
        yield InMemoryStore(index=INDEX)
        return
    assert WEAVIATE_URL
    name = f"BastionTest{uuid.uuid4().hex}"
    with WeaviateStore.from_url(WEAVIATE_URL, collection=name, index=INDEX) as opened:
        opened.setup()
        try:
            yield opened
        finally:
            opened.client.collections.delete(opened.collection_name)


def keys(items: list[Any]) -> set[str]:
    return {item.key for item in items}


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
    store.put(("acme", "memory", "a"), "1", {"text": "one"})
    store.put(("acme", "memory", "ab"), "2", {"text": "two"})
    store.put(("acme", "memory", "a", "deep"), "3", {"text": "three"})
    store.put(("acme", "history"), "4", {"text": "four"})
    store.put(("acme",), "5", {"text": "root"})
    assert keys(store.search(("acme",), limit=50)) == {"1", "2", "3", "4", "5"}
    assert keys(store.search(("acme", "memory"), limit=50)) == {"1", "2", "3"}
    assert keys(store.search(("acme", "memory", "a"), limit=50)) == {"1", "3"}
    assert keys(store.search(("acme", "memory", "a", "deep"))) == {"3"}
    assert store.search(("acme", "nothing")) == []


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


def test_a_query_ranks_the_matching_item_first(store: BaseStore) -> None:
    ns = ("acme", "memory", "customer-7")
    store.put(ns, "contact", {"text": "customer prefers email contact in the morning"})
    store.put(ns, "billing", {"text": "invoice overdue payment reminder sent"})
    store.put(ns, "shipping", {"text": "shipping address changed to the warehouse"})
    results = store.search(ns, query="prefers email contact", limit=3)
    assert results[0].key == "contact"
    scores = [r.score for r in results if isinstance(r.score, float)]
    assert len(scores) == len(results) and scores == sorted(scores, reverse=True)
    assert store.search(ns, query="overdue invoice", limit=1)[0].key == "billing"


def test_unindexed_items_are_kept_but_not_scored(store: BaseStore) -> None:
    ns = ("acme", "memory")
    store.put(ns, "indexed", {"text": "email preference"})
    store.put(ns, "plain", {"text": "email preference"}, index=False)
    results = store.search(ns, query="email preference", limit=5)
    assert [(r.key, r.score is None) for r in results] == [("indexed", False), ("plain", True)]
    assert store.get(ns, "plain") is not None


def test_paging_walks_past_a_server_page(store: BaseStore) -> None:
    ns = ("acme", "bulk")
    store.batch([PutOp(ns, f"k{n:04d}", {"text": f"item {n}", "n": n}) for n in range(620)])
    seen: list[str] = []
    for offset in range(0, 700, 150):
        seen += [item.key for item in store.search(ns, limit=150, offset=offset)]
    assert len(seen) == 620 and set(seen) == {f"k{n:04d}" for n in range(620)}
    tail = store.search(ns, filter={"n": {"$gte": 600}}, limit=50)
    assert keys(tail) == {f"k{n:04d}" for n in range(600, 620)}


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


# --- Weaviate only (needs a server) -------------------------------------------------------------


@needs_weaviate
def test_ttl_expiry_refresh_sweep_and_created_at() -> None:
    """TTLs on an injected clock: reads slide them only when asked; expired items are swept."""
    assert WEAVIATE_URL
    now = [1_000_000.0]
    name = f"BastionTest{uuid.uuid4().hex}"
    ns = ("acme", "session")
    with WeaviateStore.from_url(
        WEAVIATE_URL, collection=name, index=INDEX, clock=lambda: now[0]
    ) as s:
        s.setup()
        try:
            s.put(ns, "turn", {"text": "short lived"}, ttl=1)
            s.put(ns, "slid", {"text": "short lived too"}, ttl=1)
            s.put(ns, "keep", {"text": "long lived"})
            now[0] += 50
            assert s.get(ns, "turn") is not None  # a plain read leaves it expiring at +60 s
            assert s.get(ns, "slid", refresh_ttl=True) is not None  # now expires at +110 s
            now[0] += 20
            assert s.get(ns, "turn") is None
            assert s.get(ns, "slid") is not None
            now[0] += 50
            assert s.get(ns, "slid") is None
            assert keys(s.search(("acme",), query="lived")) == {"keep"}
            assert s.sweep_expired("acme") == 2
            first = s.get(ns, "keep")
            now[0] += 5
            s.put(ns, "keep", {"text": "long lived v2"})
            again = s.get(ns, "keep")
            assert first is not None and again is not None
            assert again.created_at == first.created_at and again.updated_at > first.updated_at
        finally:
            s.client.collections.delete(s.collection_name)
