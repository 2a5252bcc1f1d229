"""Kill switches under 20 dispatching threads: nothing starts after a kill is acknowledged."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from guards.base import KillRecord, KillScope, KillTarget
from guards.killswitch import InMemoryKillSwitch
from guards.redis_killswitch import RedisKillSwitch
from guards.sqlite_killswitch import SqliteKillSwitch

THREADS = 20
WARM_DISPATCHES = 3
"""Dispatches every thread makes before the kill, so the kill lands mid-flight everywhere."""
WAIT_S = 30.0
WHO = {"requester": "ops:alice", "reason": "runaway refunds"}

Switch = InMemoryKillSwitch | RedisKillSwitch | SqliteKillSwitch


@dataclass
class Dispatch:
    """Threads running "check the switch, then act" loops, and what they did.

    Every loop iteration first takes a ticket from one global sequence, then checks, then (if
    allowed) appends its side effect tagged with that ticket. The main thread takes a ticket
    right after `kill()` returns: the acknowledgement. A side effect whose ticket is greater
    than the acknowledgement's passed a check that *started* after `kill()` returned, which a
    correct switch forbids; effects with smaller tickets were in flight and are allowed.
    """

    check: Callable[[KillTarget], KillRecord | None]
    """The checking side of the switch (another client than the killer's, for Redis)."""
    targets: Sequence[KillTarget]
    """One per thread."""
    effects: list[tuple[int, int]] = field(default_factory=list)
    """(thread, ticket) of every side effect, in the order they happened."""
    refused: dict[int, int] = field(default_factory=dict)
    """thread → ticket of the check that refused it (the thread then stops)."""
    dispatched: list[int] = field(default_factory=list)
    """Side effects per thread."""
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _tickets: Iterator[int] = field(default_factory=itertools.count)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        """Start one dispatch loop per target; return once each has acted a few times."""
        self.dispatched = [0] * len(self.targets)
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True)
            for i in range(len(self.targets))
        ]
        for thread in self._threads:
            thread.start()
        self.wait_until(lambda: min(self.dispatched) >= WARM_DISPATCHES)

    def acknowledge(self, kill: Callable[[], KillRecord]) -> tuple[int, int]:
        """Call `kill`; return the acknowledgement ticket and the side-effect count right then."""
        kill()
        with self._lock:
            return next(self._tickets), len(self.effects)

    def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Block (without sleeping) until `predicate` holds under the lock."""
        with self._lock:
            assert self._lock.wait_for(predicate, WAIT_S), (self.dispatched, self.refused)

    def finish(self) -> None:
        """Stop the loops that still run and wait for every thread."""
        self._stop.set()
        for thread in self._threads:
            thread.join(WAIT_S)
            assert not thread.is_alive()

    def late(self, ack: int) -> list[tuple[int, int]]:
        """Side effects whose check started after the acknowledgement."""
        return [(thread, ticket) for thread, ticket in self.effects if ticket > ack]

    def _loop(self, index: int) -> None:
        target = self.targets[index]
        while not self._stop.is_set():
            with self._lock:
                ticket = next(self._tickets)
            if self.check(target) is not None:
                with self._lock:
                    self.refused[index] = ticket
                    self._lock.notify_all()
                return
            with self._lock:
                self.effects.append((index, ticket))
                self.dispatched[index] += 1
                self._lock.notify_all()


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def killer_and_checker(request: pytest.FixtureRequest) -> Iterator[tuple[Switch, Switch]]:
    """The console's handle and the runtime's handle on one backend."""
    if request.param == "memory":
        shared = InMemoryKillSwitch()
        yield shared, shared
        return
    if request.param == "sqlite":
        path = request.getfixturevalue("tmp_path") / "kill.sqlite"
        with SqliteKillSwitch(path) as killer, SqliteKillSwitch(path) as checker:
            yield killer, checker
        return
    url = request.getfixturevalue("redis_url")
    with RedisKillSwitch(url) as killer, RedisKillSwitch(url) as checker:
        yield killer, checker


def _targets(tenants: Sequence[str]) -> list[KillTarget]:
    return [
        KillTarget(tenant=tenants[i % len(tenants)], workflow="refunds", run_id=f"run-{i}")
        for i in range(THREADS)
    ]


def test_no_side_effect_starts_after_a_global_kill_is_acknowledged(
    killer_and_checker: tuple[Switch, Switch],
) -> None:
    killer, checker = killer_and_checker
    dispatch = Dispatch(check=checker.check, targets=_targets(["acme"]))
    dispatch.start()
    ack, count_at_ack = dispatch.acknowledge(lambda: killer.kill(KillScope(kind="global"), **WHO))
    dispatch.wait_until(lambda: len(dispatch.refused) == THREADS)
    dispatch.finish()
    assert dispatch.late(ack) == []
    # At most the one in-flight action per thread lands after the acknowledgement.
    assert len(dispatch.effects) - count_at_ack <= THREADS


def test_a_tenant_kill_stops_only_that_tenants_threads(
    killer_and_checker: tuple[Switch, Switch],
) -> None:
    killer, checker = killer_and_checker
    dispatch = Dispatch(check=checker.check, targets=_targets(["acme", "globex"]))
    acme = {i for i, t in enumerate(dispatch.targets) if t.tenant == "acme"}
    globex = set(range(THREADS)) - acme
    dispatch.start()
    ack, _ = dispatch.acknowledge(
        lambda: killer.kill(KillScope(kind="tenant", value="acme"), **WHO)
    )
    after_ack = list(dispatch.dispatched)
    dispatch.wait_until(
        lambda: (
            set(dispatch.refused) == acme
            and all(dispatch.dispatched[i] >= after_ack[i] + WARM_DISPATCHES for i in globex)
        )
    )
    dispatch.finish()
    assert {thread for thread, _ in dispatch.late(ack)} == globex
    assert set(dispatch.refused) == acme


class _AcknowledgesBeforeVisible:
    """A deliberately wrong switch: `kill` returns at once and the kill takes effect later.

    It proves the harness above can fail: the guarantee it checks is not vacuous.
    """

    def __init__(self) -> None:
        self.inner = InMemoryKillSwitch()
        self.pending: KillScope | None = None

    def kill(self, scope: KillScope, *, requester: str, reason: str) -> KillRecord:
        self.pending = scope
        return KillRecord(scope=scope, requester=requester, reason=reason, at=0.0)

    def apply(self) -> None:
        assert self.pending is not None
        self.inner.kill(self.pending, **WHO)


def test_the_harness_catches_a_kill_acknowledged_before_it_is_visible() -> None:
    broken = _AcknowledgesBeforeVisible()
    dispatch = Dispatch(check=broken.inner.check, targets=_targets(["acme"]))
    dispatch.start()
    ack, _ = dispatch.acknowledge(lambda: broken.kill(KillScope(kind="global"), **WHO))
    dispatch.wait_until(lambda: bool(dispatch.late(ack)))
    broken.apply()
    dispatch.wait_until(lambda: len(dispatch.refused) == THREADS)
    dispatch.finish()
    assert dispatch.late(ack) != []
