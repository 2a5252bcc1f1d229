"""One OS process that claims an effect key on a shared ledger, for test_effect_ledger.

    ledger_worker.py BACKEND ADDRESS KEY

BACKEND is `sqlite` (ADDRESS: the ledger file) or `redis` (ADDRESS: the Redis URL). The worker
opens the ledger, prints `ready`, waits for a `go` line on stdin, claims KEY with an owner of
its own (`new_owner()`, a 60 s lease), prints the claim's kind and stays alive until stdin
closes: a claim held by a live process must not look like a dead one to a slower worker.
"""

from __future__ import annotations

import sys
import time

from tools.base import EffectIntent, EffectLedger
from tools.ledger import new_owner


def _open(backend: str, address: str) -> EffectLedger:
    if backend == "sqlite":
        from tools.sqlite_ledger import SqliteEffectLedger

        return SqliteEffectLedger(address)
    from tools.redis_ledger import RedisEffectLedger

    return RedisEffectLedger(address)


def main(argv: list[str]) -> None:
    backend, address, key = argv
    ledger = _open(backend, address)
    intent = EffectIntent(
        key=key,
        tool="refund",
        tenant="acme",
        thread_id="thread-1",
        run_id="run-1",
        agent="billing",
        args={"order": "ORD-1", "amount": 10},
        side_effect="irreversible",
    )
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    claim = ledger.claim(intent, owner=new_owner(), lease_s=60.0, now=time.time())
    print(claim.kind, flush=True)
    sys.stdin.read()  # held until the parent has every answer


if __name__ == "__main__":
    main(sys.argv[1:])
