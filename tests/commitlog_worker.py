"""A worker process that appends commits to a shared commit log, racing others for each
position and retrying at the new head when it loses.

`tests/conformance/test_commit_log.py` forks these from the session's forkserver.
"""

from __future__ import annotations

import os
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from memory.base import CommitLog
from memory.commitlog import SqliteCommitLog
from memory.redis_commitlog import RedisCommitLog

__all__ = ["DEADLINE_S", "MAX_TRIES", "append_many", "open_log"]

DEADLINE_S = 30.0
"""Longest the test waits for a worker; a slow machine fails loudly instead of hanging."""
MAX_TRIES = 10_000
"""Appends one commit may lose before the worker gives up (a livelock would need many)."""


def open_log(backend: str, address: str) -> CommitLog:
    """A new handle on the shared log: `sqlite` (a file) or `redis` (a URL)."""
    if backend == "sqlite":
        return SqliteCommitLog(address)
    return RedisCommitLog(address)


def append_many(
    backend: str, address: str, tenant: str, count: int, start: Barrier, results: Queue
) -> None:
    """Append `count` commits of this process at the head, retrying each lost race; report
    `(pid, ids appended, races lost)`, or `(pid, error text, -1)` on failure."""
    pid = os.getpid()
    try:
        log = open_log(backend, address)
        start.wait(DEADLINE_S)
        ids, lost = [], 0
        for n in range(count):
            commit_id = f"p{pid}-{n}"
            for _ in range(MAX_TRIES):
                head = log.head(tenant)
                if log.append(tenant, (head.seq if head else 0) + 1, commit_id):
                    break
                lost += 1
            else:
                raise RuntimeError(f"`{commit_id}` lost {MAX_TRIES} races in a row")
            ids.append(commit_id)
        log.close()
        results.put((pid, ids, lost))
    except Exception as error:  # reported to the test, which names it
        results.put((pid, f"{type(error).__name__}: {error}", -1))
