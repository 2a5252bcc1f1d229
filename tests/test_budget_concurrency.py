"""The Redis budget ledger for real: 50 OS processes on one cap, expiring ids, a dead server."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from guards.base import BudgetCaps, BudgetKey, Charge
from guards.budget import BudgetBackendError
from guards.redis_budget import DEFAULT_RESERVATION_TTL_S, RedisBudgetLedger

WORKER = Path(__file__).with_name("budget_worker.py")
REPO_ROOT = Path(__file__).resolve().parent.parent
WORKERS = 50
STEPS = 4
CAP_USD = 1.0
CHARGE_USD = 0.03
DEADLINE_S = 60.0


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test's (emptied) Redis."""
    opened = redis.Redis.from_url(redis_url)
    try:
        yield opened
    finally:
        opened.close()


def _start_workers(redis_url: str, tmp_path: Path) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = []
    for worker in range(WORKERS):
        argv = [sys.executable, str(WORKER), redis_url, "acme", str(worker), str(STEPS)]
        argv += [str(CHARGE_USD), "budget:ready", "budget:go"]
        with (tmp_path / f"worker-{worker}.stderr").open("w") as stderr:
            procs.append(
                subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
            )
    return procs


def _wait_until_all_ready(client: redis.Redis, tmp_path: Path) -> None:
    """Pop one `ready` mark per worker; fail with the workers' stderr if they never come."""
    deadline = time.monotonic() + DEADLINE_S
    ready = 0
    while ready < WORKERS and time.monotonic() < deadline:
        # Short BLPOPs: the client's socket timeout must not expire while Redis blocks.
        ready += client.blpop(["budget:ready"], timeout=1) is not None
    if ready < WORKERS:
        errors = "".join(p.read_text() for p in sorted(tmp_path.glob("*.stderr")))
        pytest.fail(f"only {ready}/{WORKERS} workers got ready; stderr:\n{errors[-3000:]}")


@pytest.mark.redis
@pytest.mark.slow
def test_fifty_processes_never_cross_one_cap_and_never_charge_twice(
    redis_url: str, client: redis.Redis, tmp_path: Path
) -> None:
    key = BudgetKey(tenant="acme")
    ledger = RedisBudgetLedger(client)
    ledger.set_caps(key, BudgetCaps(usd=CAP_USD))
    procs = _start_workers(redis_url, tmp_path)
    try:
        _wait_until_all_ready(client, tmp_path)
        client.rpush("budget:go", *["go"] * WORKERS)  # one start token per worker, all at once
        reports = []
        for worker, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=DEADLINE_S)
            stderr = (tmp_path / f"worker-{worker}.stderr").read_text()
            assert proc.returncode == 0, f"worker {worker} failed:\n{stderr[-3000:]}"
            reports.append(json.loads(out))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()

    admitted = [rid for report in reports for rid in report["admitted"]]
    fits = math.floor(round(CAP_USD / CHARGE_USD, 9))
    assert fits < WORKERS * STEPS, "the test must ask for more than the cap allows"
    assert len(admitted) == len(set(admitted)) == fits
    assert sum(r["retries_replayed"] for r in reports) == fits
    assert sum(r["resumes_replayed"] for r in reports) == fits
    spent = ledger.spent(key)
    assert spent == Charge(usd=round(fits * CHARGE_USD, 6))
    assert spent.usd <= CAP_USD
    assert ledger.held(key) == Charge()

    # One more resume, from this process: replayed, and a re-settle charges nothing extra.
    again = ledger.reserve(key, admitted[0], Charge(usd=CHARGE_USD))
    assert again.replayed and again.admitted
    ledger.settle(admitted[0], Charge(usd=CAP_USD))
    assert ledger.spent(key) == spent


@pytest.mark.redis
def test_reservation_ids_expire_after_the_ttl_and_buckets_do_not(
    redis_url: str, client: redis.Redis
) -> None:
    key = BudgetKey(tenant="acme")
    ledger = RedisBudgetLedger(redis_url, prefix="t", reservation_ttl_s=3600)
    ledger.set_caps(key, BudgetCaps(usd=1.0))
    ledger.reserve(key, "call", Charge(usd=0.1))
    assert 3_590_000 < client.pttl("t:res:call") <= 3_600_000
    client.pexpire("t:res:call", 10)  # pretend most of the hour went by
    ledger.settle("call", Charge(usd=0.1))
    assert client.pttl("t:res:call") > 3_590_000, "settling must restart the dedupe window"
    assert client.ttl("t:bucket:acme/*/default") == -1
    assert sorted(client.keys("*")) == [b"t:bucket:acme/*/default", b"t:res:call"]
    client.delete("t:res:call")  # what expiry does once the TTL is over
    with pytest.raises(KeyError, match="expired"):
        ledger.settle("call", Charge(usd=0.1))
    ledger.close()
    default = RedisBudgetLedger(redis_url)
    default.reserve(key, "call", Charge(usd=0.1))
    assert client.ttl("bastion:budget:res:call") > DEFAULT_RESERVATION_TTL_S - 60


@pytest.mark.redis
def test_a_client_decoding_responses_works_the_same(redis_url: str) -> None:
    decoding = redis.Redis.from_url(redis_url, decode_responses=True)
    ledger = RedisBudgetLedger(decoding)
    key = BudgetKey(tenant="a/b", workflow="support")
    ledger.set_caps(key, BudgetCaps(usd=1.0, tokens=10))
    assert ledger.caps(key) == BudgetCaps(usd=1.0, tokens=10)
    ledger.reserve(key, "call", Charge(usd=0.5, tokens=4))
    replay = ledger.reserve(key, "call", Charge(usd=0.1))
    assert replay.replayed and replay.key == key and replay.amount == Charge(usd=0.5, tokens=4)
    assert replay.used_fraction == 0.5
    ledger.settle("call", Charge(usd=0.25, tokens=4))
    assert ledger.spent(key) == Charge(usd=0.25, tokens=4)
    decoding.close()


def test_a_dead_redis_is_a_clear_backend_error() -> None:
    # A bound socket that never listens refuses every connection, and holds the port.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        url = f"redis://:s3cret@127.0.0.1:{port}/0"
        ledger = RedisBudgetLedger(url)
        with pytest.raises(BudgetBackendError) as raised:
            ledger.reserve(BudgetKey(tenant="acme"), "call", Charge(usd=0.1))
        message = str(raised.value)
        assert f"redis://:***@127.0.0.1:{port}/0" in message
        assert "s3cret" not in message
        assert "start Redis" in message and "unset BASTION_REDIS_URL" in message
        ledger.close()
        # A client handed in is named by its host and port (redis-py's own retries are kept).
        client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(BudgetBackendError, match=f"at redis://127.0.0.1:{port}/0 "):
            RedisBudgetLedger(client).spent(BudgetKey(tenant="acme"))
        client.close()
