"""One tenant's vectors: a float32 matrix plus a usearch HNSW graph over it, and its lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import regopy  # noqa: F401  (must load before usearch: see below)
from usearch.index import Index

# usearch's extension carries its own C++ runtime; when it loads before regopy's, regopy's
# policies mis-evaluate and its compile errors lose their line numbers (the support graph's
# approvals and tests/test_policy_bundle.py fail). Loaded after regopy, both work:
# tests/test_import_order.py pins it.

__all__ = ["HnswParams", "RWLock", "Ref", "VectorPartition"]

Ref = tuple[tuple[str, ...], str]
"""(namespace, key) of an item."""


@dataclass(frozen=True, kw_only=True)
class HnswParams:
    """HNSW settings of each tenant's usearch index (defaults: recall@10 ≈ 0.97 at 100k x 384)."""

    connectivity: int = 16
    """Graph edges per node ("M"); more is better recall, more memory, slower inserts."""
    expansion_add: int = 64
    """Search depth while inserting ("efConstruction"); more is a better graph, slower build."""
    expansion_search: int = 64
    """Search depth per query ("ef"); the main recall / latency knob."""
    oversample: int = 4
    """ANN candidates fetched per wanted result; they are re-scored exactly before ranking."""
    dtype: str = "i8"
    """Vector type inside the graph; exact re-scoring uses the float32 copy. On 384-dim unit
    vectors (100k, M=16, ef=64) i8 measured best: recall@10 0.988 vs f16 0.971, and faster."""
    threads: int = 0
    """Threads for builds and bulk inserts (0: all cores); queries use one."""


class RWLock:
    """Many readers or one writer; a waiting writer holds back new readers (no starvation).

    usearch searches may run concurrently, but not alongside `add`/`remove` (which can grow
    and move the graph), and numpy reads must not see the matrix while it is reallocated.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = self._waiting = 0
        self._writing = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not (self._writing or self._waiting))
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not (self._writing or self._readers))
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class VectorPartition:
    """One tenant's vectors: a float32 matrix (slot = usearch label) plus an HNSW over it."""

    def __init__(self, dims: int, params: HnswParams) -> None:
        self.lock = RWLock()
        self.loaded = False
        self.params = params
        self.matrix = np.zeros((0, dims), dtype=np.float32)
        self.live = np.zeros(0, dtype=bool)
        self.refs: list[Ref | None] = []
        self.slots: dict[Ref, tuple[int, ...]] = {}
        """Slots of each item (tuples, not lists: the GC can skip them; 100k items here)."""
        self.free: list[int] = []
        self.hnsw: Index | None = None
        self.removed = 0
        """Labels removed from `hnsw` since it was built (tombstones cost recall; see `_tidy`)."""

    def __len__(self) -> int:
        return len(self.refs) - len(self.free)

    def replace(self, changes: Sequence[tuple[Ref, np.ndarray]], exact_below: int) -> None:
        """Give each item exactly the vectors given (an empty array drops it from the index).

        Each ref appears at most once in `changes`.
        """
        dropped = [slot for ref, _ in changes for slot in self.slots.pop(ref, ())]
        for slot in dropped:
            self.refs[slot] = None
        self.live[dropped] = False
        self.free.extend(dropped)
        wanted = sum(len(vectors) for _, vectors in changes)
        self._grow(wanted - len(self.free))
        added: list[int] = []
        for ref, vectors in changes:
            if len(vectors):
                slots = [self.free.pop() for _ in range(len(vectors))]
                for slot in slots:
                    self.refs[slot] = ref
                self.slots[ref] = tuple(slots)
                self.matrix[slots] = vectors
                added += slots
        self.live[added] = True
        if self.hnsw is not None and dropped:  # before adding: a freed label may be reused
            gone = self.hnsw.remove(np.asarray(dropped, dtype=np.uint64))
            self.removed += len(dropped)
            if int(np.sum(gone)) != len(dropped):  # the graph's key table disagrees: rebuild
                self.hnsw = None
        if self.hnsw is not None and added:
            self._add(np.asarray(added, dtype=np.uint64))
        self._tidy(exact_below)

    def _grow(self, extra: int) -> None:
        if extra <= 0:
            return
        start, dims = len(self.refs), self.matrix.shape[1]
        if start + extra > len(self.matrix):
            capacity = max(start + extra, 2 * len(self.matrix), 256)
            matrix = np.zeros((capacity, dims), dtype=np.float32)
            matrix[:start] = self.matrix[:start]
            live = np.zeros(capacity, dtype=bool)
            live[:start] = self.live[:start]
            self.matrix, self.live = matrix, live
        self.refs.extend([None] * extra)
        self.free.extend(range(start + extra - 1, start - 1, -1))  # popped lowest first

    def _add(self, labels: np.ndarray) -> None:
        assert self.hnsw is not None
        threads = self.params.threads if len(labels) > 256 else 1
        self.hnsw.add(labels, self.matrix[labels.astype(np.int64)], threads=threads)

    def _tidy(self, exact_below: int) -> None:
        """Build the graph once the partition is big enough, rebuild it after heavy churn.

        Removed labels stay as tombstones in the graph; past half the live count they cost
        several points of recall@10 (measured: 0.98 → 0.91 after a 2x turnover).
        """
        if len(self) >= max(exact_below, 1) and (
            self.hnsw is None or self.removed > len(self) // 2
        ):
            p = self.params
            self.hnsw = Index(
                ndim=self.matrix.shape[1],
                metric="ip",
                dtype=p.dtype,
                connectivity=p.connectivity,
                expansion_add=p.expansion_add,
                expansion_search=p.expansion_search,
            )
            self.removed = 0
            self._add(np.flatnonzero(self.live).astype(np.uint64))

    def ann(self, query: np.ndarray, count: int) -> tuple[list[tuple[float, Ref]], int]:
        """Approximate best items, re-scored exactly, one per item; and the labels examined."""
        assert self.hnsw is not None
        slots = self.hnsw.search(query, count=count, threads=1).keys.astype(np.int64)
        return self._ranked(slots, self.matrix[slots] @ query), len(slots)

    def exact(self, query: np.ndarray, count: int) -> tuple[list[tuple[float, Ref]], int]:
        """The items of the `count` best vectors, by brute force; and the labels examined."""
        used = len(self.refs)
        scores = self.matrix[:used] @ query
        top = np.flatnonzero(self.live[:used])
        if count < len(top):  # back in slot order, so ties rank like insertion order
            top = np.sort(top[np.argpartition(-scores[top], count)[:count]])
        return self._ranked(top, scores[top]), len(top)

    def _ranked(self, slots: np.ndarray, scores: np.ndarray) -> list[tuple[float, Ref]]:
        """(score, ref) best first, each item once (at its best vector: max pooling)."""
        order = np.argsort(-scores, kind="stable")
        ranked = zip(
            scores[order].tolist(), [self.refs[s] for s in slots[order].tolist()], strict=True
        )
        if len(self.slots) == len(self):  # one vector per item: nothing to pool
            return [(score, ref) for score, ref in ranked if ref is not None]
        seen: set[Ref] = set()
        out: list[tuple[float, Ref]] = []
        for score, ref in ranked:
            if ref is not None and ref not in seen:
                seen.add(ref)
                out.append((score, ref))
        return out
