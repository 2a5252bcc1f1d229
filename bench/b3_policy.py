"""B3 policy decision: Python rules and Rego at 1 / 100 / 1000 rules, uncached, plus cache hits."""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from regopy import Input, Interpreter

from guards.base import PolicyDecision, PolicyRequest
from guards.bundle import PolicyBundle, sign_bundle
from guards.policy import PythonRule, PythonRulesEngine, deny, escalate, rule
from guards.rego import RegoPolicyEngine

__all__ = ["run"]

HOT_PATH = "rego"
"""Engine whose p99 at 1000 rules is the headline `value` (`rego` or `python`)."""
SIZES = (1, 100, 1000)
RULES_PER_TOOL = 5
TENANT_RULES = 5
"""Tenant-wide rules (no tool scope), one per tenant t0..t4."""
TENANTS = {f"t{i}": {"limit": 100 + 10 * i, "frozen": i == 3} for i in range(8)}
TOOLS_ASKED = 20
"""Tools the requests use (the bundle has many more): each route compiles once."""
AMOUNTS = (5, 60, 120, 500)
READS = ("tenant", "args")
"""What the Python rules declare they read (the Rego engine finds it in the source)."""


def _layout(n: int) -> tuple[int, int]:
    """(tool-scoped rules, tenant-wide rules) for a bundle of `n` rules."""
    tenant_rules = 0 if n == 1 else TENANT_RULES
    return n - tenant_rules, tenant_rules


def _tool(i: int) -> str:
    return f"tool{i // RULES_PER_TOOL}"


def _rego_bundle(root: Path, n: int) -> PolicyBundle:
    """A bundle of `n` policies: tool rules spread 5 per tool, plus tenant-wide rules."""
    root.mkdir()
    tool_rules, tenant_rules = _layout(n)
    policies = []
    for i in range(tool_rules):
        (root / f"p{i}.rego").write_text(
            f"package b3.p{i}\nimport rego.v1\n\n"
            "deny contains msg if {\n"
            f"\tinput.args.amount > data.tenants[input.tenant].limit + {i % 7}\n"
            f'\tmsg := sprintf("p{i}: amount %v over the limit", [input.args.amount])\n}}\n\n'
            f'escalate contains "p{i}: needs review" if input.args.amount > {50 + i % 7}\n'
        )
        policies.append({"id": f"p{i}", "version": "1", "owner": "bench", "file": f"p{i}.rego",
                         "scope": {"tools": [_tool(i)]}})  # fmt: skip
    for k in range(tenant_rules):
        (root / f"t{k}.rego").write_text(
            f"package b3.t{k}\nimport rego.v1\n\n"
            'deny contains "tenant is frozen" if data.tenants[input.tenant].frozen\n'
        )
        policies.append({"id": f"t{k}", "version": "1", "owner": "bench", "file": f"t{k}.rego",
                         "scope": {"tenants": [f"t{k}"]}})  # fmt: skip
    (root / "data.json").write_text(json.dumps({"tenants": TENANTS}))
    manifest = {"name": f"b3-{n}", "revision": "1", "policies": policies, "files": {}}
    (root / "bundle.json").write_text(json.dumps(manifest))
    return sign_bundle(root)


def _python_rules(n: int) -> list[PythonRule]:
    """The same policies as `_rego_bundle`, as pure Python rules."""
    tool_rules, tenant_rules = _layout(n)
    rules = []
    for i in range(tool_rules):

        def check(request: PolicyRequest, i: int = i) -> Any:
            amount = request.args["amount"]
            found = []
            if amount > TENANTS[request.tenant]["limit"] + i % 7:
                found.append(deny(f"p{i}: amount {amount} over the limit"))
            if amount > 50 + i % 7:
                found.append(escalate(f"p{i}: needs review"))
            return found

        rules.append(
            rule(id=f"p{i}", version="1", owner="bench", tools=_tool(i), pure=True, reads=READS)(
                check
            )
        )
    for k in range(tenant_rules):

        def frozen(request: PolicyRequest) -> Any:
            return deny("tenant is frozen") if TENANTS[request.tenant]["frozen"] else None

        rules.append(
            rule(id=f"t{k}", version="1", owner="bench", tenants=f"t{k}", pure=True, reads=READS)(
                frozen
            )
        )
    return rules


