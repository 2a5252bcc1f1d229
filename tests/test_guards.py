"""The action guard: allow-list, side-effect budget, caps and risk zones, as verdict values."""

from __future__ import annotations

import pytest

from guards import ActionGuard, ActionRequest, GuardConfigError, RunLimits, UsageSnapshot, Verdict


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
    assert "tool-allowlist@1" in record["policies"] and "risk-zones@1" in record["policies"]
    assert Verdict.allow().decision_id != Verdict.allow().decision_id


@pytest.mark.parametrize("bad", [0, -5, 2.5, "10"])
def test_bad_limits_are_refused_clearly(bad: object) -> None:
    with pytest.raises(GuardConfigError, match="max_steps must be a positive integer"):
        RunLimits(max_steps=bad)  # type: ignore[arg-type]


def test_unknown_zone_names_are_refused() -> None:
    with pytest.raises(GuardConfigError, match="unknown risk zone"):
        ActionGuard(escalate_zones=frozenset({"purple"}))
