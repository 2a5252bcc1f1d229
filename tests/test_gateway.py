"""The execution gateway: budgets, retries, the effect ledger, rate limits, secrets, shadow mode."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pytest
from pydantic import BaseModel

import tools.deadline
from tools import (
    DurabilityError,
    EffectIntent,
    ExecutionGateway,
    InMemoryEffectLedger,
    RateLimit,
    RateLimiterError,
    SecretSource,
    ToolContext,
    ToolError,
    ToolInvocation,
    ToolRegistry,
    ToolResult,
    ToolRetry,
    ToolSpec,
    idempotency_key,
    require_durable,
    tool_contract,
)

TOKEN = "tok-3f9a-very-secret"


class FakeTime:
    """Wall time that moves only when the gateway sleeps (if `moves`); every sleep is recorded."""

    def __init__(self, *, moves: bool = True) -> None:
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []
        self.moves = moves
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if self.moves:
                self.now += seconds


@dataclass
class Rig:
    """A gateway over `specs` with a fake clock, an in-memory ledger and a seeded jitter source."""

    specs: list[ToolSpec]
    secrets: Mapping[str, str] = field(default_factory=dict)
    time: FakeTime = field(default_factory=FakeTime)
    ledger: InMemoryEffectLedger = field(default_factory=InMemoryEffectLedger)
    source: SecretSource | None = None
    rate_limiter: Any = None

    def __post_init__(self) -> None:
        self.gateway = ExecutionGateway(
            ToolRegistry(self.specs),
            effects=self.ledger,
            rate_limiter=self.rate_limiter,
            secrets=self.source or self.secrets.get,  # type: ignore[arg-type]
            clock=self.time.clock,
            sleep=self.time.sleep,
            rng=random.Random(7),
        )

    def run(
        self,
        tool: str,
        *,
        call_id: str = "c1",
        tenant: str = "acme",
        thread: str = "t1",
        shadow: bool = False,
        before_effect: Callable[[ToolInvocation], str | None] | None = None,
        **args: Any,
    ) -> ToolResult:
        invocation = ToolInvocation(
            tool=tool,
            args=args,
            call_id=call_id,
            tenant=tenant,
            thread_id=thread,
            agent="billing",
            run_id="r1",
            shadow=shadow,
        )
        return self.gateway.execute(invocation, before_effect=before_effect)


def key_of(tool: str, args: dict[str, Any], tenant: str = "acme", thread: str = "t1") -> str:
    return idempotency_key(tenant, thread, tool, args)


# --- latency budget -------------------------------------------------------------------------


def test_a_tool_over_its_latency_budget_times_out_naming_the_budget() -> None:
    never = threading.Event()

    @tool_contract(timeout_s=0.05, retry=ToolRetry(attempts=1))
    def lookup(q: str) -> str:
        """Look up."""
        never.wait(10)
        return q

    try:
        result = Rig([lookup]).run("lookup", q="x")
    finally:
        never.set()
    assert result.error_kind == "timeout" and not result.ok and result.ran
    assert "0.05s latency budget" in result.content
    assert "do not retry the same call now" in result.content


def test_a_timed_out_non_idempotent_effect_is_in_doubt_and_never_repeated() -> None:
    never, calls = threading.Event(), []

    @tool_contract(side_effect="irreversible", timeout_s=0.05)
    def charge(amount: int) -> str:
        """Charge a card."""
        calls.append(amount)
        never.wait(10)
        return "charged"

    rig = Rig([charge])
    try:
        first = rig.run("charge", amount=5)
    finally:
        never.set()
    assert first.error_kind == "timeout" and "a person must check" in first.content
    record = rig.ledger.get(key_of("charge", {"amount": 5}))
    assert record is not None and record.status == "in_doubt"
    again = rig.run("charge", call_id="c2", amount=5)
    assert again.error_kind == "in_doubt" and "person must check" in again.content
    assert not again.ran and calls == [5]


def test_timed_out_calls_run_on_daemon_threads_so_a_hung_tool_cannot_block_exit() -> None:
    seen: list[bool] = []

    @tool_contract(timeout_s=5.0)
    def probe() -> bool:
        """Probe."""
        seen.append(threading.current_thread().daemon)
        return True

    assert Rig([probe]).run("probe").ok
    assert seen == [True]


def test_a_call_that_finds_no_free_tool_thread_did_not_act(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slots, hold, calls = threading.BoundedSemaphore(1), threading.Event(), []
    monkeypatch.setattr(tools.deadline, "_SLOTS", slots)

    @tool_contract(timeout_s=0.05, retry=ToolRetry(attempts=1))
    def stuck() -> str:
        """Hangs."""
        hold.wait(10)
        return "late"

    @tool_contract(side_effect="irreversible", timeout_s=0.05)
    def pay(n: int) -> int:
        """Pay."""
        calls.append(n)
        return n

    rig = Rig([stuck, pay])
    try:
        assert rig.run("stuck").error_kind == "timeout"
        starved = rig.run("pay", n=1)
    finally:
        hold.set()
    assert starved.error_kind == "timeout" and not starved.ran and calls == []
    assert "nothing was done" in starved.content
    assert rig.ledger.get(key_of("pay", {"n": 1})) is None, "a call that never ran is released"
    assert slots.acquire(timeout=5)  # the stuck thread returns its slot once freed
    slots.release()
    assert rig.run("pay", call_id="c2", n=1).ok and calls == [1]


# --- retries --------------------------------------------------------------------------------


def test_idempotent_tools_are_retried_with_capped_full_jitter() -> None:
    failures: list[Exception] = [ConnectionError("reset"), ConnectionError("reset")]
    attempts: list[int] = []

    @tool_contract(retry=ToolRetry(attempts=3, base_delay_s=0.1, max_delay_s=0.15))
    def quote(sku: str, *, ctx: ToolContext) -> str:
        """Price of a SKU."""
        attempts.append(ctx.attempt)
        if failures:
            raise failures.pop(0)
        return "9.99"

    rig = Rig([quote])
    result = rig.run("quote", sku="A")
    assert result.ok and result.attempts == 3 and attempts == [1, 2, 3]
    assert len(rig.time.sleeps) == 2
    for n, delay in enumerate(rig.time.sleeps, start=1):
        assert 0 <= delay <= min(0.15, 0.1 * 2 ** (n - 1))
    jitter = random.Random(7)
    assert rig.time.sleeps == [jitter.uniform(0, 0.1), jitter.uniform(0, 0.15)]


def test_timeouts_of_idempotent_tools_are_retried() -> None:
    never, calls = threading.Event(), []

    @tool_contract(timeout_s=0.05, retry=ToolRetry(attempts=2))
    def search(q: str) -> str:
        """Search."""
        calls.append(q)
        if len(calls) == 1:
            never.wait(10)
        return q

    try:
        result = Rig([search]).run("search", q="x")
    finally:
        never.set()
    assert result.ok and result.attempts == 2 and len(calls) == 2


def test_only_retryable_tool_errors_are_retried() -> None:
    calls: list[str] = []

    @tool_contract()
    def busy(q: str) -> str:
        """Busy upstream."""
        calls.append(q)
        if len(calls) < 2:
            raise ToolError("upstream busy", code="busy", retryable=True)
        return "ok"

    @tool_contract()
    def missing(q: str) -> str:
        """Missing thing."""
        calls.append(q)
        raise ToolError(f"`{q}` not found; check the id", code="not_found")

    rig = Rig([busy, missing])
    assert rig.run("busy", q="a").attempts == 2 and calls == ["a", "a"]
    result = rig.run("missing", q="b")
    assert result.error_kind == "tool_error" and result.error_code == "not_found"
    assert result.attempts == 1 and calls == ["a", "a", "b"]
    assert "`b` not found; check the id" in result.content
    assert len(rig.time.sleeps) == 1


def test_a_non_idempotent_effect_is_never_retried() -> None:
    calls: list[int] = []

    @tool_contract(side_effect="irreversible")
    def transfer(amount: int) -> str:
        """Move money."""
        calls.append(amount)
        raise ConnectionError("connection reset after sending")

    rig = Rig([transfer])
    result = rig.run("transfer", amount=7)
    assert calls == [7] and result.attempts == 1 and rig.time.sleeps == []
    assert result.error_kind == "crashed" and "a person must check" in result.content
    assert rig.ledger.get(key_of("transfer", {"amount": 7})).status == "in_doubt"  # type: ignore[union-attr]


def test_idempotent_side_effecting_tools_are_retried() -> None:
    calls: list[str] = []

    @tool_contract(side_effect="irreversible", idempotent=True)
    def notify(to: str) -> str:
        """Notify (the provider dedupes on the key)."""
        calls.append(to)
        if len(calls) == 1:
            raise TimeoutError("provider slow")
        return "sent"

    result = Rig([notify]).run("notify", to="a")
    assert result.ok and result.attempts == 2 and calls == ["a", "a"]


def test_exhausted_retries_say_how_many_attempts_were_made() -> None:
    @tool_contract()
    def down() -> str:
        """Always down."""
        raise ConnectionError("refused")

    result = Rig([down]).run("down")
    assert result.error_kind == "crashed" and result.attempts == 3
    assert "after 3 attempts" in result.content and "ConnectionError: refused" in result.content


# --- the effect ledger ----------------------------------------------------------------------


def _refund_tool(calls: list[str], **contract: Any) -> ToolSpec:
    @tool_contract(side_effect="irreversible", **contract)
    def refund(order: str, amount: int, note: str = "", *, ctx: ToolContext) -> dict[str, Any]:
        """Refund an order."""
        calls.append(ctx.call_id)
        return {"refunded": amount, "order": order, "key": ctx.idempotency_key}

    return refund


def test_a_side_effect_runs_once_and_a_repeat_replays_its_result() -> None:
    calls: list[str] = []
    rig = Rig([_refund_tool(calls)])
    first = rig.run("refund", call_id="c1", order="O1", amount=5)
    again = rig.run("refund", call_id="c2", order="O1", amount=5)
    assert first.ok and first.ran and not first.replayed and calls == ["c1"]
    assert again.replayed and not again.ran and again.attempts == 0
    assert json.loads(again.content) == {**json.loads(first.content), "replayed": True}
    assert again.idempotency_key == first.idempotency_key
    assert json.loads(first.content)["key"] == first.idempotency_key
    record = rig.ledger.get(first.idempotency_key or "")
    assert record is not None and record.status == "done" and record.attempts == 1
    assert record.outcome is not None and record.outcome.output["refunded"] == 5
    other = rig.run("refund", call_id="c3", order="O1", amount=6)
    assert other.ok and not other.replayed and calls == ["c1", "c3"]


def test_declared_idempotency_fields_identify_the_effect() -> None:
    calls: list[str] = []
    rig = Rig([_refund_tool(calls, idempotency_fields=("order",))])
    first = rig.run("refund", call_id="c1", order="O1", amount=5, note="sorry")
    again = rig.run("refund", call_id="c2", order="O1", amount=5, note="apologies")
    assert again.replayed and calls == ["c1"]
    assert json.loads(again.content) == {**json.loads(first.content), "replayed": True}
    assert first.idempotency_key == key_of("refund", {"order": "O1"})


def test_a_tool_error_releases_the_claim_so_a_later_call_runs() -> None:
    calls: list[int] = []

    @tool_contract(side_effect="irreversible")
    def book(seat: int) -> str:
        """Book a seat."""
        calls.append(seat)
        if len(calls) == 1:
            raise ToolError("seat map is locked; try again shortly")
        return "booked"

    rig = Rig([book])
    failed = rig.run("book", seat=3)
    assert failed.error_kind == "tool_error" and failed.ran
    assert rig.ledger.get(failed.idempotency_key or "") is None
    assert rig.run("book", call_id="c2", seat=3).ok and calls == [3, 3]


def test_a_crash_of_an_idempotent_effect_releases_the_claim() -> None:
    calls: list[int] = []

    @tool_contract(side_effect="irreversible", idempotent=True, retry=ToolRetry(attempts=1))
    def upsert(n: int) -> int:
        """Upsert by key."""
        calls.append(n)
        if len(calls) == 1:
            raise RuntimeError("driver bug")
        return n

    rig = Rig([upsert])
    crashed = rig.run("upsert", n=1)
    assert crashed.error_kind == "crashed" and "person must check" not in crashed.content
    assert rig.ledger.get(crashed.idempotency_key or "") is None
    assert rig.run("upsert", call_id="c2", n=1).ok and calls == [1, 1]


class Receipt(BaseModel):
    id: str
    amount: int


def test_a_broken_output_of_a_side_effect_is_recorded_and_never_rerun() -> None:
    calls: list[int] = []

    @tool_contract(side_effect="irreversible", output_model=Receipt)
    def pay(amount: int) -> Any:
        """Pay."""
        calls.append(amount)
        return {"id": "r1", "amount": "a lot"}

    rig = Rig([pay])
    first = rig.run("pay", amount=3)
    assert first.error_kind == "bad_output" and "`amount`" in first.content and first.ran
    record = rig.ledger.get(first.idempotency_key or "")
    assert record is not None and record.status == "done"
    assert record.outcome is not None and not record.outcome.ok
    again = rig.run("pay", call_id="c2", amount=3)
    assert again.replayed and again.error_kind == "bad_output" and calls == [3]


def test_concurrent_identical_calls_act_exactly_once() -> None:
    release, waiting, lock = threading.Event(), set(), threading.Lock()

    class WaitingTime(FakeTime):
        def sleep(self, seconds: float) -> None:  # a caller waiting on the busy claim
            super().sleep(seconds)
            with lock:
                waiting.add(threading.get_ident())
                if len(waiting) == 7:
                    release.set()

    calls: list[str] = []

    @tool_contract(side_effect="irreversible")
    def ship(parcel: str, *, ctx: ToolContext) -> dict[str, str]:
        """Ship a parcel."""
        calls.append(ctx.call_id)
        assert release.wait(10), "the other callers never waited on the claim"
        return {"shipped": parcel, "by": ctx.call_id}

    rig = Rig([ship], time=WaitingTime(moves=False))
    start = threading.Barrier(8)
    results: list[ToolResult | None] = [None] * 8

    def worker(i: int) -> None:
        start.wait()
        results[i] = rig.run("ship", call_id=f"c{i}", parcel="P1")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    done = [r for r in results if r is not None]
    assert len(done) == 8 and len(calls) == 1
    shipped = [json.loads(r.content) for r in done]
    assert all(r.ok for r in done) and len({s["by"] for s in shipped}) == 1
    assert sum(s.get("replayed", False) for s in shipped) == 7, "replays must say so"
    assert sum(r.replayed for r in done) == 7 and sum(r.ran for r in done) == 1


def _dead_owner() -> str:
    child = subprocess.Popen(["true"])
    child.wait()
    return f"{socket.gethostname()}|{child.pid}|?|deadbeef0000"


def _seed_claim(rig: Rig, tool: str, args: dict[str, Any], owner: str, lease_s: float) -> str:
    spec = rig.gateway.registry.get(tool)
    assert spec is not None
    key = key_of(tool, args)
    intent = EffectIntent(
        key=key,
        tool=tool,
        tenant="acme",
        thread_id="t1",
        run_id="r0",
        agent="billing",
        args=args,
        side_effect=spec.side_effect,
    )
    assert rig.ledger.claim(intent, owner=owner, lease_s=lease_s, now=rig.time.now).kind == (
        "acquired"
    )
    return key


def _effect_pair(calls: list[int]) -> list[ToolSpec]:
    @tool_contract(side_effect="irreversible", idempotent=True)
    def sync_crm(n: int, *, ctx: ToolContext) -> int:
        """Sync (dedupes on the key)."""
        calls.append(ctx.attempt)
        return n

    @tool_contract(side_effect="irreversible")
    def wire(n: int) -> int:
        """Wire money."""
        calls.append(n)
        return n

    return [sync_crm, wire]


def test_a_claim_left_by_a_dead_worker_is_rerun_only_when_idempotent() -> None:
    calls: list[int] = []
    rig = Rig(_effect_pair(calls))
    key = _seed_claim(rig, "sync_crm", {"n": 1}, _dead_owner(), lease_s=3600)
    assert rig.run("sync_crm", n=1).ok and calls == [2], "the recovered call is attempt 2"
    record = rig.ledger.get(key)
    assert record is not None and record.status == "done" and record.attempts == 2

    key = _seed_claim(rig, "wire", {"n": 1}, _dead_owner(), lease_s=3600)
    result = rig.run("wire", n=1)
    assert result.error_kind == "in_doubt" and "person must check" in result.content
    assert not result.ran and calls == [2]
    assert rig.ledger.get(key).status == "in_doubt"  # type: ignore[union-attr]
    assert rig.time.sleeps == [], "a dead owner is taken over at once"


def test_a_live_claim_elsewhere_is_waited_for_until_its_lease_runs_out() -> None:
    calls: list[int] = []
    rig = Rig(_effect_pair(calls))
    _seed_claim(rig, "sync_crm", {"n": 2}, "another-host|4242|?|feedfacecafe", lease_s=10)
    assert rig.run("sync_crm", n=2).ok and calls == [2]
    assert 10 <= sum(rig.time.sleeps) < 10.1 and max(rig.time.sleeps) <= 0.05


# --- before_effect --------------------------------------------------------------------------


def test_a_refusal_before_the_effect_releases_the_claim() -> None:
    calls: list[str] = []
    rig = Rig([_refund_tool(calls)])
    refused = rig.run("refund", order="O1", amount=5, before_effect=lambda _: "run killed")
    assert refused.error_kind == "refused" and "run killed" in refused.content
    assert calls == [] and not refused.ran
    assert rig.ledger.get(refused.idempotency_key or "") is None
    assert rig.run("refund", call_id="c2", order="O1", amount=5).ok and calls == ["c2"]


def test_a_failing_before_effect_check_refuses_and_releases() -> None:
    calls: list[str] = []
    rig = Rig([_refund_tool(calls)])

    def broken(_: ToolInvocation) -> str | None:
        raise ConnectionError("kill switch backend unreachable")

    refused = rig.run("refund", order="O1", amount=5, before_effect=broken)
    assert refused.error_kind == "refused" and "ConnectionError" in refused.content
    assert calls == [] and rig.ledger.get(refused.idempotency_key or "") is None


def test_before_effect_is_not_asked_for_read_only_calls_or_replays() -> None:
    asked: list[str] = []

    def ask(invocation: ToolInvocation) -> None:
        asked.append(invocation.call_id)

    @tool_contract()
    def read(q: str) -> str:
        """Read."""
        return q

    calls: list[str] = []
    rig = Rig([read, _refund_tool(calls)])
    assert rig.run("read", q="x", before_effect=ask).ok and asked == []
    assert rig.run("refund", call_id="c1", order="O", amount=1, before_effect=ask).ok
    assert rig.run("refund", call_id="c2", order="O", amount=1, before_effect=ask).replayed
    assert asked == ["c1"]


# --- rate limits ----------------------------------------------------------------------------


def _limited(per_tenant: bool = True, max_wait_s: float = 0.0) -> ToolSpec:
    @tool_contract(
        rate_limit=RateLimit(calls=2, per_s=1, per_tenant=per_tenant, max_wait_s=max_wait_s)
    )
    def ping(n: int) -> int:
        """Ping."""
        return n

    return ping


def test_a_third_call_in_the_same_instant_is_rate_limited_with_a_hint() -> None:
    rig = Rig([_limited()])
    assert rig.run("ping", n=1).ok and rig.run("ping", n=2).ok
    third = rig.run("ping", n=3)
    assert third.error_kind == "rate_limited" and not third.ran
    assert "frees in 0.5s" in third.content and "2 calls per 1" in third.content
    assert rig.time.sleeps == []


def test_a_call_may_wait_for_a_token_within_max_wait() -> None:
    rig = Rig([_limited(max_wait_s=1.0)])
    results = [rig.run("ping", n=n) for n in range(3)]
    assert all(r.ok for r in results) and rig.time.sleeps == [pytest.approx(0.5)]


def test_rate_limit_buckets_are_per_tenant_unless_shared() -> None:
    rig = Rig([_limited()])
    for tenant in ("acme", "acme", "globex", "globex"):
        assert rig.run("ping", tenant=tenant, n=1).ok
    assert rig.run("ping", tenant="acme", n=1).error_kind == "rate_limited"
    shared = Rig([_limited(per_tenant=False)])
    assert shared.run("ping", tenant="acme", n=1).ok and shared.run("ping", tenant="x", n=1).ok
    assert shared.run("ping", tenant="globex", n=1).error_kind == "rate_limited"


def test_a_rate_limited_effect_releases_its_claim() -> None:
    calls: list[str] = []
    rig = Rig([_refund_tool(calls, rate_limit=RateLimit(calls=1, per_s=60))])
    assert rig.run("refund", order="O1", amount=1).ok
    limited = rig.run("refund", order="O2", amount=1)
    assert limited.error_kind == "rate_limited" and calls == ["c1"]
    assert rig.ledger.get(limited.idempotency_key or "") is None


def test_a_failing_rate_limiter_refuses_calls_and_releases_claims() -> None:
    class DownLimiter:
        def acquire(self, key: str, limit: RateLimit, *, now: float) -> float:
            raise RateLimiterError("redis unreachable")

    calls: list[str] = []
    rig = Rig(
        [_limited(), _refund_tool(calls, rate_limit=RateLimit(calls=1))],
        rate_limiter=DownLimiter(),
    )
    assert rig.run("ping", n=1).error_kind == "rate_limited"
    refused = rig.run("refund", order="O1", amount=1)
    assert refused.error_kind == "rate_limited" and "unavailable" in refused.content
    assert calls == [] and rig.ledger.get(refused.idempotency_key or "") is None


def test_the_claim_lease_covers_the_rate_limit_wait() -> None:
    leases: list[float] = []
    rig: Rig

    @tool_contract(side_effect="irreversible", rate_limit=RateLimit(calls=1, max_wait_s=120))
    def post(n: int, *, ctx: ToolContext) -> int:
        """Post."""
        record = rig.ledger.get(ctx.idempotency_key)
        assert record is not None
        leases.append(record.lease_until - record.started_at)
        return n

    rig = Rig([post])
    assert rig.run("post", n=1).ok and leases[0] > 120


# --- secrets --------------------------------------------------------------------------------


def _secret_tools(seen: list[str]) -> list[ToolSpec]:
    @tool_contract(side_effect="irreversible", secrets=("API_TOKEN",))
    def echo(text: str, *, ctx: ToolContext) -> dict[str, Any]:
        """Echo with the token."""
        seen.extend([repr(ctx), str(ctx.secrets), ctx.secrets["API_TOKEN"]])
        return {"text": text, "auth": f"Bearer {ctx.secrets['API_TOKEN']}"}

    @tool_contract(secrets=("API_TOKEN",), retry=ToolRetry(attempts=1))
    def leak(kind: str, *, ctx: ToolContext) -> str:
        """Fails with the token in the message."""
        if kind == "tool_error":
            raise ToolError(f"rejected token {ctx.secrets['API_TOKEN']}")
        raise RuntimeError(f"401 for {ctx.secrets['API_TOKEN']}")

    @tool_contract(side_effect="irreversible", secrets=("API_TOKEN",))
    def blurt(n: int, *, ctx: ToolContext) -> str:
        """Crashes mid-effect with the token in the message."""
        raise ConnectionError(f"reset while sending {ctx.secrets['API_TOKEN']}")

    return [echo, leak, blurt]


def test_secrets_reach_the_tool_but_never_the_model_or_the_ledger() -> None:
    seen: list[str] = []
    rig = Rig(_secret_tools(seen), secrets={"API_TOKEN": TOKEN})
    result = rig.run("echo", text="hi")
    assert result.ok and seen[2] == TOKEN
    assert TOKEN not in seen[0] and TOKEN not in seen[1] and "API_TOKEN" in seen[1]
    assert "[secret:API_TOKEN]" in result.content and TOKEN not in result.content
    for name in ("echo", "leak"):
        schema = json.dumps(rig.gateway.registry.get(name).llm_schema())  # type: ignore[union-attr]
        assert TOKEN not in schema and "API_TOKEN" not in schema
    for kind in ("tool_error", "crashed"):
        failed = rig.run("leak", kind=kind)
        assert failed.error_kind == kind
        assert "[secret:API_TOKEN]" in failed.content and TOKEN not in failed.content
    doubt = rig.run("blurt", n=1)
    assert doubt.error_kind == "crashed" and TOKEN not in doubt.content
    stored = json.dumps(
        [repr(r) for r in rig.ledger.effects()] + [str(r.outcome) for r in rig.ledger.effects()]
    )
    assert TOKEN not in stored and "[secret:API_TOKEN]" in stored


@pytest.mark.parametrize("token", ['p"a\\ss-wörd\n1', "it's-a-'quoted'-token"])
def test_secrets_are_scrubbed_in_every_encoding_they_appear_in(token: str) -> None:
    @tool_contract(side_effect="irreversible", secrets=("API_TOKEN",), idempotent=True)
    def echo(kind: str, *, ctx: ToolContext) -> list[str]:
        """Echo."""
        if kind == "repr":
            raise KeyError(ctx.secrets["API_TOKEN"])
        return [ctx.secrets["API_TOKEN"], f"x{ctx.secrets['API_TOKEN']}x"]

    rig = Rig([echo], secrets={"API_TOKEN": token})
    encodings = {token, json.dumps(token)[1:-1], json.dumps(token, ensure_ascii=False)[1:-1]}
    encodings.add(repr(token)[1:-1])
    ok = rig.run("echo", kind="plain")
    crashed = rig.run("echo", kind="repr")
    stored = json.dumps([r.outcome.output for r in rig.ledger.effects() if r.outcome])  # type: ignore[union-attr]
    for text in (ok.content, crashed.content, stored):
        assert not [form for form in encodings if form in text]
    assert ok.content.count("[secret:API_TOKEN]") == 2
    assert "[secret:API_TOKEN]" in crashed.content


def test_a_longer_secret_is_scrubbed_before_a_shorter_one_inside_it() -> None:
    @tool_contract(secrets=("SHORT", "LONG"))
    def show(*, ctx: ToolContext) -> str:
        """Show."""
        return ctx.secrets["LONG"]

    rig = Rig([show], secrets={"SHORT": "abcd1234", "LONG": "abcd1234wxyz"})
    content = rig.run("show").content
    assert "[secret:LONG]" in content and "wxyz" not in content


def test_a_missing_or_unreadable_secret_is_a_misconfiguration() -> None:
    calls: list[str] = []
    rig = Rig(_secret_tools(calls))
    missing = rig.run("echo", text="hi")
    assert missing.error_kind == "misconfigured" and "`API_TOKEN`" in missing.content
    assert calls == [] and not missing.ran and rig.ledger.effects() == []

    def vault(name: str) -> str | None:
        raise ConnectionError(f"vault sealed while reading {name}")

    broken = Rig(_secret_tools(calls), source=vault).run("echo", text="hi")
    assert broken.error_kind == "misconfigured" and "`API_TOKEN`" in broken.content
    assert calls == []


# --- output contract ------------------------------------------------------------------------


def test_outputs_are_checked_against_the_contract() -> None:
    @tool_contract(output_model=Receipt)
    def wrong() -> Any:
        """Wrong shape."""
        return {"id": "r1", "amount": "lots"}

    @tool_contract()
    def opaque() -> Any:
        """Not JSON."""
        return object()

    @tool_contract(output_model=Receipt)
    def right() -> Any:
        """Right shape."""
        return Receipt(id="r2", amount=4)

    rig = Rig([wrong, opaque, right])
    bad = rig.run("wrong")
    assert bad.error_kind == "bad_output" and "`amount`" in bad.content and bad.ran
    assert "Do not retry" in bad.content
    opaque_result = rig.run("opaque")
    assert opaque_result.error_kind == "bad_output" and "not JSON" in opaque_result.content
    assert json.loads(rig.run("right").content) == {"id": "r2", "amount": 4}


def test_oversize_outputs_are_truncated_with_a_notice() -> None:
    @tool_contract(max_output_chars=100)
    def dump() -> list[int]:
        """Everything."""
        return list(range(1000))

    result = Rig([dump]).run("dump")
    assert result.ok and result.content.startswith("[0, 1, 2")
    assert result.content.endswith("[truncated: 4890 chars, limit 100]")
    assert len(result.content) < 150


# --- shadow mode ----------------------------------------------------------------------------


def test_shadow_mode_simulates_effects_and_never_replays_into_real_calls() -> None:
    calls: list[str] = []

    def simulate(args: BaseModel, ctx: ToolContext) -> dict[str, Any]:
        assert ctx.shadow
        return {"would_refund": args.amount}  # type: ignore[attr-defined]

    simulated = _refund_tool(calls, simulate=simulate)
    rig = Rig([simulated])
    shadow = rig.run("refund", shadow=True, order="O1", amount=5)
    assert shadow.ok and shadow.shadow and calls == []
    assert json.loads(shadow.content) == {"would_refund": 5}
    record = rig.ledger.get(f"shadow:{shadow.idempotency_key}")
    assert record is not None and record.status == "shadow"
    assert record.outcome is not None and record.outcome.output == {"would_refund": 5}
    assert rig.ledger.get(shadow.idempotency_key or "") is None
    real = rig.run("refund", call_id="c2", order="O1", amount=5)
    assert real.ok and not real.replayed and not real.shadow and calls == ["c2"]


def test_shadow_without_a_simulation_records_a_dry_run() -> None:
    calls: list[str] = []
    rig = Rig([_refund_tool(calls)])
    asked: list[str] = []
    shadow = rig.run(
        "refund", shadow=True, order="O1", amount=5, before_effect=lambda i: asked.append("x")
    )
    assert shadow.ok and shadow.shadow and calls == [] and asked == []
    would = json.loads(shadow.content)
    assert would["tool"] == "refund" and would["args"]["amount"] == 5
    assert "dry run" in would["note"]
    assert rig.ledger.get(f"shadow:{shadow.idempotency_key}").status == "shadow"  # type: ignore[union-attr]


def test_a_failed_simulation_is_still_a_shadow_result() -> None:
    calls: list[str] = []

    def simulate(args: BaseModel, ctx: ToolContext) -> Any:
        raise RuntimeError("simulator out of date")

    rig = Rig([_refund_tool(calls, simulate=simulate)])
    result = rig.run("refund", shadow=True, order="O1", amount=5)
    assert result.error_kind == "crashed" and result.shadow and calls == []
    record = rig.ledger.get(f"shadow:{result.idempotency_key}")
    assert record is not None and record.outcome is not None and not record.outcome.ok


def test_shadow_mode_runs_read_only_tools_for_real() -> None:
    calls: list[str] = []

    @tool_contract()
    def lookup(q: str) -> str:
        """Lookup."""
        calls.append(q)
        return q

    result = Rig([lookup]).run("lookup", shadow=True, q="x")
    assert result.ok and not result.shadow and calls == ["x"]


def test_shadow_records_never_hold_secrets() -> None:
    def simulate(args: BaseModel, ctx: ToolContext) -> dict[str, str]:
        return {"would_send_with": ctx.secrets["API_TOKEN"]}

    @tool_contract(side_effect="irreversible", secrets=("API_TOKEN",), simulate=simulate)
    def send(text: str, *, ctx: ToolContext) -> str:
        """Send."""
        return text

    rig = Rig([send], secrets={"API_TOKEN": TOKEN})
    result = rig.run("send", shadow=True, text="hi")
    assert result.shadow and TOKEN not in result.content
    assert TOKEN not in json.dumps([str(r.outcome) for r in rig.ledger.effects()])


# --- async tools ----------------------------------------------------------------------------


def _async_tools(cancelled: threading.Event) -> list[ToolSpec]:
    @tool_contract()
    async def upper(q: str) -> str:
        """Upper case."""
        await asyncio.sleep(0)
        return q.upper()

    @tool_contract(timeout_s=5.0, name="upper_timed")
    async def upper_timed(q: str) -> str:
        """Upper case, bounded."""
        await asyncio.sleep(0)
        return q.upper()

    @tool_contract(timeout_s=0.05, retry=ToolRetry(attempts=1))
    async def hang() -> str:
        """Never answers."""
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return "never"

    return [upper, upper_timed, hang]


def test_async_tools_run_with_and_without_a_budget() -> None:
    cancelled = threading.Event()
    rig = Rig(_async_tools(cancelled))
    assert json.loads(rig.run("upper", q="a").content) == "A"
    assert json.loads(rig.run("upper_timed", q="b").content) == "B"
    over = rig.run("hang")
    assert over.error_kind == "timeout" and "0.05s latency budget" in over.content
    assert cancelled.wait(5), "an async tool over its budget is cancelled, not left running"


def test_async_tools_and_simulations_work_from_inside_a_running_event_loop() -> None:
    async def simulate(args: BaseModel, ctx: ToolContext) -> str:
        await asyncio.sleep(0)
        return "simulated"

    @tool_contract(side_effect="irreversible", simulate=simulate)
    def send(text: str) -> str:
        """Send."""
        return text

    rig = Rig([*_async_tools(threading.Event()), send])

    async def main() -> tuple[ToolResult, ToolResult]:
        return rig.run("upper", q="a"), rig.run("send", shadow=True, text="x")

    upper, shadow = asyncio.run(main())
    assert upper.ok and json.loads(upper.content) == "A"
    assert shadow.ok and json.loads(shadow.content) == "simulated"


# --- arguments ------------------------------------------------------------------------------


def test_arguments_may_be_any_mapping_and_absurd_nesting_is_refused() -> None:
    @tool_contract()
    def take(data: dict[str, Any]) -> int:
        """Take."""
        return len(data)

    rig = Rig([take])
    proxy = rig.gateway.execute(
        ToolInvocation(
            tool="take",
            args=MappingProxyType({"data": {"a": 1}}),
            call_id="c1",
            tenant="acme",
            thread_id="t1",
            agent="a",
        )
    )
    assert proxy.ok and proxy.content == "1"
    nested: dict[str, Any] = {}
    inner = nested
    for _ in range(5000):
        inner["x"] = {}
        inner = inner["x"]
    deep = rig.run("take", data=nested)
    assert deep.error_kind == "invalid_args" and not deep.ran


# --- durability and the ran flag ------------------------------------------------------------


def test_require_durable_refuses_exit_mode_for_side_effects() -> None:
    with pytest.raises(DurabilityError, match=r"\['pay', 'refund'\].*durability='sync'"):
        require_durable("exit", ["refund", "pay"])
    for mode in ("sync", "async"):
        require_durable(mode, ["refund"])
    require_durable("exit", [])


def test_ran_is_true_only_when_the_tool_code_ran() -> None:
    calls: list[str] = []

    @tool_contract()
    def boom() -> str:
        """Crash."""
        raise ValueError("bad")

    rig = Rig([_refund_tool(calls), boom, _limited()])
    ran = {
        "ok": rig.run("refund", order="O", amount=1),
        "crashed": rig.run("boom"),
        "replayed": rig.run("refund", call_id="c2", order="O", amount=1),
        "refused": rig.run("refund", order="P", amount=1, before_effect=lambda _: "no"),
        "invalid": rig.run("refund", order="O", amount="one"),
        "unknown": rig.run("refnud", order="O", amount=1),
    }
    assert {name: r.ran for name, r in ran.items()} == {
        "ok": True,
        "crashed": True,
        "replayed": False,
        "refused": False,
        "invalid": False,
        "unknown": False,
    }
    assert ran["unknown"].error_kind == "unknown_tool" and "`refund`" in ran["unknown"].content
