"""One OS process that checks a shared kill switch before each effect, for test_kill_processes.

    kill_worker.py BACKEND ADDRESS SEQUENCE TENANT EFFECTS

BACKEND is `sqlite` (ADDRESS: the kill file; SEQUENCE: a file holding the shared ticket counter,
see `FileTicket`) or `redis` (ADDRESS: the Redis URL; SEQUENCE: the key to INCR).

It loops: take a ticket from the shared sequence, then check the switch for the target
(TENANT, `refunds`, `run-<pid>`); if allowed, append the ticket as one line to the EFFECTS file
(flushed: the side effect) and print `effect <ticket>`. On the first refused check it prints
`refused <ticket> <scope>` and exits 0. A ticket is taken *before* its check, so an effect whose
ticket is above a ticket the parent took after `kill()` returned passed a check that started
after the kill was acknowledged. SIGUSR1 dumps every thread's stack to stderr (the parent sends
it before giving up on a worker, so a failure says where the worker was stuck).
"""

from __future__ import annotations

import faulthandler
import fcntl
import os
import signal
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from guards.base import KillRecord, KillTarget

Check = Callable[[KillTarget], KillRecord | None]


class FileTicket:
    """A ticket counter shared by processes: an 8-byte integer in a file, taken under `flock`.

    Not a SQLite table: SQLite's busy handler polls with sleeps of up to 100 ms, so a worker
    could starve behind another one looping on the lock for longer than the test's deadline
    (seen once in CI). A blocked `flock` is woken by the kernel as soon as the lock is free.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __call__(self) -> int:
        """Take the next ticket (1, 2, 3, ...)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(self._fd, 8, 0)
            number = (struct.unpack("<q", raw)[0] if len(raw) == 8 else 0) + 1
            os.pwrite(self._fd, struct.pack("<q", number), 0)
            return number
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


def _sqlite(address: str, sequence: str) -> tuple[Check, Callable[[], int]]:
    from guards.sqlite_killswitch import SqliteKillSwitch

    return SqliteKillSwitch(address).check, FileTicket(Path(sequence))


def _redis(address: str, sequence: str) -> tuple[Check, Callable[[], int]]:
    import redis

    from guards.redis_killswitch import RedisKillSwitch

    switch = RedisKillSwitch(address)
    counter = redis.Redis.from_url(address)
    return switch.check, lambda: int(counter.incr(sequence))


def main(argv: list[str]) -> None:
    faulthandler.register(signal.SIGUSR1)
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
