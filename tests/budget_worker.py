"""One OS process charging a shared Redis budget, started by `tests/test_budget_concurrency.py`.

    budget_worker.py URL TENANT WORKER STEPS CHARGE_USD READY_LIST GO_LIST

Connects, pushes WORKER onto READY_LIST, blocks until it pops a token from GO_LIST (so every
worker starts at once), then makes STEPS reserve → settle calls of CHARGE_USD against TENANT,
retrying each reserve once with the same id. Then it "resumes" like a restarted process would:
a new ledger re-reserves and re-settles every admitted id. Prints one JSON line:
`{"admitted": [ids], "retries_replayed": n, "resumes_replayed": n}`.
"""

from __future__ import annotations

import json
import sys
import time

import redis

from guards.base import BudgetKey, Charge
from guards.redis_budget import RedisBudgetLedger

GO_TIMEOUT_S = 60


def _wait_for_start(client: redis.Redis, go_list: str, worker: str) -> None:
    """Pop a start token; short BLPOPs stay under the client's socket timeout."""
    deadline = time.monotonic() + GO_TIMEOUT_S
    while time.monotonic() < deadline:
        if client.blpop([go_list], timeout=1) is not None:
            return
    sys.exit(f"worker {worker}: no start token on {go_list!r} within {GO_TIMEOUT_S}s")


def main(argv: list[str]) -> None:
    url, tenant, worker, steps, charge_usd, ready_list, go_list = argv
    key = BudgetKey(tenant=tenant)
    charge = Charge(usd=float(charge_usd))
    client = redis.Redis.from_url(url)
    ledger = RedisBudgetLedger(client)
    ledger.spent(key)  # connect before the start line, so the race is about the ledger only
    client.rpush(ready_list, worker)
    _wait_for_start(client, go_list, worker)

    admitted: list[str] = []
    retries_replayed = 0
    for step in range(int(steps)):
        rid = f"w{worker}-s{step}"
        answer = ledger.reserve(key, rid, charge)
        # A retry of the same call (e.g. after a timeout) must not hold the money twice.
        retry = ledger.reserve(key, rid, charge)
        if answer.admitted:
            retries_replayed += retry.replayed and retry.admitted
            admitted.append(rid)
            ledger.settle(rid, charge)

    resumed = RedisBudgetLedger(url)  # a new client, as a resumed process would have
    resumes_replayed = 0
    for rid in admitted:
        resumes_replayed += resumed.reserve(key, rid, charge).replayed
        resumed.settle(rid, Charge(usd=10 * charge.usd))  # must not charge again
    resumed.close()
    client.close()
    print(
        json.dumps(
            {
                "admitted": admitted,
                "retries_replayed": retries_replayed,
                "resumes_replayed": resumes_replayed,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
