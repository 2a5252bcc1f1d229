"""The session's forkserver for tests that run workers in other processes.

Each worker forks from a server that imported LangGraph and the support graph once (~1 s
saved per process) and runs no threads of its own, unlike the test process. There is one
server per session, started by the first test that forks, so every such test must use this
context. Python 3.11's forkserver preloads without this process's `sys.path`, so the worker
modules (found via tests/) may be skipped silently: the packages they use are named too.
"""

from __future__ import annotations

import multiprocessing

__all__ = ["FORKS"]

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
