"""B12 gateway overhead: one validated call through `ExecutionGateway` vs the bare function."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from bench.redis_server import redis_server
from bench.timing import Timing, interleaved
from tools.contract import tool_contract
from tools.gateway import ExecutionGateway, ToolInvocation, ToolResult
from tools.ledger import InMemoryEffectLedger
from tools.redis_ledger import RedisEffectLedger
from tools.registry import ToolRegistry
from tools.sqlite_ledger import SqliteEffectLedger

__all__ = ["run"]

ARGS: dict[str, Any] = {"sku": "SKU-0042", "qty": 3.0, "currency": "EUR"}
DIRECT_BATCH = 100
"""Direct calls per timed sample (one is too short for the timer); reported per call."""
READ_REPEATS, READ_BUDGET_S = 30_000, 8.0
EFFECT_REPEATS, ALONE_BUDGET_S = 8_000, 4.0
EFFECT_WARMUP = 50
"""Each effect subject gets a fresh key per call, so it needs one invocation per call made."""


def _price(
    sku: Annotated[str, Field(pattern=r"^SKU-[0-9]{4}$")],
    qty: Annotated[float, Field(gt=0, le=1000)],
    currency: Literal["EUR", "USD", "GBP"],
) -> dict[str, Any]:
    """Price `qty` units of `sku` in `currency`."""
    return {"sku": sku, "total": round(qty * 9.5, 2), "currency": currency}


_acted: list[str] = []
"""Orders `_hold` acted on: every fresh-key call must act once, a replay never."""


def _hold(
    order: Annotated[str, Field(pattern=r"^ord-[a-z]+-[0-9]{1,9}$")],
    amount: Annotated[float, Field(gt=0, le=10_000)],
    currency: Literal["EUR", "USD", "GBP"],
) -> dict[str, Any]:
    """Place a hold of `amount` on `order`."""
    _acted.append(order)
    return {"order": order, "held": amount, "currency": currency}


PRICE = tool_contract(name="price")(_price)
PRICE_TIMED = tool_contract(name="timed", timeout_s=5.0)(_price)
HOLD = tool_contract(side_effect="irreversible", name="hold")(_hold)
REGISTRY = ToolRegistry([PRICE, PRICE_TIMED, HOLD])


def _invocation(tool: str, args: dict[str, Any], call_id: str) -> ToolInvocation:
    return ToolInvocation(
        tool=tool,
        args=args,
        call_id=call_id,
        tenant="bench",
        thread_id="b12",
        agent="bench",
        run_id="b12",
    )


def _checked(gateway: ExecutionGateway, invocation: ToolInvocation, *, replay: bool) -> None:
    result: ToolResult = gateway.execute(invocation)
    if not result.ok or result.replayed is not replay:
        raise AssertionError(f"B12 call {invocation.call_id} went wrong: {result}")


def _repeat(gateway: ExecutionGateway, tool: str) -> Callable[[], None]:
    """The same read-only call every time."""
    invocation = _invocation(tool, ARGS, "c")
    return lambda: _checked(gateway, invocation, replay=False)


def _fresh(gateway: ExecutionGateway, tag: str) -> Callable[[], None]:
    """A side-effecting call under a new key each time, so it claims, acts and finishes.

    The invocations are built ahead, so building them is not timed.
    """
    calls: Iterator[ToolInvocation] = iter(
        [
            _invocation(
                "hold", {"order": f"ord-{tag}-{n}", "amount": 12.5, "currency": "EUR"}, f"c{n}"
            )
            for n in range(EFFECT_WARMUP + EFFECT_REPEATS)
        ]
    )
    return lambda: _checked(gateway, next(calls), replay=False)


def _replay(gateway: ExecutionGateway) -> Callable[[], None]:
    """The same side-effecting call again: the ledger returns the recorded result."""
    invocation = _invocation(
        "hold", {"order": "ord-replay-1", "amount": 1.0, "currency": "EUR"}, "r"
    )
    _checked(gateway, invocation, replay=False)
    return lambda: _checked(gateway, invocation, replay=True)


def _direct() -> None:
    for _ in range(DIRECT_BATCH):
        _price(**ARGS)


def _us(timing: Timing, per: int = 1) -> float:
    return round(timing.median_ms * 1000 / per, 2)


def _read_only() -> dict[str, Timing]:
    """Gateway vs direct, interleaved, for the plain read-only call."""
    gateway = ExecutionGateway(REGISTRY)
    return interleaved(
        {"gateway": _repeat(gateway, "price"), "direct": _direct},
        repeats=READ_REPEATS,
        warmup=500,
        budget_s=READ_BUDGET_S,
    )


def _alone(name: str, subject: Callable[[], object]) -> Timing:
    """Time one extra subject on its own (see `_effects`); a fresh-key one must act each call."""
    before = len(_acted)
    timing = interleaved(
        {name: subject}, repeats=EFFECT_REPEATS, warmup=EFFECT_WARMUP, budget_s=ALONE_BUDGET_S
    )[name]
    calls = (EFFECT_WARMUP + len(timing.samples_ms)) if name.startswith("effect_") else 0
    if len(_acted) - before != calls:
        raise AssertionError(f"B12 {name}: {len(_acted) - before} effects for {calls} new keys")
    return timing


def _effects() -> dict[str, Timing]:
    """Side-effecting calls on each ledger, a SQLite replay and a call with a latency budget.

    Each is timed alone: interleaved with fsyncs, Redis round trips or thread starts, an
    in-process call is charged for their context switches and cold caches (up to 1.5x here).
    """
    memory = ExecutionGateway(REGISTRY, effects=InMemoryEffectLedger())
    timings = {
        "effect_inmemory": _alone("effect_inmemory", _fresh(memory, "memory")),
        "timeout_thread": _alone("timeout_thread", _repeat(memory, "timed")),
    }
    with tempfile.TemporaryDirectory(prefix="bastion-b12-") as workdir:
        sqlite = SqliteEffectLedger(f"{workdir}/effects.sqlite", durable=True)
        try:
            gateway = ExecutionGateway(REGISTRY, effects=sqlite)
            timings["effect_sqlite"] = _alone("effect_sqlite", _fresh(gateway, "sqlite"))
            timings["replay_sqlite"] = _alone("replay_sqlite", _replay(gateway))
        finally:
            sqlite.close()
    with redis_server() as url:
        ledger = RedisEffectLedger(url)
        try:
            gateway = ExecutionGateway(REGISTRY, effects=ledger)
            timings["effect_redis"] = _alone("effect_redis", _fresh(gateway, "redis"))
        finally:
            ledger.close()
    return timings


def run() -> dict[str, Any]:
    """Measure B12 (µs per call; ratio = through the gateway / the function called directly)."""
    read = _read_only()
    effects = _effects()
    value, baseline = _us(read["gateway"]), _us(read["direct"], DIRECT_BATCH)
    return {
        "id": "B12",
        "name": "gateway overhead per call (read-only, 3 validated fields) vs direct call",
        "value": value,
        "unit": "µs",
        "baseline": baseline,
        "ratio": round(value / baseline, 1),
        "added_us": round(value - baseline, 2),
        "p99_us": round(read["gateway"].p99_ms * 1000, 2),
        "samples": len(read["gateway"].samples_ms),
        **{f"{name}_us": _us(timing) for name, timing in effects.items()},
        "effect_samples": min(len(timing.samples_ms) for timing in effects.values()),
        "goal": "none set in BENCHMARKS.md (report only)",
    }


if __name__ == "__main__":
    result = run()
    print(
        f"B12 gateway {result['value']} µs vs direct {result['baseline']} µs "
        f"(x{result['ratio']}, +{result['added_us']} µs, p99 {result['p99_us']} µs); "
        f"effects: memory {result['effect_inmemory_us']}, sqlite {result['effect_sqlite_us']}, "
        f"redis {result['effect_redis_us']}, sqlite replay {result['replay_sqlite_us']}; "
        f"timeout thread {result['timeout_thread_us']} µs"
    )
