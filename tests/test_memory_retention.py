"""Retention runs by itself: a sweep promotes what its retention class promotes and purges what
expired, for every tenant; the sweeper thread of long-lived processes runs it on a timer and
survives a failing backend; settings give namespaces their conflict policies."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance.memory_backends import DAY, FakeClock, put, scope

from graphs import Services, Settings
from graphs.settings import SettingsError
from memory import ConflictPolicy, MemoryBackendError, VersionedMemory, in_memory
from memory.layout import all_items, ns_of
from memory.retention import SWEEPER, RetentionSweeper, sweep

CTX = ("ctx",)


def seeded(clock: FakeClock) -> VersionedMemory:
    """Two tenants, each with a candidate (promoted after review), a turn note (1 h) and a
    permanent fact."""
    memory = in_memory(clock=clock)
    for tenant in ("acme", "globex"):
        who = scope(tenant)
        put(memory, who, "dark", {"text": "likes dark mode"}, retention="candidate", namespace=CTX)
        put(memory, who, "call", {"text": "on the phone"}, retention="turn", namespace=CTX)
        put(memory, who, "plan", {"text": "pro plan"})
    return memory


def test_a_sweep_promotes_then_purges_for_every_tenant() -> None:
    clock = FakeClock()
    memory = seeded(clock)
    clock.advance(2 * 3600)  # the turn notes (1 h) expired; the candidates (1 day) have not
    report = sweep(memory, run_id="sweep-1")
    assert (report.tenants, report.promoted, report.purged, report.conflicts) == (2, 2, 2, 0)
    for tenant in ("acme", "globex"):
        who = scope(tenant)
        dark = memory.get(who, CTX, "dark")
        assert dark is not None and (dark.tier, dark.tags.retention) == ("long", "profile")
        assert (dark.author, dark.tags.lineage.run_id) == (SWEEPER, "sweep-1")
        assert memory.short.get(ns_of(tenant, "memory", CTX), "call") is None  # purged
        versions = [item.key for item in all_items(memory.short, ns_of(tenant, "history", CTX))]
        assert [key.split("@")[0] for key in versions] == ["dark"]  # the call's went
        assert memory.get(who, ("crm", "prefs"), "plan") is not None
    again = sweep(memory)
    assert (again.promoted, again.purged) == (0, 0)


def test_the_sweeper_sweeps_on_its_timer_until_stopped() -> None:
    clock = FakeClock()
    memory = seeded(clock)
    clock.advance(2 * 3600)
    sweeper = RetentionSweeper(memory, interval_s=0.01).start()
    assert sweeper.running
    try:
        assert sweeper.wait_for(1, timeout_s=30), "no sweep within 30 s"
    finally:
        sweeper.stop()
    assert sweeper.last is not None and sweeper.last_error is None
    assert memory.short.get(ns_of("acme", "memory", CTX), "call") is None
    assert not sweeper.running  # stop() joined the thread: no sweep after it


def test_a_failing_sweep_is_kept_and_the_next_one_runs() -> None:
    memory = in_memory()
    put(memory, scope(), "plan", {"text": "pro plan"})
    real_log, memory.log = memory.log, _DeadLog()  # type: ignore[assignment]
    sweeper = RetentionSweeper(memory, interval_s=0.01).start()
    try:
        assert sweeper.wait_for(1, timeout_s=30)
        assert isinstance(sweeper.last_error, MemoryBackendError)
        memory.log = real_log
        assert sweeper.wait_for(sweeper.sweeps + 2, timeout_s=30)
    finally:
        sweeper.stop()
    assert sweeper.last_error is None and sweeper.last is not None


class _DeadLog:
    """Fault injection: a commit log whose server went away."""

    def tenants(self) -> list[str]:
        raise MemoryBackendError("cannot reach the commit log (connection refused)")


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        RetentionSweeper(in_memory(), interval_s=0)


def test_settings_give_namespaces_their_conflict_policies(tmp_path: Path) -> None:
    env = {"BASTION_HOME": str(tmp_path), "BASTION_MEMORY_CONFLICTS": "crm.prefs=cas, ctx=escalate"}
    settings = Settings.from_env(env)
    assert settings.conflict_policies == {
        ("crm", "prefs"): ConflictPolicy.CAS,
        ("ctx",): ConflictPolicy.ESCALATE,
    }
    with Services.from_settings(settings) as services:
        memory = services.memory
        assert memory.policy_for(("crm", "prefs", "vip")) is ConflictPolicy.CAS
        assert memory.policy_for(("orders",)) is ConflictPolicy.LWW
        put(memory, scope(), "k", {"text": "v1"})
        mine, theirs = memory.session(scope()), memory.session(scope(agent="billing"))
        for cycle, text in ((mine, "mine"), (theirs, "theirs")):
            cycle.remember(("crm", "prefs"), "k", {"text": text}, purpose="support",
                           retention="permanent", sensitivity="internal")  # fmt: skip
        assert mine.commit().ok
        assert theirs.commit().status == "conflict"  # cas: refused, not silently lost


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("customers", "is not `prefix=policy`"),
        ("customers=cass", "'cass' is not a valid ConflictPolicy"),
        ("cus/tomers=cas", "bad namespace label 'cus/tomers'"),
    ],
)
def test_bad_conflict_settings_name_the_variable_and_the_problem(value: str, problem: str) -> None:
    with pytest.raises(SettingsError, match="BASTION_MEMORY_CONFLICTS") as raised:
        Settings.from_env({"BASTION_MEMORY_CONFLICTS": value})
    assert problem in str(raised.value) and "cas, lww, escalate" in str(raised.value)


def test_long_lived_services_sweep_and_stop_their_sweeper(tmp_path: Path) -> None:
    with Services.from_settings(Settings(home=tmp_path, memory_sweep_s=0.01)) as services:
        sweeper = services.sweeper
        assert sweeper is not None and sweeper.memory is services.memory
        assert sweeper.wait_for(2, timeout_s=30), "the services' sweeper never swept"
        assert sweeper.last_error is None
    assert not sweeper.running  # stopped when the services closed
    with Services.from_settings(Settings(home=tmp_path, memory_sweep_s=0)) as services:
        assert services.sweeper is None
    with pytest.raises(SettingsError, match="BASTION_MEMORY_SWEEP_S"):
        Settings.from_env({"BASTION_MEMORY_SWEEP_S": "-5"})


def test_one_day_candidates_expire_unpromoted_without_a_sweep() -> None:
    clock = FakeClock()
    memory = seeded(clock)
    clock.advance(DAY + 1)  # nobody swept while the candidate was young
    report = sweep(memory)
    assert report.promoted == 0 and report.purged == 4  # 2 tenants x (candidate + turn note)
    assert memory.get(scope(), CTX, "dark") is None
