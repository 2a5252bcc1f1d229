"""Conformance of every `CommitLog`: positions, ranges, tenants, projection, races, processes."""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from commitlog_worker import DEADLINE_S, append_many
from forks import run_together
from redis_calls import CountingConnection

from memory.base import CommitLog, LogEntry
from memory.commitlog import InMemoryCommitLog, MemoryBackendError, SqliteCommitLog
from memory.contract import MemoryContractError
from memory.redis_commitlog import RedisCommitLog

OpenLog = Callable[[], CommitLog]
BACKENDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenLog]:
    """Opens handles on one shared log: memory hands out the same object, SQLite a new log on
    the same file and Redis a new client (as separate processes would have)."""
    if request.param == "memory":
        shared = InMemoryCommitLog()
        yield lambda: shared
        return
    factory: Callable[[], CommitLog]
    if request.param == "sqlite":
        factory = functools.partial(SqliteCommitLog, tmp_path / "log.sqlite")
    else:
        factory = functools.partial(RedisCommitLog, request.getfixturevalue("redis_url"))
    opened: list[CommitLog] = []

    def open_backend() -> CommitLog:
        opened.append(factory())
        return opened[-1]

    yield open_backend
    for handle in opened:
        handle.close()


@pytest.fixture
def log(open_log: OpenLog) -> CommitLog:
    """One handle on a fresh log."""
    return open_log()


def fill(log: CommitLog, tenant: str, count: int, tag: str = "c") -> list[str]:
    """Append `count` commits `<tag>1…` at positions 1…count; their ids."""
    ids = [f"{tag}{n}" for n in range(1, count + 1)]
    for seq, commit_id in enumerate(ids, start=1):
        assert log.append(tenant, seq, commit_id), (tenant, seq)
    return ids


def test_every_log_is_a_commit_log(log: CommitLog) -> None:
    assert isinstance(log, CommitLog)


def test_an_empty_log_has_no_head_entries_tenants_or_projection(log: CommitLog) -> None:
    assert log.head("acme") is None
    assert log.entries("acme") == []
    assert log.locate("acme", "c1") is None
    assert log.projected("acme") == 0
    assert log.tenants() == []


def test_the_first_commit_goes_at_position_one(log: CommitLog) -> None:
    assert log.append("acme", 1, "c1")
    assert log.head("acme") == LogEntry(seq=1, commit_id="c1")
    assert log.entries("acme") == [LogEntry(seq=1, commit_id="c1")]
    assert log.tenants() == ["acme"]


def test_a_taken_position_is_refused_and_the_winner_stays(log: CommitLog) -> None:
    fill(log, "acme", 2)
    assert not log.append("acme", 2, "late")
    assert not log.append("acme", 1, "later")
    assert log.head("acme") == LogEntry(seq=2, commit_id="c2")
    assert [e.commit_id for e in log.entries("acme")] == ["c1", "c2"]
    assert log.locate("acme", "late") is None and log.locate("acme", "later") is None


def test_skipping_ahead_is_refused(log: CommitLog) -> None:
    assert not log.append("acme", 2, "ahead")
    assert log.head("acme") is None and log.tenants() == []
    fill(log, "acme", 1)
    assert not log.append("acme", 3, "ahead")
    assert log.head("acme") == LogEntry(seq=1, commit_id="c1")
    assert log.append("acme", 2, "ahead")


@pytest.mark.parametrize("seq", [0, -1])
def test_positions_start_at_one(log: CommitLog, seq: int) -> None:
    with pytest.raises(MemoryContractError, match=f"`seq={seq}`"):
        log.append("acme", seq, "c0")
    assert log.head("acme") is None and log.tenants() == []


def test_a_commit_id_is_accepted_once_per_tenant(log: CommitLog) -> None:
    fill(log, "acme", 1)
    assert not log.append("acme", 2, "c1")
    assert log.head("acme") == LogEntry(seq=1, commit_id="c1")
    assert log.locate("acme", "c1") == 1
    assert log.append("globex", 1, "c1")  # another tenant's log is another id space


@pytest.mark.parametrize(
    ("after", "upto", "expected"),
    [
        (0, None, [1, 2, 3, 4, 5]),
        (2, None, [3, 4, 5]),
        (0, 3, [1, 2, 3]),
        (1, 4, [2, 3, 4]),
        (2, 2, []),
        (3, 1, []),
        (0, 0, []),
        (5, None, []),
        (9, None, []),
        (0, 99, [1, 2, 3, 4, 5]),
        (-3, 1, [1]),
        (4, -1, []),
    ],
)
def test_entries_are_the_positions_after_after_upto_upto(
    log: CommitLog, after: int, upto: int | None, expected: list[int]
) -> None:
    fill(log, "acme", 5)
    got = log.entries("acme", after=after, upto=upto)
    assert got == [LogEntry(seq=seq, commit_id=f"c{seq}") for seq in expected]


