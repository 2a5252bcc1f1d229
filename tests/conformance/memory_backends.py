"""Backends the memory conformance suites run on, and helpers they share (clock, scopes, writes)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryScope, VersionedMemory, in_memory, open_memory
from memory.contract import Sensitivity
from memory.records import CommitResult

WEAVIATE_ENV = "BASTION_WEAVIATE_URL"
WEAVIATE_SKIP = (
    f"{WEAVIATE_ENV} is not set: no Weaviate server to test against "
    "(Weaviate cannot be installed on this machine)"
)
START = 1_750_000_000.0
DAY = 86_400.0
PREFS = ("crm", "prefs")
BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param(
        "weaviate",
        marks=pytest.mark.skipif(not os.environ.get(WEAVIATE_ENV), reason=WEAVIATE_SKIP),
    ),
]


class FakeClock:
    """A clock tests move by hand (`advance`); memory reads it for every timestamp."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryFactory:
    """Opens `VersionedMemory` handles on one backend's data: each call is a new handle (as a
    restarted process would open), over the same stores and commit log."""

    def __init__(self, backend: str, stack: ExitStack, tmp_path: Path, **where: Any) -> None:
        self.backend = backend
        """`memory`, `sqlite`, `redis` or `weaviate`."""
        self.clock = FakeClock()
        """The clock every handle reads."""
        self._stack, self._home, self._where = stack, tmp_path / "memory", where
        self._first: VersionedMemory | None = None

    def __call__(self, **options: Any) -> VersionedMemory:
        """A new handle; `options` go to `VersionedMemory` (conflicts, monitor, retention…)."""
        options.setdefault("clock", self.clock)
        if self.backend == "memory":
            if self._first is None:
                self._first = in_memory(**options)
                return self._first
            first = self._first
            return VersionedMemory(short=first.short, long=first.long, log=first.log, **options)
        if self.backend == "redis":
            opened = open_memory(redis_url=self._where["redis_url"], **options)
        else:
            opened = open_memory(home=self._home, **self._where, **options)
        return self._stack.enter_context(opened)


@pytest.fixture(params=BACKENDS)
def memory_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryFactory]:
    """Opens memory on each backend in turn: in-process, embedded SQLite, Redis (real server),
    then Weaviate when `BASTION_WEAVIATE_URL` names a server."""
    where: dict[str, Any] = {}
    if request.param == "redis":
        where["redis_url"] = request.getfixturevalue("redis_url")
    elif request.param == "weaviate":
        where["weaviate_url"] = os.environ[WEAVIATE_ENV]
    with ExitStack() as stack:
        yield MemoryFactory(request.param, stack, tmp_path, **where)


def scope(
    tenant: str = "acme",
    agent: str = "triage",
    *,
    purposes: tuple[str, ...] = ("support",),
    clearance: Sensitivity = "internal",
    run_id: str = "run-1",
) -> MemoryScope:
    """A reader/writer of `tenant` (defaults: acme's triage agent, support purpose)."""
    return MemoryScope(
        tenant=tenant,
        agent=agent,
        purposes=frozenset(purposes),
        clearance=clearance,
        run_id=run_id,
    )


def put(
    memory: VersionedMemory,
    who: MemoryScope,
    key: str,
    value: dict[str, Any],
    *,
    namespace: tuple[str, ...] = PREFS,
    **tags: Any,
) -> CommitResult:
    """`remember` with default tags (support purpose, permanent, internal, source crm)."""
    tags = {
        "purpose": "support",
        "retention": "permanent",
        "sensitivity": "internal",
        "source": "crm",
        **tags,
    }
    return memory.remember(who, namespace, key, value, **tags)
