"""Every registered benchmark imports and exposes `run` (so `make bench` cannot rot unseen;
how fast they run is for `make bench` itself, never for the test suite)."""

from __future__ import annotations

import importlib

import pytest

from bench.__main__ import BENCHMARKS


@pytest.mark.parametrize("bench_id", sorted(BENCHMARKS))
def test_benchmark_module_imports_and_has_run(bench_id: str) -> None:
    module = importlib.import_module(BENCHMARKS[bench_id])
    assert callable(getattr(module, "run", None)), f"{BENCHMARKS[bench_id]} has no run()"


def test_benchmark_ids_are_stable() -> None:
    assert {"B1", "B3", "B7", "B8", "B9", "B11", "B12"} <= set(BENCHMARKS)


def test_only_run_keeps_the_other_ids_latest_results() -> None:
    from bench.__main__ import merged

    previous = [{"id": "B6", "value": 0.5}, {"id": "B1", "value": 9.0}, {"id": "B8", "value": 12}]
    result = merged(previous, [{"id": "B8", "value": 10}])
    assert result == [
        {"id": "B1", "value": 9.0},
        {"id": "B6", "value": 0.5},
        {"id": "B8", "value": 10},
    ]
