"""Kill switches across OS processes: a kill from one process stops the dispatch loop of another."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from kill_worker import FileTicket

from guards.base import KillScope, KillSwitch
from guards.redis_killswitch import RedisKillSwitch
from guards.sqlite_killswitch import SqliteKillSwitch

WORKER = Path(__file__).with_name("kill_worker.py")
REPO_ROOT = Path(__file__).resolve().parent.parent
WARM_EFFECTS = 3
"""Effects each worker makes before the kill, so the kill lands while it is dispatching."""
DEADLINE_S = 8.0
WHO = {"requester": "ops:alice", "reason": "runaway refunds"}


@dataclass(frozen=True, kw_only=True)
class Backend:
    """One kill switch backend as the parent and the workers share it."""

    name: str
    """`sqlite` or `redis`, the worker's first argument."""
    address: str
    """The kill file or the Redis URL."""
    sequence: str
    """The shared ticket counter: a `FileTicket` file, or a Redis key."""
    switch: KillSwitch
    """The parent's (the console's) handle."""
    ticket: Callable[[], int]
    """Takes the next ticket from the shared counter."""


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A kill switch and a ticket counter that several processes can reach."""
    if request.param == "sqlite":
        ticket = FileTicket(tmp_path / "seq.bin")
        with SqliteKillSwitch(tmp_path / "kill.sqlite") as switch:
            yield Backend(
                name="sqlite",
                address=str(switch.path),
                sequence=str(tmp_path / "seq.bin"),
                switch=switch,
                ticket=ticket,
            )
        ticket.close()
        return
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    with RedisKillSwitch(url) as redis_switch:
        yield Backend(
            name="redis",
            address=url,
            sequence="kill-test:seq",
            switch=redis_switch,
            ticket=lambda: int(client.incr("kill-test:seq")),
        )
    client.close()


class Worker:
    """A `kill_worker.py` process; its stdout is read on a thread, so the pipe never fills."""

    def __init__(self, backend: Backend, tenant: str, tmp_path: Path) -> None:
        self.effects_path = tmp_path / f"effects-{tenant}.txt"
        self._stderr_path = tmp_path / f"worker-{tenant}.stderr"
        argv = [sys.executable, str(WORKER), backend.name, backend.address, backend.sequence]
        argv += [tenant, str(self.effects_path)]
        with self._stderr_path.open("w") as stderr:
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def wait_for_effect_above(self, floor: int) -> int:
        """Block until the worker reports an effect whose ticket is above `floor`; return it."""
        while True:
            kind, number, *_ = self._next_line().split()
            if kind == "effect" and int(number) > floor:
                return int(number)

    def finish(self) -> str:
        """Wait for the worker to exit on its own (code 0); return its last line."""
        try:
            code = self.proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker still dispatching {DEADLINE_S}s after the kill: {self._stacks()}")
        assert code == 0, self._log()
        self._reader.join(DEADLINE_S)
        last = ""
        while (line := self._lines.get_nowait()) is not None:
            last = line
        return last

    def effects(self) -> list[int]:
        """Tickets of every side effect the worker made, in order."""
        return [int(line) for line in self.effects_path.read_text().split()]

    def stop(self) -> None:
        """Kill the worker if it still runs (after a failed test)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE_S)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def _next_line(self) -> str:
        try:
            line = self._lines.get(timeout=DEADLINE_S)
        except queue.Empty:
            pytest.fail(f"worker printed nothing for {DEADLINE_S}s: {self._log()}")
        if line is None:
            pytest.fail(f"worker exited early with code {self.proc.wait()}: {self._log()}")
        return line

    def _stacks(self) -> str:
        """Ask the stuck worker for its stacks (see kill_worker.py), then return its stderr."""
        self.proc.send_signal(signal.SIGUSR1)
        with contextlib.suppress(subprocess.TimeoutExpired):  # it runs on; this gives it time
            self.proc.wait(timeout=1.0)
        return self._log()

    def _log(self) -> str:
        return f"stderr of {self.proc.args!r}:\n{self._stderr_path.read_text()[-3000:]}"


def _late(effects: list[int], ack: int) -> list[int]:
    """Effects whose check started after the acknowledgement ticket was taken."""
    return [ticket for ticket in effects if ticket > ack]


def test_a_kill_in_one_process_stops_the_dispatch_loop_of_another(
    backend: Backend, tmp_path: Path
) -> None:
    acme, globex = Worker(backend, "acme", tmp_path), Worker(backend, "globex", tmp_path)
    try:
        for worker in (acme, globex):
            for _ in range(WARM_EFFECTS):
                worker.wait_for_effect_above(0)
        backend.switch.kill(KillScope(kind="tenant", value="acme"), **WHO)
        ack = backend.ticket()  # taken right after kill() returned: the acknowledgement
        assert acme.finish().endswith(" tenant:acme")
        globex.wait_for_effect_above(ack)  # another tenant's process keeps dispatching
        backend.switch.kill(KillScope(kind="global"), **WHO)
        global_ack = backend.ticket()
        assert globex.finish().endswith(" global")
    finally:
        acme.stop()
        globex.stop()
    assert len(acme.effects()) >= WARM_EFFECTS
    assert _late(acme.effects(), ack) == []
    assert _late(globex.effects(), ack) != []
    assert _late(globex.effects(), global_ack) == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_harness_catches_an_acknowledgement_taken_before_the_kill(
    backend: Backend, tmp_path: Path
) -> None:
    worker = Worker(backend, "acme", tmp_path)
    try:
        early = backend.ticket()  # wrong order on purpose: "acknowledged" before kill()
        worker.wait_for_effect_above(early)
        backend.switch.kill(KillScope(kind="global"), **WHO)
        assert worker.finish().endswith(" global")
    finally:
        worker.stop()
    assert _late(worker.effects(), early) != []