def _requests(n: int) -> list[PolicyRequest]:
    tools = sorted({_tool(i) for i in range(_layout(n)[0])})[:TOOLS_ASKED]
    return [
        PolicyRequest(tenant=t, workflow="bench", agent="a", tool=tool, args={"amount": a},
                      usage={"steps": 3, "tokens": 900}, context={"run_id": "r1"})
        for tool in tools for t in list(TENANTS)[:6] for a in AMOUNTS
    ]  # fmt: skip


def _samples(evaluate: Callable[[PolicyRequest], PolicyDecision], requests: Sequence[PolicyRequest],
             rounds: int, budget_s: float) -> list[float]:  # fmt: skip
    """Microseconds per call, each call timed alone, over `rounds` passes (or `budget_s`)."""
    for request in requests:  # warm up: compiles every route's group
        evaluate(request)
    gc.collect()
    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(rounds):
        for request in requests:
            begin = time.perf_counter_ns()
            evaluate(request)
            samples.append((time.perf_counter_ns() - begin) / 1e3)
        if time.perf_counter() - started > budget_s:
            break
    return samples


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _stats(prefix: str, samples: list[float]) -> dict[str, float]:
    return {
        f"{prefix}_p50": round(statistics.median(samples), 2),
        f"{prefix}_p99": round(_p99(samples), 2),
    }


def _rego_floor(requests: Sequence[PolicyRequest]) -> dict[str, float]:
    """What regopy costs before any policy runs: a trivial compiled query, and the input."""
    builder, runner = Interpreter(), Interpreter()
    compiled = builder.build("x := 1", [])
    doc = {"args": dict(requests[0].args), "tenant": requests[0].tenant}
    runner.set_input(Input(doc))
    query = [runner.query_bundle(compiled) for _ in range(200)]
    begin = time.perf_counter_ns()
    for _ in range(500):
        runner.query_bundle(compiled)
    query_us = (time.perf_counter_ns() - begin) / 500e3
    begin = time.perf_counter_ns()
    for _ in range(500):
        runner.set_input(Input(doc))
    input_us = (time.perf_counter_ns() - begin) / 500e3
    assert query[0].binding("x").json() == "1"
    return {"rego_floor_query_us": round(query_us, 2), "rego_input_us": round(input_us, 2)}


def run() -> dict[str, Any]:
    """Measure B3 and return its result object (microseconds)."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bastion-b3-") as tmp:
        for n in SIZES:
            requests = _requests(n)
            python = PythonRulesEngine(_python_rules(n), cache_size=0)
            began = time.perf_counter()
            bundle = _rego_bundle(Path(tmp) / f"n{n}", n)
            result[f"rego_load_ms_{n}"] = round((time.perf_counter() - began) * 1e3, 1)
            rego = RegoPolicyEngine(bundle, cache_size=0)
            for request in requests[:: max(1, len(requests) // 40)]:
                assert python.evaluate(request) == rego.evaluate(request), request
            in_scope = statistics.mean(len(python.evaluate(r).policies) for r in requests)
            result[f"policies_in_scope_{n}"] = round(in_scope, 2)
            result |= _stats(f"python_{n}", _samples(python.evaluate, requests, 30, 4))
            result |= _stats(f"rego_{n}", _samples(rego.evaluate, requests, 15, 6))
            if n == SIZES[-1]:
                for name, engine in (("python", PythonRulesEngine(_python_rules(n))),
                                     ("rego", RegoPolicyEngine(bundle))):  # fmt: skip
                    hits = _samples(engine.evaluate, requests, 30, 3)
                    result[f"{name}_cache_hit_p50"] = round(statistics.median(hits), 2)
        result |= _rego_floor(_requests(1))
    fixed = result["rego_floor_query_us"] + result["rego_input_us"]
    per_policy = (result["rego_1000_p50"] - fixed) / result["policies_in_scope_1000"]
    result["rego_per_policy_us"] = round(per_policy, 1)
    return {
        "id": "B3",
        "name": "policy decision, 1 / 100 / 1000 rules, uncached",
        "value": result[f"{HOT_PATH}_1000_p99"],
        "unit": "µs",
        "engine": HOT_PATH,
        **result,
        "goal": "p99 <= 50 at 1000 rules uncached; cache hit p50 <= 2",
        "note": "Rego time is regopy's: a fixed query + input cost, then per policy in scope",
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
