"""Cost roll-ups: tokens and dollars per tenant, workflow, run, node and agent."""

from __future__ import annotations

import math

import pytest
from trace_helpers import desk_traces, event

from observability import CostRecord
from observability.costs import COST_KEYS, CostLine, cost_rollup


def cost(tokens_in: int, tokens_out: int, usd: float) -> CostRecord:
    return CostRecord(tokens_in=tokens_in, tokens_out=tokens_out, usd=usd)


def test_no_events_no_lines() -> None:
    assert cost_rollup([], by=("tenant",)) == []
    assert cost_rollup([], by=()) == []


def test_groups_sum_tokens_dollars_steps_and_distinct_runs() -> None:
    events = [
        event("agent_billing", run_id="r1", agent="billing", cost=cost(100, 10, 0.001)),
        event("agent_billing", run_id="r2", agent="billing", cost=cost(50, 5, 0.002)),
        event("agent_triage", run_id="r1", agent="triage", cost=cost(10, 1, 0.0001)),
        event("guard", run_id="r1", agent="billing"),
        event("orchestrator", run_id="r3", tenant="globex", cost=cost(7, 3, 0.5)),
    ]
    by_tenant = cost_rollup(events, by=("tenant",))
    assert by_tenant == [
        CostLine(keys={"tenant": "globex"}, tokens_in=7, tokens_out=3, usd=0.5, steps=1, runs=1),
        CostLine(
            keys={"tenant": "acme"}, tokens_in=160, tokens_out=16, usd=0.0031, steps=4, runs=2
        ),
    ], "most expensive first"
    by_agent = {tuple(line.keys.values()): line for line in cost_rollup(events, by=["agent"])}
    assert set(by_agent) == {("billing",), ("triage",), ("",)}, "no agent groups as empty"
    assert (by_agent[("billing",)].steps, by_agent[("billing",)].runs) == (3, 2)
    [everything] = cost_rollup(events, by=())
    assert (everything.keys, everything.tokens_in, everything.steps, everything.runs) == (
        {},
        167,
        5,
        3,
    )


def test_many_tiny_prices_add_up_exactly() -> None:
    events = [event(cost=cost(1, 1, 0.1)) for _ in range(10)]
    [line] = cost_rollup(events, by=("run_id",))
    assert line.usd == 1.0, "fsum and rounding, not 0.9999999999999999"


def test_steps_before_intake_count_but_not_as_a_run() -> None:
    [line] = cost_rollup([event(run_id="", cost=cost(3, 0, 0.0))], by=("tenant",))
    assert (line.steps, line.runs, line.tokens_in) == (1, 0, 3)


def test_a_key_alone_is_one_key_not_its_letters() -> None:
    [line] = cost_rollup([event()], by="tenant")
    assert line.keys == {"tenant": "acme"}


@pytest.mark.parametrize("by", [("tenant", "model"), ("node", "node")])
def test_unknown_or_repeated_keys_are_refused_with_the_choices(by: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="cost_rollup") as caught:
        cost_rollup([event()], by=by)
    message = str(caught.value)
    assert ("'model'" in message and all(key in message for key in COST_KEYS)) or (
        "twice" in message
    )


def test_as_dict_is_plain_data() -> None:
    [line] = cost_rollup([event(cost=cost(2, 1, 0.25))], by=("tenant", "workflow"))
    assert line.as_dict() == {
        "keys": {"tenant": "acme", "workflow": "support"},
        "tokens_in": 2,
        "tokens_out": 1,
        "usd": 0.25,
        "steps": 1,
        "runs": 1,
    }


# -- real runs ---------------------------------------------------------------------------------


def test_per_run_lines_match_the_sinks_run_summaries() -> None:
    desk = desk_traces()
    lines = {line.keys["run_id"]: line for line in cost_rollup(desk.events, by=("run_id",))}
    assert set(lines) == {run["run_id"] for run in desk.runs}
    for run in desk.runs:
        line = lines[run["run_id"]]
        assert (line.tokens_in, line.tokens_out, line.steps, line.runs) == (
            run["cost"]["tokens_in"],
            run["cost"]["tokens_out"],
            run["steps"],
            1,
        )
        assert math.isclose(line.usd, run["cost"]["usd"], abs_tol=1e-9)


def test_per_tenant_lines_add_up_to_the_reports_and_only_model_steps_cost() -> None:
    desk = desk_traces()
    by_tenant = {line.keys["tenant"]: line for line in cost_rollup(desk.events, by=("tenant",))}
    assert set(by_tenant) == {"acme", "demo"}
    for tenant, line in by_tenant.items():
        reports = [r for key, r in desk.reports.items() if key.startswith(f"{tenant}/")]
        assert line.runs == len(reports)
        assert line.tokens_in + line.tokens_out == sum(r.tokens for r in reports)
        assert math.isclose(line.usd, sum(r.cost_usd for r in reports), abs_tol=1e-9)
    paying = {
        line.keys["node"]
        for line in cost_rollup(desk.events, by=("node",))
        if line.tokens_in or line.usd
    }
    assert paying and all(node == "orchestrator" or node.startswith("agent_") for node in paying)
    killed = desk.run_of("demo/T02")
    [line] = [
        line for line in cost_rollup(desk.events, by=("run_id",)) if line.keys["run_id"] == killed
    ]
    assert (line.usd, line.steps) == (0.0, 2), "a run killed at intake: intake and finalize, free"