def test_locate_finds_only_the_tenants_own_commits(log: CommitLog) -> None:
    fill(log, "acme", 3)
    fill(log, "globex", 2, tag="g")
    assert [log.locate("acme", f"c{n}") for n in (1, 2, 3)] == [1, 2, 3]
    assert log.locate("acme", "g1") is None  # globex's
    assert log.locate("globex", "c1") is None  # acme's
    assert log.locate("globex", "g2") == 2
    assert log.locate("acme", "unknown") is None


def test_tenants_have_their_own_positions(log: CommitLog) -> None:
    fill(log, "acme", 3)
    assert log.head("globex") is None
    assert not log.append("globex", 4, "g4")  # acme's head is not globex's
    assert log.append("globex", 1, "g1")
    assert log.head("acme") == LogEntry(seq=3, commit_id="c3")
    assert log.head("globex") == LogEntry(seq=1, commit_id="g1")
    assert [e.commit_id for e in log.entries("globex")] == ["g1"]
    assert log.append("acme", 4, "c4")
    assert sorted(log.tenants()) == ["acme", "globex"]


def test_projection_never_moves_backwards(log: CommitLog) -> None:
    fill(log, "acme", 5)
    log.mark_projected("acme", 3)
    assert log.projected("acme") == 3
    log.mark_projected("acme", 2)
    assert log.projected("acme") == 3
    log.mark_projected("acme", 5)
    assert log.projected("acme") == 5
    assert log.projected("globex") == 0  # per tenant
    log.mark_projected("globex", -2)
    assert log.projected("globex") == 0


def test_another_handle_sees_the_same_log(open_log: OpenLog) -> None:
    first, second = open_log(), open_log()
    fill(first, "acme", 2)
    first.mark_projected("acme", 1)
    assert second.head("acme") == LogEntry(seq=2, commit_id="c2")
    assert not second.append("acme", 2, "other")
    assert second.append("acme", 3, "c3")
    assert first.locate("acme", "c3") == 3 and first.projected("acme") == 1


def test_close_twice_is_harmless_and_a_new_handle_sees_the_log(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, "acme", 2)
    log.close()
    log.close()
    assert open_log().head("acme") == LogEntry(seq=2, commit_id="c2")


# ---------------------------------------------------------------------------------------------
# Races: of the writers appending at one position, exactly one wins.

THREADS = 16
ROUNDS = 50


def test_threads_racing_for_each_position_leave_one_winner_and_no_gap(open_log: OpenLog) -> None:
    """16 threads on two handles append at position n together, for n = 1…50."""
    handles = [open_log(), open_log()]
    start = threading.Barrier(THREADS)
    won: dict[int, list[str]] = {seq: [] for seq in range(1, ROUNDS + 1)}
    errors: list[BaseException] = []

    def race(index: int) -> None:
        log = handles[index % 2]
        try:
            for seq in range(1, ROUNDS + 1):
                start.wait(DEADLINE_S)  # every thread is at position seq: go together
                if log.append("acme", seq, f"r{seq}-t{index}"):
                    won[seq].append(f"r{seq}-t{index}")
        except BaseException as error:  # reported below, with the barrier broken for the rest
            errors.append(error)
            start.abort()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert not any(thread.is_alive() for thread in threads), "a racer hung"
    assert not errors, errors
    assert {seq: len(ids) for seq, ids in won.items() if len(ids) != 1} == {}
    expected = [LogEntry(seq=seq, commit_id=won[seq][0]) for seq in range(1, ROUNDS + 1)]
    assert handles[0].entries("acme") == expected
    assert handles[1].head("acme") == expected[-1]


