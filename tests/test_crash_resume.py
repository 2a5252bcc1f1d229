"""SIGKILL a support run at random points around its side effects, resume it in a new process,
and find exactly the effects of an uncrashed run: one per logical call, in every trial.

Trials are drawn from a seeded RNG: a fixed seed, so every CI run plays the same trials, or
`BASTION_CRASH_SEED` to explore others (every failure message names the seed and the trial).
"""

from __future__ import annotations

import json
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from crash_worker import (
    KILL_POINTS,
    TICKETS,
    Trial,
    crash,
    effect_count,
    effect_rows,
    ledger_statuses,
    resume,
    run_uncrashed,
)
from forks import FORKS

from tools import DurabilityError

SEED = int(os.environ.get("BASTION_CRASH_SEED") or 20261121)
TRIALS_PER_MODE = 50
EFFECTS_PER_TICKET = 3
MODES = ("sync", "async")
DEADLINE_S = 60.0


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Where one trial's worker dies."""

    durability: str
    """Durability mode of the crashed run and of its resume."""
    index: int
    """Trial number within its mode."""
    ticket: str
    """Ticket the trial runs."""
    point: str
    """Kill point (see `crash_worker`)."""
    k: int
    """The side-effecting call (1-based) at which the worker dies."""

    @property
    def name(self) -> str:
        """The trial's test id."""
        return f"{self.durability}-{self.index:02d}"

    def describe(self) -> str:
        """The trial and how to run it again, for failure messages."""
        return (
            f"trial {self.name} (seed {SEED}): ticket {self.ticket} ({TICKETS[self.ticket]}), "
            f"killed at {self.point} of side-effecting call {self.k}, durability "
            f"{self.durability!r}. Replay: BASTION_CRASH_SEED={SEED} pytest "
            f"tests/test_crash_resume.py -k {self.name}"
        )


def _plans(durability: str) -> list[Plan]:
    """`TRIALS_PER_MODE` trials: every (point, call) pair in turn, shuffled, on random tickets."""
    rng = random.Random(f"{SEED}:{durability}")
    pairs = [(point, k) for point in KILL_POINTS for k in range(1, EFFECTS_PER_TICKET + 1)]
    chosen: list[tuple[str, int]] = []
    while len(chosen) < TRIALS_PER_MODE:
        rng.shuffle(pairs)
        chosen += pairs
    return [
        Plan(durability=durability, index=i, ticket=rng.choice(sorted(TICKETS)), point=p, k=k)
        for i, (p, k) in enumerate(chosen[:TRIALS_PER_MODE])
    ]


PLANS = [plan for mode in MODES for plan in _plans(mode)]


@dataclass(frozen=True, kw_only=True)
class Reference:
    """What an uncrashed run of a ticket leaves behind."""

    rows: dict[str, list[tuple[Any, ...]]]
    """Its effect rows (see `crash_worker.effect_rows`)."""
    status: str
    """Its outcome status."""


def _fork(target: Callable[[Trial], None], trial: Trial) -> int | None:
    """Run `target(trial)` in a process forked from the server; its exit code."""
    proc = FORKS.Process(target=target, args=(trial,), name=f"crash-{target.__name__}")
    proc.start()
    proc.join(DEADLINE_S)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail(f"`{target.__name__}` of {trial} did not finish within {DEADLINE_S}s")
    return proc.exitcode


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reference]:
    """Each ticket run once, uncrashed, on fresh files."""
    found = {}
    for ticket, tenant in TICKETS.items():
        trial = Trial(
            folder=tmp_path_factory.mktemp(f"reference-{ticket}"),
            ticket=ticket,
            tenant=tenant,
            durability="sync",
        )
        assert _fork(run_uncrashed, trial) == 0, f"the reference run of {ticket} failed"
        rows = effect_rows(trial.path("support"))
        assert effect_count(rows) == EFFECTS_PER_TICKET, f"{ticket} made other effects: {rows}"
        assert ledger_statuses(trial.path("effects")) == ["done"] * EFFECTS_PER_TICKET
        status = json.loads(trial.path("outcome").read_text())["status"]
        found[ticket] = Reference(rows=rows, status=status)
    return found


def _assert_killed_at_point(plan: Plan, trial: Trial) -> None:
    """The effects and ledger records the dead worker left show where it died."""
    where = plan.describe()
    effects = effect_count(effect_rows(trial.path("support")))
    statuses = ledger_statuses(trial.path("effects"))
    if plan.point == "before_checkpoint" and plan.durability == "async":
        # `async` saves in the background while the next steps run, and those may reach the
        # next effects before the save that follows effect k is attempted.
        assert statuses[: plan.k] == ["done"] * plan.k, f"{statuses}; {where}"
        assert plan.k <= effects <= len(statuses), f"{effects} effects, {statuses}; {where}"
        return
    unsettled = plan.point in ("before_call", "after_write")  # the claim is still pending
    assert effects == (plan.k - 1 if plan.point == "before_call" else plan.k), where
    assert statuses == ["done"] * (plan.k - 1) + ["pending" if unsettled else "done"], where


@pytest.mark.slow
@pytest.mark.parametrize("plan", PLANS, ids=[plan.name for plan in PLANS])
def test_killed_run_resumes_with_exactly_one_effect_per_call(
    plan: Plan, references: dict[str, Reference], tmp_path: Path
) -> None:
    """The worker dies at the plan's point (proved by the effects and ledger it leaves); a new
    process resumes the thread to the reference outcome with exactly the reference effects."""
    trial = Trial(
        folder=tmp_path,
        ticket=plan.ticket,
        tenant=TICKETS[plan.ticket],
        durability=plan.durability,
        point=plan.point,
        k=plan.k,
    )
    where = plan.describe()
    code = _fork(crash, trial)
    assert code == -signal.SIGKILL, f"the worker exited with {code} instead of dying; {where}"
    _assert_killed_at_point(plan, trial)

    assert _fork(resume, trial) == 0, f"the resume failed; {where}"
    reference = references[plan.ticket]
    outcome = json.loads(trial.path("outcome").read_text())
    assert outcome["status"] == reference.status, f"{outcome}; {where}"
    assert effect_rows(trial.path("support")) == reference.rows, where
    assert ledger_statuses(trial.path("effects")) == ["done"] * EFFECTS_PER_TICKET, where


def test_trials_cover_every_kill_point_and_call_in_both_modes() -> None:
    for mode in MODES:
        plans = [plan for plan in PLANS if plan.durability == mode]
        assert len(plans) >= 50
        assert {(p.point, p.k) for p in plans} == {
            (point, k) for point in KILL_POINTS for k in range(1, EFFECTS_PER_TICKET + 1)
        }


def test_exit_durability_is_refused_before_any_effect(tmp_path: Path) -> None:
    """`exit` checkpoints nothing until the run ends: the run stops at its first side effect."""
    trial = Trial(folder=tmp_path, ticket="T02", tenant="demo", durability="exit")
    with pytest.raises(DurabilityError, match=r"durability='exit'.*issue_refund"):
        run_uncrashed(trial)
    assert effect_count(effect_rows(trial.path("support"))) == 0
    assert ledger_statuses(trial.path("effects")) == []
