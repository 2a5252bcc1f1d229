"""The guard plane wired into the orchestrator graph, end to end.

Kill switch (before start, while waiting for a human, between two calls of one batch), permissions
revoked while a run waits, fail-closed policies, taint, egress, tenant budgets and spend
thresholds, loops, circuit breakers that outlive a run, and unknown tenants. Every run is a real
compiled graph with the scripted model; side effects are what the tools of
`governed_helpers.World` record.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from governed_helpers import (
    ACME,
    ALL_TOOLS,
    APPROVE,
    AWS_KEY,
    BUNDLE_KEY,
    CARD,
    CONFIG,
    INJECTION,
    POLICIES,
    PRICES,
    PRIVATE_KEY,
    TAB_INJECTION,
    TENANT,
    Script,
    World,
    agent,
    answer_to,
    batch,
    build,
    call,
    first_call_usd,
    handoffs,
    resume,
    run,
    solo,
    verdicts_for,
)
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from guards import (
    ActionGuard,
    BreakerPolicy,
    BudgetCaps,
    InMemoryBudgetLedger,
    LoopPolicy,
    PythonRulesEngine,
    RedisKillSwitch,
    RegoPolicyEngine,
    RunLimits,
    SpendPolicy,
    TenantDirectory,
    TenantPolicy,
    rule,
    sign_bundle,
)
from guards.base import PolicyRequest
from guards.egress import EgressPolicy
from guards.policy import RuleResult, deny, escalate
from guards.scanners import ContentScanner
from nodes import ModelRouter, RunContext, Workflow

# ------------------------------------------------------------------------------------------------
# 1. Kill switch


def test_a_killed_tenant_is_halted_at_intake_before_any_model_call() -> None:
    world, script = World(), Script(call("transfer", amount=5, to="bob"), AIMessage("done"))
    world.switch.kill(ACME, requester="ops:alice", reason="refunds going to the wrong accounts")
    graph = solo(world, script, guard=ActionGuard(kill_switch=world.switch))

    path = [
        next(iter(update))
        for update in graph.stream(
            {"messages": [("user", "pay bob 5")]},
            CONFIG,
            context=RunContext(tenant=TENANT),
            stream_mode="updates",
        )
    ]

    state = graph.get_state(CONFIG).values
    assert path == ["intake", "finalize"]
    assert state["outcome"]["status"] == "halted"
    assert "ops:alice" in state["outcome"]["reason"]
    assert "refunds going to the wrong accounts" in state["outcome"]["reason"]
    assert script.calls == 0 and state["usage"]["steps"] == 0 and world.effects == []

    other = Script(call("transfer", amount=5, to="bob"), AIMessage("done"))
    graph = solo(world, other, guard=ActionGuard(kill_switch=world.switch))
    state = run(graph, tenant="globex")
    assert state["outcome"]["status"] == "resolved", "a tenant kill stops only that tenant"
    assert world.ran("transfer") == [{"amount": 5, "to": "bob"}]


def check_kill_while_waiting(saver: BaseCheckpointSaver) -> tuple[World, Any, dict[str, Any]]:
    """Escalate a transfer, kill the tenant while it waits, approve: nothing may run."""
    world = World()
    script = Script(call("transfer", amount=500, to="eve"), AIMessage("transferred"))
    guard = ActionGuard(kill_switch=world.switch)
    graph = solo(world, script, guard=guard, checkpointer=saver)

    first = run(graph, "pay eve 500", durability="sync")
    assert first["__interrupt__"] and world.effects == []
    world.switch.kill(ACME, requester="ops:alice", reason="fraud suspected")

    # Another graph object resumes, as another worker would.
    graph = solo(world, script, guard=guard, checkpointer=saver)
    state = resume(graph, APPROVE, durability="sync")

    assert world.effects == [], "an approval must not outlive a kill"
    assert state["outcome"]["status"] == "halted"
    assert (
        "fraud suspected" in state["outcome"]["reason"]
        and "ops:alice" in state["outcome"]["reason"]
    )
    last = verdicts_for(state, "c1")[-1]
    assert last["kind"] == "halt" and "kill-switch@1" in last["policies"]
    refusal = answer_to(state, "c1")
    assert refusal.status == "error" and "not run: the run was halted" in str(refusal.content)
    assert script.calls == 1, "the agent was not asked again after the kill"
    return world, graph, state


def test_a_kill_while_waiting_for_approval_stops_the_approved_action() -> None:
    world, graph, halted = check_kill_while_waiting(InMemorySaver())

    world.switch.lift(ACME, requester="ops:alice", reason="false alarm")
    assert graph.get_state(CONFIG).next == ()
    again = graph.invoke(None, CONFIG, context=RunContext(tenant=TENANT))
    assert again["outcome"] == halted["outcome"], "lifting a kill resumes nothing by itself"
    assert graph.get_state(CONFIG).next == () and world.effects == []


def test_a_kill_while_waiting_is_rechecked_on_durable_checkpointers(
    saver: BaseCheckpointSaver,
) -> None:
    check_kill_while_waiting(saver)


def test_a_kill_by_an_earlier_call_of_the_batch_stops_the_next_side_effect() -> None:
    world = World()
    script = Script(
        batch(("pull_switch", {}), ("transfer", {"amount": 10, "to": "bob"})),
        AIMessage("never said"),
    )
    graph = solo(world, script, guard=ActionGuard(kill_switch=world.switch))

    state = run(graph, "report the incident and pay bob 10")

    assert [v["kind"] for v in state["verdicts"][:2]] == ["allow", "allow"], "both were allowed"
    assert world.ran("pull_switch") == [{}] and world.ran("transfer") == []
    refused = answer_to(state, "b1")
    assert refused.status == "error"
    assert "`transfer` not run" in str(refused.content)
    assert "incident in progress" in str(refused.content)
    assert answer_to(state, "b0").status == "success"
    assert state["outcome"]["status"] == "halted"
    assert "incident in progress" in state["outcome"]["reason"]
    assert script.calls == 1


def test_an_unreachable_kill_switch_counts_as_killed() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    switch = RedisKillSwitch(f"redis://127.0.0.1:{port}", timeout_s=0.5)
    world, script = World(), Script(AIMessage("never said"))
    graph = solo(world, script, guard=ActionGuard(kill_switch=switch))

    state = run(graph)

    assert state["outcome"]["status"] == "halted"
    assert state["outcome"]["reason"].startswith("kill switch unreachable, stopping to be safe")
    assert script.calls == 0


def test_the_summary_of_a_halted_run_does_not_list_actions_that_never_ran() -> None:
    _, _, state = check_kill_while_waiting(InMemorySaver())
    assert "tool calls: none" in state["outcome"]["summary"], state["outcome"]["summary"]


def test_a_call_refused_before_its_effect_is_not_counted_as_executed() -> None:
    world = World()
    script = Script(
        batch(("pull_switch", {}), ("transfer", {"amount": 10, "to": "bob"})), AIMessage("-")
    )
    state = run(solo(world, script, guard=ActionGuard(kill_switch=world.switch)))
    assert len(world.effects) == 1
    assert state["usage"]["tool_calls"] == 1


def test_a_halt_on_recheck_answers_each_call_exactly_once() -> None:
    world = World()
    script = Script(
        batch(("transfer", {"amount": 500, "to": "eve"}), ("lookpu", {"order": "A1"})),
        AIMessage("-"),
    )
    graph = solo(world, script, guard=ActionGuard(kill_switch=world.switch))
    run(graph)
    world.switch.kill(ACME, requester="ops:alice", reason="fraud suspected")

    state = resume(graph, APPROVE)

    assert state["outcome"]["status"] == "halted" and world.effects == []
    answered = [m.tool_call_id for m in state["messages"] if isinstance(m, ToolMessage)]
    assert sorted(answered) == ["b0", "b1"], answered


# ------------------------------------------------------------------------------------------------
# 2. A permission revoked while the run waits


def test_a_permission_revoked_while_waiting_is_denied_on_recheck() -> None:
    grants = {"transfer": "ask"}

    @rule(id="transfer-grants", version="3", owner="risk", tools="transfer")
    def transfer_grants(request: PolicyRequest) -> RuleResult:
        if grants["transfer"] == "revoked":
            return deny("transfers were revoked for this tenant")
        return escalate("transfers need a second pair of eyes")

    world = World()
    script = Script(call("transfer", amount=50, to="bob"), AIMessage("could not pay"))
    guard = ActionGuard(policy=PythonRulesEngine([transfer_grants]))
    graph = solo(world, script, guard=guard)

    [pending] = run(graph, "pay bob 50")["__interrupt__"]
    assert "second pair of eyes" in pending.value["action_requests"][0]["description"]
    grants["transfer"] = "revoked"
    state = resume(graph, APPROVE)

    assert world.effects == []
    last = verdicts_for(state, "c1")[-1]
    assert last["kind"] == "deny" and "transfer-grants@3" in last["policies"]
    denial = answer_to(state, "c1")
    assert denial.status == "error"
    assert str(denial.content).startswith("denied on re-check after approval")
    assert "revoked" in str(denial.content)
    assert any(isinstance(m, ToolMessage) and m.tool_call_id == "c1" for m in script.seen[-1]), (
        "the agent's next turn saw the denial"
    )
    assert state["outcome"]["status"] == "resolved"


def test_a_limit_lowered_by_a_reloaded_bundle_while_waiting_is_denied_on_recheck(
    tmp_path: Path,
) -> None:
    bundle = Path(shutil.copytree(POLICIES, tmp_path / "policies"))
    sign_bundle(bundle, key=BUNDLE_KEY)
    engine = RegoPolicyEngine.from_directory(bundle, key=BUNDLE_KEY)
    world = World()
    script = Script(call("issue_refund", order="A1", amount=80), AIMessage("refund refused"))
    graph = solo(world, script, guard=ActionGuard(policy=engine))

    [pending] = run(graph, "refund A1")["__interrupt__"]
    assert "refunds over 50 need a human" in pending.value["action_requests"][0]["description"]
    data = json.loads((bundle / "data.json").read_text())
    data["tenants"][TENANT]["refund_limit"] = 60
    (bundle / "data.json").write_text(json.dumps(data))
    sign_bundle(bundle, key=BUNDLE_KEY)
    engine.reload()
    state = resume(graph, APPROVE)

    assert world.ran("issue_refund") == []
    last = verdicts_for(state, "c1")[-1]
    assert last["kind"] == "deny" and "refund-limits@3" in last["policies"]
    denial = str(answer_to(state, "c1").content)
    assert denial.startswith("denied on re-check after approval")
    assert "refund of 80 exceeds the limit of 60 for acme" in denial
    assert "Ask a payments lead" in denial


# ------------------------------------------------------------------------------------------------
# 3. A failing policy engine fails closed for side effects only


def test_a_policy_that_raises_denies_side_effects_but_lets_reads_run() -> None:
    @rule(id="fragile", version="1", owner="qa")
    def fragile(request: PolicyRequest) -> None:
        raise RuntimeError("rules database unreachable")

    world = World()
    script = Script(
        batch(("lookup", {"order": "A1"}), ("transfer", {"amount": 10, "to": "bob"})),
        AIMessage("looked it up"),
    )
    graph = solo(world, script, guard=ActionGuard(policy=PythonRulesEngine([fragile])))

    state = run(graph)

    assert world.ran("lookup") == [{"order": "A1"}] and world.ran("transfer") == []
    [read] = verdicts_for(state, "b0")
    assert read["kind"] == "allow" and any("read-only action allowed" in r for r in read["reasons"])
    [write] = verdicts_for(state, "b1")
    assert write["kind"] == "deny"
    assert "rules database unreachable" in write["reasons"][0]
    assert "side effects are refused" in write["reasons"][0]
    assert "policy-engine-fail-closed@1" in write["policies"] and "fragile@1" in write["policies"]
    assert "denied by policy: policy evaluation failed" in str(answer_to(state, "b1").content)


# ------------------------------------------------------------------------------------------------
# 4. Taint


@pytest.mark.parametrize(
    "page, escalated",
    [
        ("Opening hours: 9-17.", False),
        (INJECTION, True),
        pytest.param(TAB_INJECTION, True, id="tab-separated"),
        pytest.param(TAB_INJECTION.replace("\t", "\n"), True, id="newline-separated"),
    ],
)
def test_injected_tool_output_taints_the_run_and_side_effects_need_a_human(
    page: str, escalated: bool
) -> None:
    world = World(page=page)
    script = Script(
        call("fetch_page", url="https://example.com"),
        call("transfer", "c2", amount=10, to="eve"),
        AIMessage("done"),
    )
    graph = solo(world, script, guard=ActionGuard(scanner=ContentScanner()))

    state = run(graph, "check the page, then pay eve 10")

    assert world.ran("fetch_page") == [{"url": "https://example.com"}]
    assert bool(ContentScanner().scan(page)) is escalated, "the scanner itself sees the page"
    if not escalated:
        assert not state["taint"] and "__interrupt__" not in state
        assert world.ran("transfer") == [{"amount": 10, "to": "eve"}]
        return
    assert state["taint"] and "tool:fetch_page" in state["taint"][0]
    assert any(
        f["where"] == "tool:fetch_page" and f["type"] == "injection" for f in state["findings"]
    )
    [pending] = state["__interrupt__"]
    [action] = pending.value["action_requests"]
    assert action["name"] == "transfer" and "tainted" in action["description"]
    assert world.ran("transfer") == []
    assert "taint@1" in verdicts_for(state, "c2")[-1]["policies"]


def test_injected_text_in_a_tool_error_taints_the_run() -> None:
    world = World(partner_error=INJECTION)
    script = Script(
        call("partner_api", q="status of A1"),
        call("transfer", "c2", amount=10, to="eve"),
        AIMessage("done"),
    )
    graph = solo(world, script, guard=ActionGuard(scanner=ContentScanner()))

    state = run(graph, "ask the partner, then pay eve 10")

    assert world.ran("partner_api") and INJECTION in str(answer_to(state, "c1").content)
    assert state["taint"], "the model read injected instructions"
    assert world.ran("transfer") == [] and state.get("__interrupt__")


def test_an_injected_user_request_taints_the_run_at_intake() -> None:
    world = World()
    script = Script(call("transfer", amount=10, to="eve"), AIMessage("done"))
    graph = solo(world, script, guard=ActionGuard(scanner=ContentScanner()))

    state = run(graph, INJECTION)

    assert state["taint"] and state["taint"][0].startswith("input contains injection")
    assert any(f["where"] == "input" and f["category"] == "injection" for f in state["findings"])
    [pending] = state["__interrupt__"]
    assert "tainted" in pending.value["action_requests"][0]["description"]
    assert world.effects == []


# ------------------------------------------------------------------------------------------------
# 5. Egress


def egress_guard() -> ActionGuard:
    return ActionGuard(egress=EgressPolicy())


def test_a_card_number_in_outbound_arguments_is_redacted_before_the_tool_sees_it() -> None:
    world = World()
    body = f"Your card {CARD} was charged $40."
    script = Script(call("notify", to="bob@example.com", body=body), AIMessage("told bob"))
    graph = solo(world, script, guard=egress_guard())

    state = run(graph, "tell bob about the charge")

    [sent] = world.ran("notify")
    assert sent["to"] == "bob@example.com", "contact details pass"
    assert "[REDACTED:credit_card" in sent["body"] and CARD not in sent["body"]
    assert sent["body"].startswith("Your card ") and sent["body"].endswith(" was charged $40.")
    [verdict] = verdicts_for(state, "c1")
    assert verdict["kind"] == "allow" and "egress@1" in verdict["policies"]
    assert any("egress: redacted credit_card" in r for r in verdict["reasons"])


@pytest.mark.parametrize("secret, kind", [(AWS_KEY, "api_key"), (PRIVATE_KEY, "private_key")])
def test_a_secret_in_outbound_arguments_is_denied_and_the_tool_not_called(
    secret: str, kind: str
) -> None:
    world = World()
    script = Script(
        call("notify", to="bob@example.com", body=f"the key is {secret}"), AIMessage("sorry")
    )
    graph = solo(world, script, guard=egress_guard())

    state = run(graph, "send bob the key")

    assert world.ran("notify") == []
    [verdict] = verdicts_for(state, "c1")
    assert (
        verdict["kind"] == "deny" and f"contain a secret ({kind} in body)" in verdict["reasons"][0]
    )
    assert "denied by policy: outbound arguments contain a secret" in str(
        answer_to(state, "c1").content
    )


def test_the_reviewer_of_an_outbound_action_sees_and_approves_the_redacted_arguments() -> None:
    world = World()
    script = Script(call("publish", body=f"Refunded card {CARD}."), AIMessage("published"))
    graph = solo(world, script, guard=egress_guard())

    [pending] = run(graph, "post the notice")["__interrupt__"]
    [action] = pending.value["action_requests"]
    assert CARD not in action["args"]["body"] and "[REDACTED:credit_card" in action["args"]["body"]
    resume(graph, APPROVE)

    [published] = world.ran("publish")
    assert CARD not in published["body"] and "[REDACTED:credit_card" in published["body"]


def test_a_reviewer_edit_that_adds_a_secret_is_denied_on_recheck() -> None:
    world = World()
    script = Script(call("publish", body="Maintenance tonight."), AIMessage("ok"))
    graph = solo(world, script, guard=egress_guard())
    run(graph, "post the notice")

    edit = {"type": "edit", "edited_action": {"name": "publish", "args": {"body": AWS_KEY}}}
    state = resume(graph, {"decisions": [edit]})

    assert world.ran("publish") == []
    assert "denied on re-check after approval" in str(answer_to(state, "c1").content)


def test_a_card_number_in_the_final_answer_is_redacted_in_the_summary() -> None:
    world = World()
    script = Script(AIMessage(f"The card on file is {CARD}, expiring 2030."))
    graph = solo(world, script, guard=egress_guard())

    state = run(graph, "which card is on file?")

    summary = state["outcome"]["summary"]
    assert CARD not in summary and "[REDACTED:credit_card ****1111]" in summary
    assert summary.startswith("The card on file is ") and summary.endswith(", expiring 2030.")
    assert any(f["where"] == "egress:answer" for f in state["findings"])


# ------------------------------------------------------------------------------------------------
# 6. Budgets


def test_the_tenant_budget_stops_the_model_call_that_would_cross_it() -> None:
    text = "help me"
    first_usd = first_call_usd("You are first.", text)
    ledger = InMemoryBudgetLedger()
    tenants = TenantDirectory([TenantPolicy(name=TENANT, budget=BudgetCaps(usd=1.5 * first_usd))])
    guard = ActionGuard(spend=SpendPolicy(ledger=ledger), tenants=tenants)
    world, one, two = World(), Script(AIMessage("first says")), Script(AIMessage("second says"))
    graph = build(
        world,
        agent("first", one, model=one.model("metered")),
        agent("second", two, model=two.model("metered")),
        guard=guard,
        prices=PRICES,
    )

    state = run(graph, text)

    assert state["outcome"]["status"] == "halted"
    assert state["outcome"]["reason"].startswith("tenant budget exhausted")
    assert (one.calls, two.calls) == (1, 0), "the call that would cross the cap never happened"
    assert state["usage"]["steps"] == 1
    assert state["usage"]["cost_usd"] == pytest.approx(first_usd, rel=0.05)
    key = SpendPolicy().key(TENANT)
    assert ledger.spent(key).usd == pytest.approx(state["usage"]["cost_usd"], abs=1e-6)
    assert ledger.held(key).usd == 0, "no hold is left behind"


def check_resume_charges_once(saver: BaseCheckpointSaver) -> None:
    ledger = InMemoryBudgetLedger()
    key = SpendPolicy().key(TENANT)
    ledger.set_caps(key, BudgetCaps(usd=10.0))
    guard = ActionGuard(spend=SpendPolicy(ledger=ledger))
    world = World()
    script = Script(call("transfer", amount=500, to="eve"), AIMessage("paid eve"))
    graph = solo(world, script, guard=guard, prices=PRICES, checkpointer=saver)

    run(graph, "pay eve 500", durability="sync")
    before = ledger.spent(key)
    assert before.steps == 1
    again = resume(graph, {"decisions": [{"type": "maybe"}]}, durability="sync")
    assert again["__interrupt__"], "an invalid answer asks again"
    graph = solo(world, script, guard=guard, prices=PRICES, checkpointer=saver)
    state = resume(graph, APPROVE, durability="sync")

    assert state["outcome"]["status"] == "resolved" and world.ran("transfer")
    assert script.calls == 2 and state["usage"]["steps"] == 2
    spent = ledger.spent(key)
    assert spent.steps == 2, "each model call is charged once"
    assert spent.usd == pytest.approx(state["usage"]["cost_usd"], abs=1e-6)
    assert ledger.held(key).usd == 0


def test_resuming_an_approval_does_not_charge_the_tenant_twice() -> None:
    check_resume_charges_once(InMemorySaver())


def test_resuming_an_approval_charges_once_on_durable_checkpointers(
    saver: BaseCheckpointSaver,
) -> None:
    check_resume_charges_once(saver)


class ThresholdRun:
    """A run whose first call spends half its money cap, so the second meets the threshold."""

    text = "where is order A1?"

    def __init__(self, on_threshold: str, fallback: Script | None = None) -> None:
        self.world = World()
        self.primary = Script(call("lookup", order="A1"), AIMessage("A1 has shipped"))
        self.ledger = InMemoryBudgetLedger()
        first_usd = first_call_usd("You are worker.", self.text, self.world.tools)
        spec = agent(
            "worker",
            self.primary,
            tools=ALL_TOOLS,
            model=self.primary.model("metered"),
            fallback_model=fallback.model("metered-mini") if fallback else None,
        )
        spend = SpendPolicy(
            ledger=self.ledger,
            on_threshold=on_threshold,  # type: ignore[arg-type]
            threshold=0.5,
            extension_usd=1.0,
        )
        workflow = Workflow(name="w", limits=RunLimits(max_usd=1.5 * first_usd))
        self.graph = build(
            self.world, spec, guard=ActionGuard(spend=spend), workflow=workflow, prices=PRICES
        )

    def spent(self) -> float:
        return self.ledger.spent(SpendPolicy().key(TENANT)).usd


def test_past_the_threshold_the_fallback_model_answers() -> None:
    fallback = Script(AIMessage("A1 has shipped (cheaply)"))
    setup = ThresholdRun("fallback", fallback)

    state = run(setup.graph, setup.text)

    assert (setup.primary.calls, fallback.calls) == (1, 1)
    replies = [m for m in state["messages"] if isinstance(m, AIMessage)]
    assert [m.response_metadata["model_name"] for m in replies] == ["metered", "metered-mini"]
    assert state["budget"]["fallback"] is True and state["budget"]["threshold_hit"] is True
    assert state["outcome"]["status"] == "resolved"
    assert state["outcome"]["summary"] == "A1 has shipped (cheaply)"
    assert setup.spent() == pytest.approx(state["usage"]["cost_usd"], abs=1e-6)


def test_past_the_threshold_a_human_extends_the_budget() -> None:
    setup = ThresholdRun("ask")

    [pending] = run(setup.graph, setup.text)["__interrupt__"]
    [action] = pending.value["action_requests"]
    assert action["name"] == "extend_budget" and action["args"] == {"extra_usd": 1.0}
    assert pending.value["review_configs"][0]["allowed_decisions"] == ["approve", "reject"]
    assert setup.primary.calls == 1

    state = resume(setup.graph, APPROVE)

    assert state["budget"]["extra_usd"] == 1.0
    assert setup.primary.calls == 2 and state["outcome"]["status"] == "resolved"
    assert any("budget extended" in r for v in state["verdicts"] for r in v["reasons"])
    assert setup.spent() == pytest.approx(state["usage"]["cost_usd"], abs=1e-6)


def test_past_the_threshold_a_declined_extension_halts_the_run() -> None:
    setup = ThresholdRun("ask")
    run(setup.graph, setup.text)

    state = resume(setup.graph, {"decisions": [{"type": "reject", "reviewer": "cfo"}]})

    assert state["outcome"]["status"] == "halted"
    assert "human:cfo declined to extend the budget" in state["outcome"]["reason"]
    assert state["budget"]["extra_usd"] == 0.0 and setup.primary.calls == 1


def test_routing_calls_are_priced_by_the_graphs_price_table() -> None:
    ledger = InMemoryBudgetLedger()
    worker, router = Script(AIMessage("done")), handoffs("worker", "finish")
    graph = build(
        World(),
        agent("worker", worker, model=worker.model("metered-mini")),
        router=ModelRouter(model=router.model("metered-mini")),
        guard=ActionGuard(spend=SpendPolicy(ledger=ledger)),
        prices=PRICES,
    )

    state = run(graph)

    assert router.calls == 2 and state["outcome"]["status"] == "resolved"
    assert state["usage"]["cost_usd"] == 0.0, "every model in the graph's price table is free"


# ------------------------------------------------------------------------------------------------
# 7. Loops


def test_handoff_ping_pong_halts_the_run() -> None:
    world = World()
    a, b = Script(AIMessage("a1"), AIMessage("a2")), Script(AIMessage("b1"), AIMessage("b2"))
    router = handoffs("a", "b", "a", "b", "a", "b")
    graph = build(world, agent("a", a), agent("b", b), router=ModelRouter(model=router.model()))

    state = run(graph)

    assert state["outcome"]["status"] == "halted"
    assert "handoff ping-pong" in state["outcome"]["reason"]
    assert state["routes"] == ["a", "b", "a", "b", "a"]
    assert (a.calls, b.calls, router.calls) == (2, 2, 5)


def test_a_specialist_that_keeps_talking_without_progress_is_halted() -> None:
    world = World()
    talker = Script(*(AIMessage(f"thinking {i}") for i in range(5)))
    router = handoffs(*["talker"] * 5)
    graph = build(
        world,
        agent("talker", talker),
        router=ModelRouter(model=router.model()),
        guard=ActionGuard(loops=LoopPolicy(no_progress_steps=3)),
    )

    state = run(graph)

    assert state["outcome"]["status"] == "halted"
    assert state["outcome"]["reason"].startswith("no progress")
    assert state["usage"]["steps"] == 3 and talker.calls == 1


def test_a_tool_that_fails_every_time_ends_in_no_progress() -> None:
    world = World()
    script = Script(*(call("flaky", f"c{i}", n=i) for i in range(6)))
    guard = ActionGuard(loops=LoopPolicy(no_progress_steps=3), breaker=BreakerPolicy(failures=10))
    graph = solo(world, script, guard=guard)

    state = run(graph)

    assert state["outcome"]["status"] == "halted"
    assert state["outcome"]["reason"].startswith("no progress")
    assert len(world.ran("flaky")) == 3 and script.calls == 3


def test_repeated_identical_proposals_halt_as_a_loop() -> None:
    world = World()
    script = Script(*(call("lookup", f"c{i}", order="A1") for i in range(4)))
    graph = solo(world, script)

    state = run(graph)

    assert state["outcome"]["status"] == "halted"
    assert "loop detected: `lookup` was proposed 3 times" in state["outcome"]["reason"]
    assert len(world.ran("lookup")) == 2 and script.calls == 3
    assert "not run: the run was halted" in str(answer_to(state, "c2").content)


# ------------------------------------------------------------------------------------------------
# 8. Circuit breaker


def test_an_open_circuit_refuses_the_tool_and_stays_open_for_the_next_run() -> None:
    saver = InMemorySaver()
    guard = ActionGuard(breaker=BreakerPolicy(failures=2, cooldown_s=600))
    world = World()
    script = Script(
        call("flaky", "c1", n=1),
        call("flaky", "c2", n=2),
        call("flaky", "c3", n=3),
        AIMessage("down"),
    )
    state = run(solo(world, script, guard=guard, checkpointer=saver))

    assert [a["n"] for a in world.ran("flaky")] == [1, 2]
    assert "circuit is open" in str(answer_to(state, "c3").content)
    assert verdicts_for(state, "c3")[-1]["kind"] == "deny"
    assert state["breakers"]["flaky"]["open_until"] > time.time()

    # A new graph object on the same checkpointer and thread: a new run, same broken tool.
    later = Script(call("flaky", "c4", n=4), AIMessage("still down"))
    state = run(solo(world, later, guard=guard, checkpointer=saver), "try again")

    assert [a["n"] for a in world.ran("flaky")] == [1, 2], "the tool was not called again"
    assert "circuit is open" in str(answer_to(state, "c4").content)
    assert state["outcome"]["status"] == "resolved" and later.calls == 2


# ------------------------------------------------------------------------------------------------
# 9. Tenants


def test_an_unknown_tenant_is_rejected_at_intake_naming_the_known_ones() -> None:
    tenants = TenantDirectory([TenantPolicy(name="acme"), TenantPolicy(name="globex")])
    world, script = World(), Script(AIMessage("hi"))
    graph = solo(world, script, guard=ActionGuard(tenants=tenants))

    state = run(graph, tenant="initech")

    assert state["outcome"]["status"] == "rejected"
    assert "'initech'" in state["outcome"]["reason"]
    assert "known tenants: acme, globex" in state["outcome"]["reason"]
    assert script.calls == 0 and state["usage"]["steps"] == 0

    assert run(graph, tenant="globex")["outcome"]["status"] == "resolved"
