"""PolicyEngine conformance: the Python rules engine and the Rego engine give the same answers."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from guards.base import PolicyDecision, PolicyEngine, PolicyRequest
from guards.bundle import sign_bundle
from guards.decisions import freeze
from guards.policy import PythonRule, PythonRulesEngine, deny, escalate, rule
from guards.rego import RegoPolicyEngine

FIXTURE = Path(__file__).parent.parent / "fixtures" / "policies"
TENANTS = {
    "v1": {"acme": {"refund_limit": 100, "review_above": 50}, "globex": {"refund_limit": 20}},
    "v2": {"acme": {"refund_limit": 30, "review_above": 10}, "globex": {"refund_limit": 20}},
}
REFUND_VERSION = {"v1": "3", "v2": "4"}

# Test-only policies added to the example bundle: workflow scope, an evaluation error, a clock.
EXTRA_REGO = {
    "billing.rego": "package conformance.billing\nimport rego.v1\n\nescalate contains "
    '"closing an account in billing needs review" if true\n',
    "broken.rego": "package conformance.broken\nimport rego.v1\n\ndeny contains msg if {\n"
    '\tx := count(input.args) / 0\n\tmsg := sprintf("never %v", [x])\n}\n',
    "clock.rego": 'package conformance.clock\nimport rego.v1\n\ndeny contains "clock says no" '
    "if time.now_ns() > 0\n",
}
EXTRA_POLICIES = [
    {"id": "billing-review", "version": "1", "owner": "ops", "file": "billing.rego",
     "scope": {"workflows": ["billing"], "tools": ["close_account"]}},
    {"id": "broken", "version": "1", "owner": "qa", "file": "broken.rego",
     "scope": {"tools": ["explode"]}},
    {"id": "clock", "version": "1", "owner": "qa", "file": "clock.rego",
     "scope": {"tools": ["clock_tool"]}},
]  # fmt: skip


def rego_bundle(root: Path, variant: str) -> Path:
    """The example bundle plus the test-only policies, with `variant`'s tenant data."""
    target = root / variant
    shutil.copytree(FIXTURE, target)
    manifest = json.loads((target / "bundle.json").read_text())
    manifest["revision"] = f"conformance-{variant}"
    manifest["policies"][0]["version"] = REFUND_VERSION[variant]
    manifest["policies"] += EXTRA_POLICIES
    (target / "bundle.json").write_text(json.dumps(manifest))
    data = json.loads((target / "data.json").read_text())
    for tenant, values in TENANTS[variant].items():
        data["tenants"][tenant].update(values)
    (target / "data.json").write_text(json.dumps(data))
    for name, source in EXTRA_REGO.items():
        (target / name).write_text(source)
    sign_bundle(target)
    return target


def python_rules(variant: str) -> list[PythonRule]:
    """The same policies as the Rego bundle, written as Python rules."""
    tenants = {
        "acme": {"refund_limit": 100, "review_above": 50, "frozen": False},
        "globex": {"refund_limit": 20, "review_above": 10, "frozen": True},
    }
    for tenant, values in TENANTS[variant].items():
        tenants[tenant] = {**tenants[tenant], **values}

    @rule(id="refund-limits", version=REFUND_VERSION[variant], owner="payments-team",
          tools="issue_refund", pure=True,
          remediation="Ask a payments lead to raise the tenant's refund limit.")  # fmt: skip
    def refund_limits(request: PolicyRequest) -> Any:
        limits, amount = tenants[request.tenant], request.args["amount"]
        if amount > limits["refund_limit"]:
            return deny(
                f"refund of {amount} exceeds the limit of {limits['refund_limit']} "
                f"for {request.tenant}"
            )
        if amount > limits["review_above"]:
            return escalate(f"refunds over {limits['review_above']} need a human")
        return None

    @rule(id="tenant-freeze", version="1", owner="risk-team", tenants=["globex"],
          decision_points=("tool_call", "egress"), pure=True,
          remediation="Lift the freeze in data.json once risk signs off.")  # fmt: skip
    def tenant_freeze(request: PolicyRequest) -> Any:
        frozen = tenants[request.tenant]["frozen"]
        return deny(f"tenant {request.tenant} is frozen") if frozen else None

    @rule(id="no-pii-egress", version="2", owner="privacy-team", decision_points=("egress",),
          pure=True, remediation="Redact personal data before it leaves.")  # fmt: skip
    def no_pii(request: PolicyRequest) -> Any:
        return deny("output contains personal data") if request.context.get("pii") else None

    @rule(id="billing-review", version="1", owner="ops", workflows="billing",
          tools="close_account", pure=True)  # fmt: skip
    def billing(request: PolicyRequest) -> Any:
        return [escalate("closing an account in billing needs review")]

    @rule(id="broken", version="1", owner="qa", tools="explode", pure=True)
    def broken(request: PolicyRequest) -> Any:
        return deny(f"never {len(request.args) / 0}")

    @rule(id="clock", version="1", owner="qa", tools="clock_tool")
    def clock(request: PolicyRequest) -> Any:
        return deny("clock says no")

    return [refund_limits, tenant_freeze, no_pii, billing, broken, clock]


