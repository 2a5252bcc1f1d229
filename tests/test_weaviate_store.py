"""WeaviateStore: helpers offline; the shared BaseStore suite on InMemoryStore and Weaviate."""

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
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    Op,
    Result,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore
from store_behaviour import *  # noqa: F403 (the shared suite: pytest collects it here)
from store_behaviour import INDEX, keys
from weaviate.collections.classes.config import _CollectionConfigCreate
from weaviate.connect import ConnectionParams

from memory.commitlog import MemoryBackendError
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


# --- the shared BaseStore suite (tests/store_behaviour.py) runs on this fixture --------------


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