PROCESSES = 4
PER_PROCESS = 50


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_processes_appending_with_retries_leave_every_commit_once_without_gaps(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """4 processes append 50 commits each at the head, retrying each lost race."""
    if backend == "sqlite":
        address = str(tmp_path / "log.sqlite")
        SqliteCommitLog(address).close()  # created once, as a deployment would
    else:
        address = request.getfixturevalue("redis_url")
    args = (backend, address, "acme", PER_PROCESS)
    reports = run_together(append_many, args, PROCESSES, DEADLINE_S)
    assert [report[2] for report in reports if report[2] < 0] == [], reports
    log = SqliteCommitLog(address) if backend == "sqlite" else RedisCommitLog(address)
    entries = log.entries("acme")
    located = {entry.seq: log.locate("acme", entry.commit_id) for entry in entries}
    log.close()
    total = PROCESSES * PER_PROCESS
    assert [entry.seq for entry in entries] == list(range(1, total + 1))
    ids = [entry.commit_id for entry in entries]
    assert len(set(ids)) == total
    assert {seq: at for seq, at in located.items() if at != seq} == {}
    assert set(ids) == {commit_id for report in reports for commit_id in report[1]}
    for _, mine, _ in reports:  # each process's commits are in its own order
        assert [i for i in ids if i in set(mine)] == mine


# ---------------------------------------------------------------------------------------------
# Backend specifics: errors that say what to do, round trips, clients.


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_redis_raises_naming_the_url_without_its_password() -> None:
    port = _unused_port()
    log = RedisCommitLog(f"redis://:s3cret@127.0.0.1:{port}/0", timeout_s=0.5)
    calls: dict[str, Callable[[], object]] = {
        "head": lambda: log.head("acme"),
        "append": lambda: log.append("acme", 1, "c1"),
        "entries": lambda: log.entries("acme"),
        "locate": lambda: log.locate("acme", "c1"),
        "projected": lambda: log.projected("acme"),
        "mark_projected": lambda: log.mark_projected("acme", 1),
        "tenants": log.tenants,
    }
    for name, call in calls.items():
        with pytest.raises(MemoryBackendError) as caught:
            call()
        message = str(caught.value)
        assert f"redis://:***@127.0.0.1:{port}/0" in message, name
        assert "s3cret" not in message, name
        assert "is Redis running there? check BASTION_REDIS_URL" in message, name
        assert "could not " in message and ("`acme`" in message) == (name != "tenants"), name
    log.close()


def test_an_unusable_sqlite_file_raises_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 200)
    with pytest.raises(MemoryBackendError) as caught:
        SqliteCommitLog(path)
    assert f"`{path}`" in str(caught.value) and "not a SQLite file" in str(caught.value)
    with pytest.raises(MemoryBackendError, match="writable"):
        SqliteCommitLog(path / "log.sqlite")  # under a file: no folder can be made
    assert path.read_text() == "not a database\n" * 200


@pytest.mark.redis
def test_each_redis_call_is_one_round_trip(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, connection_class=CountingConnection)
    log = RedisCommitLog(client)
    fill(log, "warm-up", 1)  # connects, loads the script
    log.mark_projected("warm-up", 1)
    CountingConnection.sent.clear()
    assert log.head("acme") is None
    assert log.append("acme", 1, "c1")
    assert log.head("acme") == LogEntry(seq=1, commit_id="c1")
    log.mark_projected("acme", 1)
    assert len(CountingConnection.sent) == 4
    client.close()


@pytest.mark.redis
def test_a_given_redis_client_is_left_open_and_may_decode(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    connection_id = client.client_id()
    log = RedisCommitLog(client, prefix="mem")
    fill(log, "acme", 2)
    assert log.head("acme") == LogEntry(seq=2, commit_id="c2")
    assert log.entries("acme", after=1) == [LogEntry(seq=2, commit_id="c2")]
    assert log.locate("acme", "c1") == 1 and log.tenants() == ["acme"]
    assert sorted(client.keys("mem:*")) == ["mem:ids:acme", "mem:log:acme", "mem:tenants"]
    log.close()
    assert client.client_id() == connection_id  # same connection: the log did not close it
    client.close()


@pytest.mark.redis
def test_redis_prefixes_isolate_logs(redis_url: str) -> None:
    a = RedisCommitLog(redis_url, prefix="a")
    b = RedisCommitLog(redis_url, prefix="b")
    fill(a, "acme", 2)
    a.mark_projected("acme", 2)
    assert b.head("acme") is None and b.tenants() == [] and b.projected("acme") == 0
    assert b.append("acme", 1, "c1")
    a.close()
    b.close()


def test_a_forked_child_uses_its_own_sqlite_connection(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = SqliteCommitLog(path)
    fill(log, "acme", 1)
    pid = os.fork()
    if pid == 0:  # the child: append through the inherited log, close it, leave at once
        code = 1
        try:
            code = 0 if log.append("acme", 2, "child") else 2
            log.close()
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    assert log.head("acme") == LogEntry(seq=2, commit_id="child")  # the parent's still works
    assert log.append("acme", 3, "c3")
    other = SqliteCommitLog(path)  # the child's close did not take the parent's WAL away
    assert other.head("acme") == LogEntry(seq=3, commit_id="c3")
    other.close()
    log.close()
