"""Open a `VersionedMemory` on the configured backends: embedded SQLite, Redis, Weaviate."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from langgraph.store.base import BaseStore, Item
from langgraph.store.memory import InMemoryStore

from memory.commitlog import InMemoryCommitLog, MemoryBackendError, SqliteCommitLog
from memory.contract import ConflictPolicy
from memory.embeddings import embedder_from_name, embedding_dims
from memory.freshness import SourceMonitor
from memory.layout import INDEX_FIELDS
from memory.versioned import VersionedMemory
from observability.endpoints import redis_client, safe_url

__all__ = ["in_memory", "open_memory"]

# Retention decides when a record expires; a read must not push its expiry back.
_NO_SLIDING_TTL: Any = {"refresh_on_read": False}


def _embedder(embedder: Embeddings | str) -> Embeddings:
    return embedder_from_name(embedder) if isinstance(embedder, str) else embedder


def _index(embedder: Embeddings) -> Any:
    return {"dims": embedding_dims(embedder), "embed": embedder, "fields": INDEX_FIELDS}


def _indexed(inner: BaseStore, embeddings: Embeddings) -> BaseStore:
    """`inner` with the in-process HNSW index over current records only: a rebuild (the
    index is not kept on disk) must not embed history, commits or bookkeeping."""
    from memory.indexed_store import IndexedStore

    def fields(item: Item) -> Literal[False] | None:
        return None if item.namespace[1:2] == ("memory",) else False

    return IndexedStore(inner, index=_index(embeddings), rebuild_fields=fields)


def in_memory(*, embedder: Embeddings | str = "hashing", **options: Any) -> VersionedMemory:
    """Memory in this process only (tests, notebooks): `InMemoryStore`s and an in-memory log.

    `options` go to `VersionedMemory` (retention, conflicts, monitor, clock).
    """
    long = _indexed(InMemoryStore(), _embedder(embedder))
    return VersionedMemory(short=InMemoryStore(), long=long, log=InMemoryCommitLog(), **options)


@contextmanager
def open_memory(
    *,
    home: Path | None = None,
    redis_url: str | None = None,
    weaviate_url: str | None = None,
    weaviate_collection: str = "BastionMemory",
    embedder: Embeddings | str = "hashing",
    conflicts: Mapping[str | tuple[str, ...], ConflictPolicy | str] | None = None,
    monitor: SourceMonitor | None = None,
    **options: Any,
) -> Iterator[VersionedMemory]:
    """Open memory on the configured backends and close them on exit.

    - embedded (default): SQLite files in the folder `home` (short-term store, long-term
      store with an HNSW index, commit log);
    - `redis_url`: `RedisMemoryStore`s on one Redis (needs the search module): short-term
      under `bastion:short`, long-term under `bastion:long` with an HNSW vector index, and a
      Redis commit log;
    - `weaviate_url`: the long-term tier in Weaviate (one Weaviate tenant per tenant); the
      short-term tier and the log stay on Redis if configured, else SQLite.

    Raises:
        MemoryBackendError: a backend cannot be reached or opened (says which and what to do).
    """
    embeddings = _embedder(embedder)
    with ExitStack() as stack:
        if redis_url:
            short, long, log = _redis_tiers(stack, redis_url, embeddings)
        elif home is not None:
            short, long, log = _sqlite_tiers(stack, home, embeddings)
        else:
            raise MemoryBackendError(
                "no memory backend configured: pass home= (embedded) or redis_url="
            )
        if weaviate_url:
            from memory.weaviate_store import WeaviateStore

            long = stack.enter_context(
                WeaviateStore.from_url(weaviate_url, index=_index(embeddings))
            )
            long.setup()
        yield VersionedMemory(
            short=short, long=long, log=log, conflicts=conflicts, monitor=monitor, **options
        )


def _sqlite_tiers(
    stack: ExitStack, home: Path, embeddings: Embeddings
) -> tuple[BaseStore, BaseStore, SqliteCommitLog]:
    from langgraph.store.sqlite import SqliteStore

    folder = home
    stores = []
    for name in ("short", "long"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                folder / f"{name}.sqlite", check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as error:
            raise MemoryBackendError(
                f"cannot open the memory store {str(folder / name)!r}.sqlite ({error}); check "
                "the folder is writable or set BASTION_HOME to one that is"
            ) from error
        stack.callback(conn.close)
        store = SqliteStore(conn)
        store.setup()
        stores.append(store)
    log = SqliteCommitLog(folder / "log.sqlite")
    stack.callback(log.close)
    return stores[0], _indexed(stores[1], embeddings), log


def _redis_tiers(
    stack: ExitStack, url: str, embeddings: Embeddings
) -> tuple[BaseStore, BaseStore, Any]:
    import redis

    from memory.redis_commitlog import RedisCommitLog
    from memory.redis_store import RedisMemoryStore

    client = redis_client(url, 10.0)
    stack.callback(client.close)
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as error:
        raise MemoryBackendError(
            f"cannot use Redis at {safe_url(url)} for memory ({error}). Start Redis 8 (or Redis "
            "Stack) with the search module, or unset BASTION_REDIS_URL to use the embedded store"
        ) from error
    short = RedisMemoryStore(client, prefix="bastion:short", ttl=_NO_SLIDING_TTL)
    long = RedisMemoryStore(
        client, prefix="bastion:long", index=_index(embeddings), ttl=_NO_SLIDING_TTL
    )
    for store in (short, long):
        store.setup()  # raises MemoryBackendError naming the server and what to do
    return short, long, RedisCommitLog(client)
