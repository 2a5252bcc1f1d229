"""The session's forkserver for tests that run workers in other processes.

Each worker forks from a server that imported LangGraph and the support graph once (~1 s
saved per process) and runs no threads of its own, unlike the test process. There is one
server per session, started by the first test that forks, so every such test must use this
context. Python 3.11's forkserver preloads without this process's `sys.path`, so the worker
modules (found via tests/) may be skipped silently: the packages they use are named too.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

import pytest

__all__ = ["FORKS", "reap", "run_together"]

FORKS = multiprocessing.get_context("forkserver")
FORKS.set_forkserver_preload(
    [
        "graphs.support",
        "memory",
        "langgraph.checkpoint.sqlite",
        "redis",
        "crash_worker",
        "effect_worker",
    ]
)


def run_together(
    target: Callable[..., None], args: Sequence[Any], count: int, deadline_s: float
) -> list[Any]:
    """Run `target(*args, start, results)` in `count` processes released together by the
    barrier `start`; each puts one report on `results`. Returns the reports (in arrival
    order); fails the test if one is missing after `deadline_s` or a process exits non-zero."""
    start, results = FORKS.Barrier(count), FORKS.Queue()
    procs = [FORKS.Process(target=target, args=(*args, start, results)) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=deadline_s) for _ in procs]
    except queue.Empty:
        pytest.fail(f"a worker did not report within {deadline_s}s")
    finally:
        reap(procs, deadline_s)
    assert [proc.exitcode for proc in procs] == [0] * count
    return reports


def reap(procs: Sequence[BaseProcess], deadline_s: float) -> None:
    """Join every process, killing those still alive after `deadline_s`."""
    for proc in procs:
        proc.join(deadline_s)
        if proc.is_alive():
            proc.kill()
            proc.join()