@dataclass
class Kit:
    """Builds an engine of one kind over variant v1 or v2, and reloads it to another variant."""

    make: Callable[..., Any]
    """`make(variant, cache_size=...)` → engine."""
    reload: Callable[[Any, str], None]
    """`reload(engine, variant)`."""


@pytest.fixture(params=["python", "rego"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    if request.param == "python":
        yield Kit(
            make=lambda variant, **kw: PythonRulesEngine(python_rules(variant), **kw),
            reload=lambda engine, variant: engine.reload(python_rules(variant)),
        )
        return
    bundles = {v: rego_bundle(tmp_path, v) for v in ("v1", "v2")}
    yield Kit(
        make=lambda variant, **kw: RegoPolicyEngine.from_directory(bundles[variant], **kw),
        reload=lambda engine, variant: engine.reload(bundles[variant]),
    )


@pytest.fixture
def engine(kit: Kit) -> Any:
    return kit.make("v1")


def req(**overrides: Any) -> PolicyRequest:
    fields: dict[str, Any] = dict(
        tenant="acme", workflow="support", agent="billing", tool="issue_refund",
        args={"amount": 150}, usage={"steps": 3}, context={"run_id": "r1"},
    )  # fmt: skip
    fields.update(overrides)
    return PolicyRequest(**fields)


def refs(decision: PolicyDecision) -> list[str]:
    return [str(p) for p in decision.policies]


def test_is_a_policy_engine_listing_its_contracts(engine: Any) -> None:
    assert isinstance(engine, PolicyEngine)
    assert [(p.id, p.version, p.owner) for p in engine.policies] == [
        ("refund-limits", "3", "payments-team"),
        ("tenant-freeze", "1", "risk-team"),
        ("no-pii-egress", "2", "privacy-team"),
        ("billing-review", "1", "ops"),
        ("broken", "1", "qa"),
        ("clock", "1", "qa"),
    ]
    freeze_meta = engine.policies[1]
    assert freeze_meta.scope.tenants == {"globex"} and set(freeze_meta.decision_points) == {
        "tool_call",
        "egress",
    }


def test_denies_over_the_tenant_limit_with_remediation(engine: Any) -> None:
    decision = engine.evaluate(req(args={"amount": 150}))
    assert decision.deny == ("refund of 150 exceeds the limit of 100 for acme",)
    assert decision.escalate == () and decision.errors == () and not decision.allowed
    assert refs(decision) == ["refund-limits@3"]
    assert decision.remediation == ("Ask a payments lead to raise the tenant's refund limit.",)


def test_escalates_between_review_threshold_and_limit(engine: Any) -> None:
    decision = engine.evaluate(req(args={"amount": 70}))
    assert decision.escalate == ("refunds over 50 need a human",) and decision.deny == ()
    assert not decision.allowed


def test_allows_small_amounts_and_still_names_the_policy(engine: Any) -> None:
    decision = engine.evaluate(req(args={"amount": 10}))
    assert decision.allowed and refs(decision) == ["refund-limits@3"]
    assert decision.remediation == ()


def test_scope_by_tool(engine: Any) -> None:
    decision = engine.evaluate(req(tool="get_invoice", args={}))
    assert decision.allowed and decision.policies == ()


def test_scope_by_tenant(engine: Any) -> None:
    frozen = engine.evaluate(req(tenant="globex", tool="get_invoice", args={}))
    assert frozen.deny == ("tenant globex is frozen",) and refs(frozen) == ["tenant-freeze@1"]
    assert engine.evaluate(req(tenant="acme", tool="get_invoice", args={})).policies == ()


def test_scope_by_workflow(engine: Any) -> None:
    in_billing = engine.evaluate(req(workflow="billing", tool="close_account", args={}))
    assert in_billing.escalate == ("closing an account in billing needs review",)
    assert refs(in_billing) == ["billing-review@1"]
    elsewhere = engine.evaluate(req(workflow="support", tool="close_account", args={}))
    assert elsewhere.allowed and elsewhere.policies == ()


def test_scope_by_decision_point(engine: Any) -> None:
    egress = engine.evaluate(req(point="egress", tool="", args={}, context={"pii": True}))
    assert egress.deny == ("output contains personal data",) and refs(egress) == ["no-pii-egress@2"]
    at_tool_call = engine.evaluate(req(tool="get_invoice", args={}, context={"pii": True}))
    assert at_tool_call.policies == ()
    refund_at_egress = engine.evaluate(req(point="egress", context={}))
    assert refs(refund_at_egress) == ["no-pii-egress@2"] and refund_at_egress.allowed


def test_aggregates_every_policy_in_scope_in_bundle_order(engine: Any) -> None:
    decision = engine.evaluate(req(tenant="globex", args={"amount": 50}))
    assert refs(decision) == ["refund-limits@3", "tenant-freeze@1"]
    assert set(decision.deny) == {
        "refund of 50 exceeds the limit of 20 for globex",
        "tenant globex is frozen",
    }
    assert len(decision.remediation) == 2


def test_a_failing_policy_fails_closed_and_others_still_answer(engine: Any) -> None:
    decision = engine.evaluate(req(tenant="globex", tool="explode", args={"n": 1}))
    assert refs(decision) == ["tenant-freeze@1", "broken@1"]
    assert decision.deny == ("tenant globex is frozen",)
    assert len(decision.errors) == 1 and "`broken`@1" in decision.errors[0]
    assert "zero" in decision.errors[0].lower()  # "divide by zero" / ZeroDivisionError
    alone = engine.evaluate(req(tool="explode", args={"n": 1}))
    assert alone.deny == () and alone.errors and not alone.allowed


def requests() -> list[PolicyRequest]:
    return [
        req(args={"amount": a}, tenant=t) for a in (5, 40, 70, 150) for t in ("acme", "globex")
    ] + [
        req(point="egress", tool="", args={}, context={"pii": pii}) for pii in (True, False)
    ] + [req(workflow="billing", tool="close_account", args={})]  # fmt: skip


def test_cache_gives_the_uncached_answers(kit: Kit) -> None:
    cached, uncached = kit.make("v1"), kit.make("v1", cache_size=0)
    expected = [uncached.evaluate(r) for r in requests()]
    assert [cached.evaluate(r) for r in requests()] == expected
    first = cached.cache_stats
    assert [cached.evaluate(r) for r in requests()] == expected
    second = cached.cache_stats
    assert second.hits - first.hits == len(requests()) and second.misses == first.misses
    assert uncached.cache_stats.hits == 0 and uncached.cache_stats.size == 0


def test_cache_keys_on_what_the_policies_read(kit: Kit) -> None:
    engine = kit.make("v1")
    assert engine.evaluate(req(args={"amount": 150})).deny
    assert engine.evaluate(req(args={"amount": 15})).allowed  # a different key, not a stale hit


def test_impure_and_failing_decisions_are_not_cached(engine: Any) -> None:
    for request in (req(tool="clock_tool", args={}), req(tool="explode", args={"n": 1})):
        before = engine.cache_stats
        first, second = engine.evaluate(request), engine.evaluate(request)
        assert first == second and not first.allowed
        after = engine.cache_stats
        assert after.hits == before.hits and after.size == before.size


def test_reload_swaps_policies_and_invalidates_the_cache(kit: Kit) -> None:
    engine = kit.make("v1")
    before_revision = engine.revision
    assert engine.evaluate(req(args={"amount": 40})).allowed  # cached under v1
    kit.reload(engine, "v2")
    assert engine.revision != before_revision
    decision = engine.evaluate(req(args={"amount": 40}))
    assert decision.deny == ("refund of 40 exceeds the limit of 30 for acme",)
    assert refs(decision) == ["refund-limits@4"]
    assert engine.cache_stats.hits == 0


def test_concurrent_evaluations_agree_with_sequential_ones(kit: Kit) -> None:
    engine, reference = kit.make("v1"), kit.make("v1", cache_size=0)
    work = requests() * 8
    expected = [reference.evaluate(r) for r in work]
    start = threading.Barrier(4)
    results: dict[int, list[PolicyDecision]] = {}

    def worker(n: int) -> None:
        start.wait()
        results[n] = [engine.evaluate(r) for r in work[n:] + work[:n]]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in range(4):
        assert results[n] == expected[n:] + expected[:n]


# --- Python rules specifics ------------------------------------------------------------------


def test_a_rule_returning_garbage_is_an_error_not_a_pass() -> None:
    @rule(id="sloppy", version="1", owner="qa")
    def sloppy(request: PolicyRequest) -> Any:
        return "deny"

    decision = PythonRulesEngine([sloppy]).evaluate(req())
    assert decision.errors and "`sloppy`@1" in decision.errors[0]
    assert "expected deny(...)" in decision.errors[0]


def test_duplicate_rule_ids_are_refused() -> None:
    rules = python_rules("v1")
    with pytest.raises(ValueError, match="`broken` is used by two rules"):
        PythonRulesEngine([*rules, rules[4]])


def test_cache_keys_tell_equal_looking_values_apart() -> None:
    assert len({freeze(1), freeze(1.0), freeze(True), freeze("1")}) == 4
    assert freeze({"a": [1, {"b": None}]}) == freeze({"a": (1, {"b": None})})
    with pytest.raises(TypeError):
        freeze(object())
