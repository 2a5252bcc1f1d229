"""B9 kill switch: time from `kill()` to no further dispatch across 20 concurrent runs."""

from __future__ import annotations

import itertools
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.redis_server import redis_server
from bench.timing import Timing
from guards.base import KillScope, KillSwitch, KillTarget
from guards.killswitch import InMemoryKillSwitch
from guards.redis_killswitch import RedisKillSwitch
from guards.sqlite_killswitch import SqliteKillSwitch

__all__ = ["run"]

THREADS = 20
KILLS = 10
"""Timed kills per backend; each yields one sample per thread."""
TOOL_S = 0.0002
"""The simulated tool call after each allowed check."""
WARM_DISPATCHES = 3
MAX_KILL_DELAY_S = 0.01
"""The kill lands at a random moment up to this long after every thread is dispatching."""
WAIT_S = 30.0
GOAL_MS = 5.0
CHECK_SAMPLES = 20_000
"""Timed single `check` calls on the SQLite switch (after as many untimed ones)."""
CHECK_GOAL_US = 30.0
WHO = {"requester": "bench", "reason": "B9"}


@dataclass
class _Round:
    """One kill against THREADS dispatch loops, and what each loop saw."""

    switch: KillSwitch
    lock: threading.Condition = field(default_factory=threading.Condition)
    tickets: Iterator[int] = field(default_factory=itertools.count)
    dispatched: list[int] = field(default_factory=lambda: [0] * THREADS)
    last_start_ns: list[int] = field(default_factory=lambda: [0] * THREADS)
    refused_ns: list[int] = field(default_factory=lambda: [0] * THREADS)
    tickets_of_effects: list[int] = field(default_factory=list)

    def loop(self, index: int) -> None:
        """Check, then act (a ~0.2 ms tool call), until the switch refuses."""
        target = KillTarget(tenant="acme", workflow="refunds", run_id=f"run-{index}")
        while True:
            with self.lock:
                ticket = next(self.tickets)
            refused = self.switch.check(target) is not None
            now = time.perf_counter_ns()
            if refused:
                self.refused_ns[index] = now
                return
            with self.lock:
                self.tickets_of_effects.append(ticket)
                self.last_start_ns[index] = now
                self.dispatched[index] += 1
                self.lock.notify_all()
            time.sleep(TOOL_S)

    def run(self, killer: KillSwitch, delay_s: float) -> dict[str, Any]:
        """Kill after `delay_s` and wait for every loop to stop.

        Returns:
            `stop_ms` (per thread, kill() call → first refused check), `last_ms` (per thread,
            kill() call → last side effect start, 0 if before), `ack_ms` (kill() duration) and
            `late` (side effects whose check started after kill() returned).
        """
        threads = [threading.Thread(target=self.loop, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        with self.lock:
            self.lock.wait_for(lambda: min(self.dispatched) >= WARM_DISPATCHES, WAIT_S)
        time.sleep(delay_s)  # not synchronisation: it puts the kill at a random moment
        kill_ns = time.perf_counter_ns()
        killer.kill(KillScope(kind="global"), **WHO)
        ack_ns = time.perf_counter_ns()
        with self.lock:
            ack = next(self.tickets)
        for thread in threads:
            thread.join(WAIT_S)
        killer.lift(KillScope(kind="global"), **WHO)
        return {
            "stop_ms": [(t - kill_ns) / 1e6 for t in self.refused_ns],
            "last_ms": [max(0.0, (t - kill_ns) / 1e6) for t in self.last_start_ns],
            "ack_ms": [(ack_ns - kill_ns) / 1e6],
            "late": sum(1 for ticket in self.tickets_of_effects if ticket > ack),
        }


def _measure(killer: KillSwitch, checker: KillSwitch, rng: random.Random) -> dict[str, Any]:
    """One untimed warm-up kill, then KILLS timed ones; p50 / p99 of every series."""
    _Round(checker).run(killer, 0.0)
    series: dict[str, list[float]] = {"stop_ms": [], "last_ms": [], "ack_ms": []}
    late = 0
    for _ in range(KILLS):
        observed = _Round(checker).run(killer, rng.uniform(0, MAX_KILL_DELAY_S))
        for name, samples in series.items():
            samples += observed[name]
        late += observed["late"]
    stop, last, ack = (Timing(series[name]) for name in ("stop_ms", "last_ms", "ack_ms"))
    return {
        "p99": stop.p99_ms,
        "p50": stop.median_ms,
        "last_dispatch_p99": last.p99_ms,
        "kill_ack_p50": ack.median_ms,
        "late": late,
        "samples": len(stop.samples_ms),
    }


def _check_us(switch: KillSwitch) -> dict[str, float]:
    """p50 / p99 of one `check` (no kill covers the target, a few others are in force), in µs."""
    for n in range(20):
        switch.kill(KillScope(kind="run", value=f"elsewhere-{n}"), **WHO)
    target = KillTarget(tenant="acme", workflow="refunds", run_id="run-0")
    for _ in range(CHECK_SAMPLES):
        switch.check(target)
    samples = []
    for _ in range(CHECK_SAMPLES):
        begin = time.perf_counter_ns()
        switch.check(target)
        samples.append((time.perf_counter_ns() - begin) / 1e6)
    timing = Timing(samples)
    for n in range(20):
        switch.lift(KillScope(kind="run", value=f"elsewhere-{n}"), **WHO)
    return {"p50": timing.median_ms * 1000, "p99": timing.p99_ms * 1000}


def _measure_sqlite(rng: random.Random) -> dict[str, Any]:
    """B9 with the console and the runtime on two `SqliteKillSwitch`es over one file."""
    with tempfile.TemporaryDirectory() as workdir:
        path = f"{workdir}/kill.sqlite"
        with SqliteKillSwitch(path) as killer, SqliteKillSwitch(path) as checker:
            measured = _measure(killer, checker, rng)
            check = _check_us(checker)
    measured["check_us_p50"], measured["check_us_p99"] = check["p50"], check["p99"]
    return measured


def run() -> dict[str, Any]:
    """Measure B9 for the in-process switch, SQLite (a temporary file) and Redis (on a server
    started here); for SQLite also the cost of one `check`."""
    rng = random.Random(9)
    memory = InMemoryKillSwitch()
    local = _measure(memory, memory, rng)
    result: dict[str, Any] = {
        "id": "B9",
        "name": f"kill switch: kill → no further dispatch, {THREADS} concurrent runs",
        "value": round(local["p99"], 3),
        "unit": "ms",
        "p50": round(local["p50"], 3),
        "last_dispatch_p99": round(local["last_dispatch_p99"], 3),
        "samples": local["samples"],
        "goal": f"p99 ≤ {GOAL_MS} ms, 0 side effects after ack",
    }
    late = local["late"]
    embedded = _measure_sqlite(rng)
    for name in ("p99", "p50", "last_dispatch_p99", "kill_ack_p50", "check_us_p50", "check_us_p99"):
        result[f"sqlite_{name}"] = round(embedded[name], 3)
    result["sqlite_check_goal"] = f"p50 ≤ {CHECK_GOAL_US} µs"
    late += embedded["late"]
    with redis_server() as url, RedisKillSwitch(url) as killer, RedisKillSwitch(url) as checker:
        remote = _measure(killer, checker, rng)
    for name in ("p99", "p50", "last_dispatch_p99", "kill_ack_p50"):
        result[f"redis_{name}"] = round(remote[name], 3)
    late += remote["late"]
    result["side_effects_after_ack"] = late
    return result


if __name__ == "__main__":
    print(run())
