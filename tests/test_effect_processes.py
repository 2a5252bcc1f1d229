"""Processes executing the same proposal at once against a shared effect ledger (Redis, SQLite)
produce one effect: one acts, the others wait and replay its result."""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from effect_worker import (
    DEADLINE_S,
    Outcome,
    Race,
    Signals,
    content_without_replay_mark,
    execute,
    open_ledger,
    read_counter,
)
from forks import FORKS, reap

from tools import SqliteEffectLedger

ROUNDS = 20


@dataclass(frozen=True, kw_only=True)
class Shared:
    """A backend the racers share."""

    backend: str
    """`sqlite` or `redis`."""
    ledger: str
    """The ledger file or the Redis URL."""
    folder: Path
    """Where per-round counter files go (SQLite)."""

    def race(self, name: str) -> Race:
        """A race on a fresh idempotency key and a fresh counter."""
        counter = str(self.folder / f"{name}.log") if self.backend == "sqlite" else f"n:{name}"
        return Race(backend=self.backend, ledger=self.ledger, counter=counter, thread_id=name)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shared]:
    """The shared ledger: a SQLite file (created once, as a deployment would) or real Redis."""
    if request.param == "redis":
        yield Shared(backend="redis", ledger=request.getfixturevalue("redis_url"), folder=tmp_path)
        return
    path = tmp_path / "effects.sqlite"
    SqliteEffectLedger(path).close()
    yield Shared(backend="sqlite", ledger=str(path), folder=tmp_path)


def _run(race: Race, racers: int) -> list[Outcome]:
    """Start `racers` processes on `race`; release the acting one once all others poll."""
    signals = Signals(
        start=FORKS.Barrier(racers),
        acting=FORKS.Event(),
        actor=FORKS.Value("i", -1),
        busy=[FORKS.Event() for _ in range(racers)],
        release=FORKS.Event(),
    )
    results: multiprocessing.Queue[Outcome] = FORKS.Queue()
    procs = [
        FORKS.Process(target=execute, args=(race, i, signals, results), name=f"racer-{i}")
        for i in range(racers)
    ]
    for proc in procs:
        proc.start()
    try:
        assert signals.acting.wait(DEADLINE_S), f"{race}: no racer acted"
        actor = signals.actor.value
        for i, busy in enumerate(signals.busy):
            if i != actor:
                assert busy.wait(DEADLINE_S), f"{race}: racer {i} never found the claim busy"
        signals.release.set()
        outcomes = [results.get(timeout=DEADLINE_S) for _ in procs]
    except queue.Empty:
        pytest.fail(f"{race}: a racer did not report within {DEADLINE_S}s")
    finally:
        signals.release.set()
        reap(procs, DEADLINE_S)
    assert [proc.exitcode for proc in procs] == [0] * racers, race
    return sorted(outcomes, key=lambda outcome: outcome.index)


def _assert_one_effect(shared: Shared, race: Race, outcomes: list[Outcome]) -> None:
    assert read_counter(race) == 1, f"{race}: the effect happened {read_counter(race)} times"
    assert all(o.ok for o in outcomes), outcomes
    acted = [o for o in outcomes if not o.replayed]
    assert len(acted) == 1 and acted[0].ran, f"{race}: {outcomes}"
    assert all(not o.ran for o in outcomes if o.replayed), outcomes
    contents = {str(content_without_replay_mark(o.content)) for o in outcomes}
    assert len(contents) == 1, f"{race}: the racers got different results: {contents}"
    assert len({o.key for o in outcomes}) == 1, outcomes
    record = open_ledger(race).get(outcomes[0].key)
    assert record is not None and record.status == "done" and record.attempts == 1, record


def test_two_processes_executing_one_proposal_make_one_effect(shared: Shared) -> None:
    """20 rounds, each on a fresh key: one process acts, the other replays its result."""
    for n in range(ROUNDS):
        race = shared.race(f"pair-{n}")
        _assert_one_effect(shared, race, _run(race, racers=2))


def test_eight_processes_executing_one_proposal_make_one_effect(shared: Shared) -> None:
    race = shared.race("eight")
    _assert_one_effect(shared, race, _run(race, racers=8))
