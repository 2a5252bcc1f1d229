"""One OS process that checks a shared kill switch before each effect, for test_kill_processes.

    kill_worker.py BACKEND ADDRESS SEQUENCE TENANT EFFECTS

BACKEND is `sqlite` (ADDRESS: the kill file; SEQUENCE: a SQLite file holding the shared ticket
counter, table `seq`) or `redis` (ADDRESS: the Redis URL; SEQUENCE: the key to INCR).

It loops: take a ticket from the shared sequence, then check the switch for the target
(TENANT, `refunds`, `run-<pid>`); if allowed, append the ticket as one line to the EFFECTS file
(flushed: the side effect) and print `effect <ticket>`. On the first refused check it prints
`refused <ticket> <scope>` and exits 0. A ticket is taken *before* its check, so an effect whose
ticket is above a ticket the parent took after `kill()` returned passed a check that started
after the kill was acknowledged.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable

from guards.base import KillRecord, KillTarget

BUSY_TIMEOUT_S = 10.0

Check = Callable[[KillTarget], KillRecord | None]


def _sqlite(address: str, sequence: str) -> tuple[Check, Callable[[], int]]:
    from guards.sqlite_killswitch import SqliteKillSwitch

    switch = SqliteKillSwitch(address)
    counter = sqlite3.connect(sequence, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    counter.execute("PRAGMA synchronous=OFF")  # tickets need order, not durability

    def ticket() -> int:
        return int(counter.execute("UPDATE seq SET n = n + 1 RETURNING n").fetchall()[0][0])

    return switch.check, ticket


def _redis(address: str, sequence: str) -> tuple[Check, Callable[[], int]]:
    import redis

    from guards.redis_killswitch import RedisKillSwitch

    switch = RedisKillSwitch(address)
    counter = redis.Redis.from_url(address)
    return switch.check, lambda: int(counter.incr(sequence))


def main(argv: list[str]) -> None:
    backend, address, sequence, tenant, effects_path = argv
    check, ticket = {"sqlite": _sqlite, "redis": _redis}[backend](address, sequence)
    target = KillTarget(tenant=tenant, workflow="refunds", run_id=f"run-{os.getpid()}")
    with open(effects_path, "a", encoding="utf-8") as effects:
        while True:
            number = ticket()
            record = check(target)
            if record is not None:
                print(f"refused {number} {record.scope}", flush=True)
                return
            effects.write(f"{number}\n")
            effects.flush()
            print(f"effect {number}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
