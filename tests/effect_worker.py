"""A worker process that executes one side-effecting proposal through the gateway, racing
others that execute the same proposal against the same effect ledger.

`tests/test_effect_processes.py` forks these from a forkserver. The tool's effect (a Redis
INCR, or a line appended to a file) is not deduped downstream and the tool is declared not
idempotent, so only the ledger stands between the racers and a second effect.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import redis
from pydantic import BaseModel

from tools import (
    EffectLedger,
    ExecutionGateway,
    RedisEffectLedger,
    SqliteEffectLedger,
    ToolContext,
    ToolInvocation,
    ToolRegistry,
    ToolSpec,
    tool_contract,
)

__all__ = [
    "DEADLINE_S",
    "Outcome",
    "Race",
    "Signals",
    "content_without_replay_mark",
    "execute",
    "open_ledger",
    "read_counter",
]

DEADLINE_S = 30.0
"""Longest any racer waits for another; far below the tool's lease (36 s), so a slow machine
fails the test loudly instead of letting a live claim be taken over."""
TENANT = "acme"


@dataclass(frozen=True, kw_only=True)
class Race:
    """The shared backends of one race."""

    backend: str
    """`sqlite` or `redis`: the ledger, and where the counter lives."""
    ledger: str
    """The ledger file, or the Redis URL (which also holds the counter)."""
    counter: str
    """The counter: a file (one line per effect) or a Redis key."""
    thread_id: str
    """Thread of the proposal: a fresh one makes a fresh idempotency key."""


@dataclass(frozen=True, kw_only=True)
class Signals:
    """How the racers and the test coordinate, without sleeping."""

    start: Barrier
    """Every racer waits here, then executes at once."""
    acting: Event
    """Set by the racer whose call runs, once it has made its effect."""
    actor: Synchronized[int]
    """Index of that racer."""
    busy: list[Event]
    """Per racer: set when it found the claim held by another and polls."""
    release: Event
    """Set by the test once every other racer polls: the acting call may return."""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one racer's `ExecutionGateway.execute` returned."""

    index: int
    """The racer."""
    ok: bool
    """`ToolResult.ok`."""
    content: str
    """`ToolResult.content`."""
    replayed: bool
    """`ToolResult.replayed`."""
    ran: bool
    """`ToolResult.ran`."""
    key: str
    """`ToolResult.idempotency_key`."""


class BumpReceipt(BaseModel):
    """The counter's value after the increment, and who made it."""

    value: int
    pid: int


def open_ledger(race: Race) -> EffectLedger:
    """The race's shared effect ledger."""
    if race.backend == "redis":
        return RedisEffectLedger(race.ledger)
    return SqliteEffectLedger(race.ledger)


def read_counter(race: Race) -> int:
    """How many effects the counter holds."""
    if race.backend == "redis":
        client = redis.Redis.from_url(race.ledger)
        try:
            return int(client.get(race.counter) or 0)
        finally:
            client.close()
    path = Path(race.counter)
    return len(path.read_text().splitlines()) if path.exists() else 0


def _increment(race: Race) -> int:
    if race.backend == "redis":
        client = redis.Redis.from_url(race.ledger)
        try:
            return int(client.incr(race.counter))
        finally:
            client.close()
    with open(race.counter, "a") as counter:
        counter.write(f"{os.getpid()}\n")
    return read_counter(race)


def _bump_tool(race: Race, index: int, signals: Signals) -> ToolSpec:
    @tool_contract(side_effect="irreversible", idempotent=False)
    def bump(amount: int, *, ctx: ToolContext) -> BumpReceipt:
        """Add one to the shared counter; a second call adds one again."""
        value = _increment(race)
        signals.actor.value = index
        signals.acting.set()
        # Hold the claim until every other racer has found it busy.
        if not signals.release.wait(DEADLINE_S):
            raise RuntimeError(f"racer {index}: no release within {DEADLINE_S}s")
        return BumpReceipt(value=value, pid=os.getpid())

    return bump


def execute(race: Race, index: int, signals: Signals, results: Queue[Outcome]) -> None:
    """Racer `index`: wait for the others, execute the shared proposal, report the result."""
    busy = signals.busy[index]

    def poll_wait(seconds: float) -> None:  # the gateway only waits here when the key is busy
        busy.set()
        time.sleep(seconds)

    gateway = ExecutionGateway(
        ToolRegistry([_bump_tool(race, index, signals)]),
        effects=open_ledger(race),
        sleep=poll_wait,
    )
    invocation = ToolInvocation(
        tool="bump",
        args={"amount": 1},
        call_id=f"call-{index}",  # the model's ids differ; the proposal is the same
        tenant=TENANT,
        thread_id=race.thread_id,
        agent="billing",
        run_id=f"run-{index}",
    )
    signals.start.wait(DEADLINE_S)
    result = gateway.execute(invocation)
    results.put(
        Outcome(
            index=index,
            ok=result.ok,
            content=result.content,
            replayed=result.replayed,
            ran=result.ran,
            key=result.idempotency_key or "",
        )
    )


def content_without_replay_mark(content: str) -> Any:
    """A result's JSON content without the `replayed` flag a replay adds."""
    value = json.loads(content)
    value.pop("replayed", None)
    return value
