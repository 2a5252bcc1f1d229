"""The action guard and its built-in layers: scope, caps, loops, breaker, zones x confidence,
taint, tenants; every decision a verdict value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guards import (
    ActionGuard,
    ActionRequest,
    BreakerPolicy,
    GuardConfigError,
    LoopPolicy,
    RiskThresholds,
    RunLimits,
    TenantDirectory,
    UnknownTenantError,
    UsageSnapshot,
    Verdict,
    ZoneRule,
    proposal_fingerprint,
)


def request(**overrides: object) -> ActionRequest:
    base: dict[str, object] = dict(
        tenant="acme",
        workflow="support",
        agent="billing",
        tool="issue_refund",
        args={"amount": 10},
        zone="green",
        side_effect="irreversible",
        allowed_tools=frozenset({"issue_refund", "get_invoice"}),
        write_tools=frozenset({"issue_refund"}),
        usage=UsageSnapshot(),
    )
    base.update(overrides)
    return ActionRequest(**base)  # type: ignore[arg-type]


def test_green_allowed_yellow_flagged_red_escalated() -> None:
    guard = ActionGuard()
    assert guard.evaluate(request(zone="green")).kind == "allow"
    flagged = guard.evaluate(request(zone="yellow"))
    assert flagged.kind == "allow" and "flagged" in flagged.reason
    escalated = guard.evaluate(request(zone="red"))
    assert escalated.kind == "escalate" and escalated.zone == "red"


def test_tool_outside_the_agents_scope_is_denied_with_a_suggestion() -> None:
    verdict = ActionGuard().evaluate(request(tool="issue_refnd"))
    assert verdict.kind == "deny"
    assert (
        "no tool `issue_refnd`" in verdict.reason
        and "Did you mean `issue_refund`" in verdict.reason
    )


def test_write_outside_the_side_effect_budget_is_denied() -> None:
    verdict = ActionGuard().evaluate(request(write_tools=frozenset()))
    assert verdict.kind == "deny" and "side-effect budget" in verdict.reason


def test_unknown_zone_is_treated_as_red() -> None:
    assert ActionGuard().evaluate(request(zone=None)).kind == "escalate"


def test_caps_halt_before_anything_else() -> None:
    guard = ActionGuard(limits=RunLimits(max_steps=3, max_tokens=100))
    steps = guard.evaluate(request(usage=UsageSnapshot(steps=4), tool="not_even_allowed"))
    assert steps.kind == "halt" and "step cap" in steps.reason and "3" in steps.reason
    tokens = guard.evaluate(request(usage=UsageSnapshot(tokens=101)))
    assert tokens.kind == "halt" and "token cap" in tokens.reason


def test_limits_reserve_the_next_call() -> None:
    limits = RunLimits(max_steps=None, max_tokens=1000)
    assert limits.check(UsageSnapshot(tokens=900), next_tokens=50) is None
    assert limits.check(UsageSnapshot(tokens=900), next_tokens=200) is not None


def test_verdicts_carry_ids_and_policy_versions() -> None:
    verdict = ActionGuard().evaluate(request())
    record = verdict.to_record()
    assert record["decision_id"].startswith("dec_")
    assert "tool-allowlist@1" in record["policies"] and "risk-zones@2" in record["policies"]
    assert Verdict.allow().decision_id != Verdict.allow().decision_id


@pytest.mark.parametrize("bad", [0, -5, 2.5, "10"])
def test_bad_limits_are_refused_clearly(bad: object) -> None:
    with pytest.raises(GuardConfigError, match="max_steps must be a positive integer"):
        RunLimits(max_steps=bad)  # type: ignore[arg-type]


def test_bad_zone_rules_are_refused() -> None:
    with pytest.raises(GuardConfigError, match="action 'sometimes'"):
        ZoneRule(action="sometimes")  # type: ignore[arg-type]
    with pytest.raises(GuardConfigError, match=r"approve_below must be within \[0, 1\]"):
        ZoneRule(action="run", approve_below=1.5)


def test_money_and_time_caps_halt_with_the_figures() -> None:
    limits = RunLimits(max_usd=0.01, max_seconds=60)
    money = limits.check(UsageSnapshot(cost_usd=0.009), next_usd=0.002)
    assert money is not None and "money cap" in money.reason and "$0.0100" in money.reason
    granted = UsageSnapshot(cost_usd=0.009, extra_usd=0.01)
    assert limits.check(granted, next_usd=0.002) is None, "a human-granted extension counts"
    late = limits.check(UsageSnapshot(seconds=61.0))
    assert late is not None and "time cap" in late.reason
    assert limits.spend_fraction(UsageSnapshot(cost_usd=0.008)) == pytest.approx(0.8)


# ---- zones x confidence --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "confidence", "kind", "flagged"),
    [
        ("green", None, "allow", False),
        ("green", 0.9, "allow", False),
        ("green", 0.4, "allow", True),  # below flag_below 0.5
        ("green", 0.1, "escalate", False),  # below approve_below 0.2
        ("yellow", None, "allow", True),
        ("yellow", 0.9, "allow", True),
        ("yellow", 0.3, "escalate", False),
        ("red", 0.99, "escalate", False),
        ("purple", 0.99, "escalate", False),  # unknown zones count as red
    ],
)
def test_zone_and_confidence_decide_run_flag_or_approve(
    zone: str, confidence: float | None, kind: str, flagged: bool
) -> None:
    verdict = ActionGuard().evaluate(request(zone=zone, confidence=confidence))
    assert verdict.kind == kind
    assert ("flagged for review" in verdict.reason) is flagged


def test_strict_tenants_treat_unstated_confidence_as_zero() -> None:
    strict = RiskThresholds(require_confidence=True)
    assert strict.decide("yellow", None, "t").kind == "escalate"
    assert RiskThresholds().decide("yellow", None, "t").kind == "allow"


# ---- loops ---------------------------------------------------------------------------------


def test_identical_proposals_halt_after_the_allowed_repeats() -> None:
    fingerprint = proposal_fingerprint("issue_refund", {"amount": 10})
    assert fingerprint == proposal_fingerprint("issue_refund", {"amount": 10})
    assert fingerprint != proposal_fingerprint("issue_refund", {"amount": 11})
    guard = ActionGuard(loops=LoopPolicy(max_repeats=2))
    assert guard.evaluate(request(history=[fingerprint])).kind == "allow"
    looping = guard.evaluate(request(history=[fingerprint, fingerprint]))
    assert looping.kind == "halt" and "proposed 3 times" in looping.reason
    assert "loops@1" in looping.to_record()["policies"]


def test_ping_pong_between_two_specialists_is_stopped() -> None:
    loops = LoopPolicy(max_ping_pong=2)
    assert loops.check_routes(["a", "b", "a", "b"]) is None
    assert loops.check_routes(["a", "a", "a", "a", "a"]) is None
    assert loops.check_routes(["c", "a", "b", "a", "c", "a"]) is None
    verdict = loops.check_routes(["c", "a", "b", "a", "b", "a"])
    assert verdict is not None and verdict.kind == "halt" and "a → b → a → b → a" in verdict.reason


def test_no_progress_over_n_steps_halts() -> None:
    loops = LoopPolicy(no_progress_steps=4)
    assert loops.check_progress(steps=5, last_progress_step=2) is None
    stalled = loops.check_progress(steps=6, last_progress_step=2)
    assert stalled is not None and "4 model turns without" in stalled.reason
    assert LoopPolicy(no_progress_steps=None).check_progress(100, 0) is None


@pytest.mark.parametrize("field", ["max_repeats", "max_ping_pong", "no_progress_steps"])
def test_bad_loop_settings_are_refused(field: str) -> None:
    with pytest.raises(GuardConfigError, match=f"LoopPolicy.{field}"):
        LoopPolicy(**{field: 0})  # type: ignore[arg-type]


# ---- circuit breaker -----------------------------------------------------------------------


def test_breaker_opens_after_k_failures_in_the_window_and_closes_after_cooldown() -> None:
    breaker = BreakerPolicy(failures=3, window_s=60, cooldown_s=30)
    state = None
    for t in (0.0, 10.0):
        state = breaker.record(state, ok=False, now=t)
    assert breaker.check({"t": state}, "t", now=11.0) is None, "two failures: still closed"
    state = breaker.record(state, ok=False, now=20.0)
    denied = breaker.check({"t": state}, "t", now=21.0)
    assert denied is not None and denied.kind == "deny" and "circuit is open" in denied.reason
    assert breaker.check({"t": state}, "t", now=51.0) is None, "cool-down over"
    assert breaker.check({"t": state}, "other", now=21.0) is None, "per tool"


def test_old_failures_fall_out_of_the_window_and_success_resets() -> None:
    breaker = BreakerPolicy(failures=2, window_s=10, cooldown_s=30)
    state = breaker.record(None, ok=False, now=0.0)
    state = breaker.record(state, ok=False, now=20.0)  # the first one is too old to count
    assert state["open_until"] == 0.0 and state["failures"] == [20.0]
    assert breaker.record(state, ok=True, now=21.0) == {"failures": [], "open_until": 0.0}


def test_breaker_state_is_json_so_it_survives_a_checkpoint() -> None:
    breaker = BreakerPolicy(failures=1, cooldown_s=30)
    state = json.loads(json.dumps(breaker.record(None, ok=False, now=100.0)))
    verdict = ActionGuard(breaker=breaker).evaluate(
        request(breakers={"issue_refund": state}, now=101)
    )
    assert verdict.kind == "deny" and "`issue_refund` is unavailable" in verdict.reason


# ---- taint and re-checks -------------------------------------------------------------------


def test_a_tainted_run_escalates_side_effects_but_not_reads() -> None:
    guard = ActionGuard()
    taint = ["tool:get_order contains injection: ignore previous instructions"]
    write = guard.evaluate(request(taint=taint))
    assert write.kind == "escalate" and "tainted" in write.reason
    read = guard.evaluate(
        request(taint=taint, tool="get_invoice", side_effect="none", write_tools=frozenset())
    )
    assert read.kind == "allow"


def test_a_human_approval_satisfies_escalations_but_not_halts() -> None:
    guard = ActionGuard(limits=RunLimits(max_steps=3))
    approved = guard.evaluate(request(zone="red", approved_by="human:lee"))
    assert approved.kind == "allow" and approved.decided_by == "human:lee"
    same = proposal_fingerprint("issue_refund", {"amount": 10})
    recheck = guard.evaluate(request(approved_by="human:lee", history=[same, same]))
    assert recheck.kind == "allow", "a re-check is the same proposal, not a repeat of it"
    halted = guard.evaluate(
        request(zone="red", approved_by="human:lee", usage=UsageSnapshot(steps=9))
    )
    assert halted.kind == "halt"


# ---- tenants -------------------------------------------------------------------------------


def test_tenants_load_from_json_and_unknown_ones_are_named(tmp_path: Path) -> None:
    path = tmp_path / "tenants.json"
    path.write_text(
        json.dumps({"acme": {"risk": {"yellow": {"action": "approve"}}, "budget": {"usd": 2}}})
    )
    tenants = TenantDirectory.from_file(path)
    acme = tenants.get("acme")
    assert acme.budget is not None and acme.budget.usd == 2
    guard = ActionGuard(tenants=tenants)
    assert guard.evaluate(request(zone="yellow")).kind == "escalate", "acme's own rule applies"
    with pytest.raises(UnknownTenantError, match=r"tenant 'globex' is not configured.*acme"):
        tenants.get("globex")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"acme": {"budget": {"usd": -1}}}, "tenant 'acme'.*usd"),
        ({"acme": {"risk": {"purple": {"action": "run"}}}}, "unknown zone.*purple"),
        ({"acme": {"risk": {"red": {"action": "sometimes"}}}}, "tenant 'acme'.*sometimes"),
        ({"acme": {"budjet": {}}}, "tenant 'acme'.*budjet"),
    ],
)
def test_misconfigured_tenants_are_refused_clearly(
    tmp_path: Path, body: dict[str, object], message: str
) -> None:
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps(body))
    with pytest.raises(GuardConfigError, match=message):
        TenantDirectory.from_file(path)


def test_unreadable_tenant_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "tenants.json"
    path.write_text("{not json")
    with pytest.raises(GuardConfigError, match=r"cannot read tenant config .*tenants\.json"):
        TenantDirectory.from_file(path)
