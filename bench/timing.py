"""Shared timing helper: warm up, then time subjects interleaved and report median and p99."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Timing", "interleaved"]


@dataclass(frozen=True)
class Timing:
    """Wall-clock samples of one subject, in milliseconds."""

    samples_ms: list[float]
    """Every timed run, in order."""

    @property
    def median_ms(self) -> float:
        """Median run time."""
        return statistics.median(self.samples_ms)

    @property
    def p99_ms(self) -> float:
        """99th percentile run time (nearest rank)."""
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def interleaved(
    subjects: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 3,
    budget_s: float | None = None,
) -> dict[str, Timing]:
    """Time each subject `repeats` times, interleaved, after `warmup` untimed rounds.

    Rounds alternate the subject order (A B, then B A, ...) so neither subject always runs
    right after the other. One full GC runs after warm-up; the collector stays on while timing,
    so each subject pays for the garbage it makes.

    Args:
        subjects: name → zero-argument callable doing one run.
        repeats: timed runs per subject.
        warmup: untimed rounds first (imports, caches, JIT-like lazy setup).
        budget_s: stop early (after at least 3 rounds) once timing has taken this long.

    Returns:
        name → `Timing` with the same number of samples for every subject.
    """
    names = list(subjects)
    for _ in range(warmup):
        for name in names:
            subjects[name]()
    gc.collect()
    samples: dict[str, list[float]] = {name: [] for name in names}
    started = time.perf_counter()
    for round_no in range(repeats):
        for name in names if round_no % 2 == 0 else reversed(names):
            begin = time.perf_counter_ns()
            subjects[name]()
            samples[name].append((time.perf_counter_ns() - begin) / 1e6)
        if budget_s is not None and round_no >= 2 and time.perf_counter() - started > budget_s:
            break
    return {name: Timing(values) for name, values in samples.items()}
