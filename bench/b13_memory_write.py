"""B13 memory cost: a versioned, governed write and recall vs the bare LangGraph store call."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.redis_server import redis_server
from bench.timing import Timing, interleaved
from memory import MemoryScope, VersionedMemory, open_memory

__all__ = ["run"]

SCOPE = MemoryScope(tenant="acme", agent="bench", purposes=frozenset({"support"}), run_id="b13")
NAMESPACE = ("customers", "alice")
RECORDS = 2_000
"""Records in the namespace before timing recalls."""
WRITE_REPEATS, RECALL_REPEATS, BUDGET_S = 600, 600, 6.0
TAGS: dict[str, Any] = {"purpose": "support", "retention": "profile", "sensitivity": "internal"}


def _value(i: int) -> dict[str, Any]:
    return {"text": f"customer {i} prefers email replies about order ORD-{1000 + i}", "n": i}


def _subjects(memory: VersionedMemory) -> dict[str, Callable[[], object]]:
    """Versioned subjects and their bare-store baselines, on the same long-term store."""
    store, counter = memory.long, itertools.count()
    bare_space = ("acme", "bare", *NAMESPACE)

    def remember() -> None:
        i = next(counter)
        memory.remember(SCOPE, NAMESPACE, f"w{i}", _value(i), **TAGS)

    def put() -> None:
        i = next(counter)
        store.put(bare_space, f"w{i}", {**_value(i)}, index=["text"])

    def recall() -> None:
        memory.recall(SCOPE, "email replies about ORD-1500", namespace=NAMESPACE, limit=10)

    def search() -> None:
        store.search(("acme", "memory", *NAMESPACE), query="email replies about ORD-1500", limit=10)

    return {"remember": remember, "put": put, "recall": recall, "search": search}


def _seed(memory: VersionedMemory) -> None:
    for start in range(0, RECORDS, 500):
        with memory.session(SCOPE, "seed") as session:
            for i in range(start, start + 500):
                session.remember(NAMESPACE, f"r{i}", _value(i), **TAGS)


def _measure(memory: VersionedMemory, label: str) -> dict[str, Any]:
    _seed(memory)
    subjects = _subjects(memory)
    writes = interleaved(
        {k: subjects[k] for k in ("remember", "put")}, repeats=WRITE_REPEATS, budget_s=BUDGET_S
    )
    reads = interleaved(
        {k: subjects[k] for k in ("recall", "search")}, repeats=RECALL_REPEATS, budget_s=BUDGET_S
    )
    return {
        **_pair(f"write_{label}", writes["remember"], writes["put"]),
        **_pair(f"recall_{label}", reads["recall"], reads["search"]),
    }


def _pair(name: str, subject: Timing, baseline: Timing) -> dict[str, Any]:
    return {
        f"{name}_ms": round(subject.median_ms, 3),
        f"{name}_p99_ms": round(subject.p99_ms, 3),
        f"{name}_bare_ms": round(baseline.median_ms, 3),
        f"{name}_ratio": round(subject.median_ms / baseline.median_ms, 2),
    }


def run() -> dict[str, Any]:
    """Measure B13 (value: median ms of one committed write, embedded)."""
    with tempfile.TemporaryDirectory() as home, open_memory(home=Path(home)) as memory:
        embedded = _measure(memory, "embedded")
    with redis_server(modules=True) as url, open_memory(redis_url=url) as memory:
        redis = _measure(memory, "redis")
    return {
        "id": "B13",
        "name": "memory write (one commit) and governed recall vs the bare store call",
        "value": embedded["write_embedded_ms"],
        "unit": "ms",
        "baseline": embedded["write_embedded_bare_ms"],
        "ratio": embedded["write_embedded_ratio"],
        **embedded,
        **redis,
        "records": RECORDS,
    }


if __name__ == "__main__":
    print(run())
