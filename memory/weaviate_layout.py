"""How WeaviateStore lays items out in Weaviate: tenants, namespaces, ids, schema, properties."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    SearchOp,
    tokenize_path,
    validate_op_namespace,
)

# InMemoryStore's own filter semantics, reused so both stores agree exactly.
from weaviate.classes.config import Configure, DataType, Property, Tokenization
from weaviate.classes.query import Filter, Sort

from memory.layout import matches_filter
from observability.endpoints import safe_url

__all__ = [
    "check_tenant_name",
    "collection_config",
    "decode_namespace",
    "encode_namespace",
    "list_scope",
    "namespace_prefixes",
    "object_uuid",
    "parse_weaviate_url",
    "search_tenant",
    "seq_of",
]

_TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the Weaviate server's rule for tenant names
_IDS = uuid.UUID("3e4e0fcb-a909-5d28-b065-c8de64481b6d")  # uuid5 namespace: never change it
_VECTOR = "default"  # the one self-provided named vector
_NEVER = 253402300799.0  # 9999-12-31T23:59:59Z, so `expires_at > now` needs no null handling
_PAGE = 500
_ITEM_PROPS = ["ns", "key", "value", "created_at", "updated_at", "ttl_minutes", "seq"]
_CROSS = "cross-tenant scans are not allowed on WeaviateStore (each tenant is a Weaviate tenant)"


def check_tenant_name(tenant: Any) -> str:
    """Return `tenant` if Weaviate accepts it as a tenant name; else `InvalidNamespaceError`."""
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise InvalidNamespaceError(
            f"tenant {tenant!r} (the first namespace label) is not a valid Weaviate tenant name: "
            "Weaviate allows 1 to 64 characters among A-Z, a-z, 0-9, `_` and `-`; "
            "rename the tenant (e.g. replace other characters with `-`)"
        )
    return tenant


def encode_namespace(labels: Sequence[str]) -> str:
    """The labels joined with `/`, with `%`, `/` and whitespace percent-escaped (injective).

    Whitespace is escaped because Weaviate's `field` tokenization trims it, which would make
    `("a ",)` and `("a",)` filter alike.
    """
    return "/".join("".join(map(_escape, label)) for label in labels)


def _escape(char: str) -> str:
    return quote(char, safe="") if char in "%/" or char.isspace() else char


def decode_namespace(text: str) -> tuple[str, ...]:
    """Inverse of `encode_namespace` (`""` is the empty namespace)."""
    return tuple(unquote(part) for part in text.split("/")) if text else ()


def namespace_prefixes(labels: Sequence[str]) -> list[str]:
    """Encodings of every non-empty prefix of `labels`: a prefix search is one `contains_any`."""
    return [encode_namespace(labels[:n]) for n in range(1, len(labels) + 1)]


def object_uuid(namespace: Sequence[str], key: str) -> uuid.UUID:
    """The Weaviate object id of `(namespace, key)`: uuid5, the same in every process."""
    return uuid.uuid5(_IDS, json.dumps([list(namespace), key], ensure_ascii=False))


def seq_of(object_id: uuid.UUID) -> float:
    """A 52-bit sort key of an object id, exact as a float (gRPC sends numbers as doubles)."""
    return float(object_id.int >> 76)


def search_tenant(namespace_prefix: Sequence[str]) -> str:
    """The tenant a search is confined to: the first label of its prefix, which it must have."""
    if not namespace_prefix:
        raise InvalidNamespaceError(
            f"search needs a namespace prefix that starts with the tenant, got `()`; {_CROSS}: "
            "search `(tenant, ...)` once per tenant"
        )
    return check_tenant_name(namespace_prefix[0])


def list_scope(op: ListNamespacesOp) -> tuple[str, ...]:
    """The concrete prefix a listing is confined to: `(tenant, ...)` up to the first `*`."""
    for condition in op.match_conditions or ():
        path = tuple(condition.path)
        if condition.match_type == "prefix" and path and path[0] != "*":
            check_tenant_name(path[0])
            return path[: path.index("*")] if "*" in path else path
    raise InvalidNamespaceError(
        f"list_namespaces needs `prefix=(tenant, ...)`; {_CROSS}: list one tenant at a time"
    )


def parse_weaviate_url(url: str, *, grpc_port: int | None = None) -> dict[str, Any]:
    """`weaviate.connect_to_custom` arguments from `http(s)://[:api-key@]host[:port][?query]`.

    The query may set `grpc_port` (else the `grpc_port` argument, else 50051) and `grpc_host`
    (else the REST host). A URL without a port uses 80/443; gRPC uses TLS when REST does.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"Weaviate URL {safe_url(url)!r} is not `http(s)://host[:port][?grpc_port=N]`; "
            "fix BASTION_WEAVIATE_URL (e.g. `http://localhost:8080`)"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    secure = parts.scheme == "https"
    return {
        "http_host": parts.hostname,
        "http_port": parts.port or (443 if secure else 80),
        "http_secure": secure,
        "grpc_host": query.get("grpc_host", parts.hostname),
        "grpc_port": grpc_port or int(query.get("grpc_port", 50051)),
        "grpc_secure": secure,
        "auth_credentials": unquote(parts.password) if parts.password else None,
    }


def collection_config() -> dict[str, Any]:
    """Keyword arguments of `client.collections.create` for the store's collection."""

    def text(name: str, kind: DataType = DataType.TEXT, **options: Any) -> Property:
        return Property(name=name, data_type=kind, tokenization=Tokenization.FIELD, **options)

    return {
        "multi_tenancy_config": Configure.multi_tenancy(
            enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
        ),
        "vector_config": Configure.Vectors.self_provided(name=_VECTOR),
        "properties": [
            text("ns", index_searchable=False),
            text("ns_prefixes", DataType.TEXT_ARRAY, index_searchable=False),
            text("key", index_searchable=False),
            Property(
                name="value",
                data_type=DataType.TEXT,
                index_filterable=False,
                index_searchable=False,
            ),
            Property(
                name="text",
                data_type=DataType.TEXT,
                tokenization=Tokenization.WORD,
                index_filterable=False,
            ),
            Property(name="embedded", data_type=DataType.BOOL),
            Property(name="seq", data_type=DataType.NUMBER),
            Property(name="created_at", data_type=DataType.DATE),
            Property(name="updated_at", data_type=DataType.DATE),
            Property(name="ttl_minutes", data_type=DataType.NUMBER, index_filterable=False),
            Property(name="expires_at", data_type=DataType.NUMBER),
        ],
    }


def _checked(ops: Iterable[Op]) -> list[Op]:
    """The ops, each with valid labels and a valid tenant (searches and listings need one)."""
    checked = list(ops)
    for op in checked:
        validate_op_namespace(op)
        if isinstance(op, GetOp | PutOp):
            if not op.namespace:
                raise InvalidNamespaceError("namespace cannot be empty: it starts with the tenant")
            check_tenant_name(op.namespace[0])
        elif isinstance(op, SearchOp):
            search_tenant(op.namespace_prefix)
        elif isinstance(op, ListNamespacesOp):
            list_scope(op)
        else:
            raise ValueError(f"unknown store operation {type(op).__name__}")
    return checked


def _paths(fields: Sequence[str]) -> list[tuple[str, str | list[str]]]:
    return [(f, f if f == "$" else tokenize_path(f)) for f in fields]


def _properties(op: PutOp, oid: uuid.UUID, text: str, now: datetime) -> dict[str, Any]:
    """Weaviate properties of a put, but `created_at` and `embedded`."""
    below = op.namespace[1:]
    try:
        value = json.dumps(dict(op.value or {}), ensure_ascii=False)
    except TypeError as error:
        raise ValueError(f"value of {op.namespace!r} / {op.key!r} is not JSON: {error}") from None
    ttl = float(op.ttl) if op.ttl else 0.0
    return {
        "ns": encode_namespace(below),
        "ns_prefixes": namespace_prefixes(below),
        "key": op.key,
        "value": value,
        "text": text,
        "seq": seq_of(oid),
        "updated_at": now,
        "ttl_minutes": ttl,
        "expires_at": now.timestamp() + ttl * 60 if ttl else _NEVER,
    }


def _item(tenant: str, obj: Any) -> Item:
    props = obj.properties
    return Item(
        namespace=(tenant, *decode_namespace(props.get("ns") or "")),
        key=props["key"],
        value=json.loads(props["value"]),
        created_at=_as_datetime(props["created_at"]),
        updated_at=_as_datetime(props["updated_at"]),
    )


def _as_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _scan(col: Any, where: Any, props: list[str] = _ITEM_PROPS) -> Iterator[Any]:
    """Every object matching `where` in `seq` order, by keyset pages (no 10k offset cap).

    Each page starts at the last `seq` seen, excluding the ids already yielded with it, so
    equal `seq` values (52-bit hashes: very rare) are neither skipped nor repeated.
    """
    last: float | None = None
    tied: set[uuid.UUID] = set()
    while True:
        page = where
        if last is not None:
            page = Filter.all_of(
                [where, Filter.by_property("seq").greater_or_equal(last)]
                + [Filter.by_id().not_equal(oid) for oid in tied]
            )
        objects = col.query.fetch_objects(
            filters=page, sort=Sort.by_property("seq"), limit=_PAGE, return_properties=props
        ).objects
        yield from objects
        if len(objects) < _PAGE:
            return
        top = objects[-1].properties["seq"]
        ties = {o.uuid for o in objects if o.properties["seq"] == top}
        tied, last = ties | (tied if top == last else set()), top


def _take(objects: Iterator[Any], filter: Mapping[str, Any] | None, count: int) -> list[Any]:
    """The first `count` objects whose value passes `filter`."""
    out: list[Any] = []
    for obj in objects if count > 0 else ():
        if _passes(obj, filter):
            out.append(obj)
            if len(out) == count:
                break
    return out


def _passes(obj: Any, filter: Mapping[str, Any] | None) -> bool:
    return not filter or matches_filter(json.loads(obj.properties["value"]), filter)


def _client_url(client: Any) -> str:
    try:
        return safe_url(client._connection._connection_params._http_url)
    except AttributeError:
        return "the configured Weaviate server"
