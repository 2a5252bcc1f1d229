"""Conformance of every `AuditLog`: sealing, order, head, filters, paging, keys, races, reopen."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
import redis
from forks import run_together

from observability import (
    GENESIS,
    AuditConfigError,
    AuditEntry,
    AuditLog,
    AuditRecord,
    InMemoryAuditLog,
    TraceBackendError,
    seal,
    verify_chain,
)
from observability.redis_audit import RedisAuditLog
from observability.sqlite_audit import SqliteAuditLog

OpenLog = Callable[..., AuditLog]
"""Opens a handle on the test's one log; `key=` chooses the HMAC key of that handle."""
DEADLINE_S = 60.0
"""Longest a test waits for a thread or a worker; a slow machine fails loudly, never hangs."""


def entry(n: int, **fields: Any) -> AuditEntry:
    """A valid entry numbered `n` (subject `d<n>`), with `fields` overriding the defaults."""
    base = AuditEntry(
        kind="decision",
        ts=1_700_000_000.0 + n,
        tenant="acme",
        actor="guard",
        run_id="r1",
        subject=f"d{n}",
        detail={"verdict": "allow", "reasons": [f"reason {n}"], "n": n},
    )
    return AuditEntry(**{**base, **fields})  # type: ignore[typeddict-item]


def open_backend(backend: str, address: str, key: bytes | None = None) -> AuditLog:
    """A new handle on a shared log: `sqlite` (a file) or `redis` (a URL)."""
    if backend == "sqlite":
        return SqliteAuditLog(address, key=key)
    return RedisAuditLog(address, key=key)


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenLog]:
    """Opens handles on one log: memory hands out the same object (per key), SQLite a new log
    on the same file and Redis a new client (as separate processes would have)."""
    if request.param == "memory":
        shared: dict[bytes | None, InMemoryAuditLog] = {}
        yield lambda key=None: shared.setdefault(key, InMemoryAuditLog(key=key))
        return
    address = (
        str(tmp_path / "audit.sqlite")
        if request.param == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    opened: list[AuditLog] = []

    def open_handle(key: bytes | None = None) -> AuditLog:
        opened.append(open_backend(request.param, address, key))
        return opened[-1]

    yield open_handle
    for handle in opened:
        handle.close()


@pytest.fixture
def log(open_log: OpenLog) -> AuditLog:
    """One handle on a fresh log without a key."""
    return open_log()


def all_records(log: AuditLog) -> list[AuditRecord]:
    return log.records(limit=1_000_000)


def test_every_backend_is_an_audit_log(log: AuditLog) -> None:
    assert isinstance(log, AuditLog)


def test_an_empty_log_has_no_head_no_records_and_verifies(log: AuditLog) -> None:
    assert log.head() is None
    assert log.records() == []
    report = log.verify()
    assert report.ok and report.records == 0 and report.head is None


def test_append_seals_records_from_one_linked_to_each_other(log: AuditLog) -> None:
    sealed = log.append([entry(1), entry(2), entry(3)])
    assert [r["seq"] for r in sealed] == [1, 2, 3]
    assert sealed[0]["prev"] == GENESIS
    assert [r["prev"] for r in sealed[1:]] == [r["hash"] for r in sealed[:-1]]
    assert sealed[1] == seal(entry(2), seq=2, prev=sealed[0]["hash"])  # exactly the chain's seal
    assert all_records(log) == sealed
    assert log.head() == {"seq": 3, "hash": sealed[2]["hash"]}


def test_batches_continue_the_chain_without_gaps(log: AuditLog) -> None:
    returned = [log.append([entry(n) for n in batch]) for batch in ([1, 2], [3], [4, 5, 6])]
    records = all_records(log)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["subject"] for r in records] == [f"d{n}" for n in range(1, 7)]
    assert records == [r for batch in returned for r in batch]
    assert returned[1][0]["prev"] == returned[0][-1]["hash"]
    assert log.head() == {"seq": 6, "hash": records[-1]["hash"]}
    report = log.verify()
    assert report.ok and report.records == 6 and report.head == log.head()


def test_records_keep_every_field_and_type(log: AuditLog) -> None:
    odd = entry(
        1,
        ts=1_700_000_000,  # an int stays an int: the hash covers its exact JSON
        tenant="ténant ✓",
        subject="'quoted' \"subject\"",
        detail={"nested": {"list": [1, 2.5, None, True, "x"]}, "empty": {}, "n": -1},
    )
    (sealed,) = log.append([odd])
    assert all_records(log) == [sealed]
    assert sealed == {**odd, "seq": 1, "prev": GENESIS, "hash": sealed["hash"]}
    assert log.verify().ok


def test_an_empty_append_writes_nothing(log: AuditLog) -> None:
    assert log.append([]) == []
    assert log.head() is None
    log.append([entry(1)])
    head = log.head()
    assert log.append([]) == []
    assert log.head() == head and len(all_records(log)) == 1


BAD_ENTRIES = {
    "missing field": {k: v for k, v in entry(9).items() if k != "actor"},
    "unknown kind": entry(9, kind="rumour"),
    "detail not JSON": entry(9, detail={"when": object()}),
    "NaN in detail": entry(9, detail={"score": float("nan")}),
}


@pytest.mark.parametrize("bad", BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_a_malformed_entry_is_refused_and_nothing_of_its_batch_written(
    log: AuditLog, bad: Any
) -> None:
    log.append([entry(1)])
    head = log.head()
    with pytest.raises(AuditConfigError, match="audit entry"):
        log.append([entry(2), bad, entry(3)])
    assert log.head() == head
    assert [r["subject"] for r in all_records(log)] == ["d1"]
    assert log.append([entry(2)])[0]["seq"] == 2  # the log still works
    assert log.verify().ok


@pytest.fixture
def mixed(log: AuditLog) -> AuditLog:
    """Eight records of two tenants, two runs, global (`*`) records and several kinds."""
    log.append(
        [
            entry(1, tenant="acme", run_id="r1"),
            entry(2, tenant="globex", run_id="r2", kind="effect"),
            entry(3, tenant="*", run_id="", kind="kill", actor="cli:ops"),
            entry(4, tenant="acme", run_id="r1", kind="approval", actor="human:alice"),
            entry(5, tenant="globex", run_id="r2"),
            entry(6, tenant="acme", run_id="r3", kind="effect"),
            entry(7, tenant="*", run_id="", kind="gap", actor="system:tracer"),
            entry(8, tenant="acme", run_id="r1", kind="effect"),
        ]
    )
    return log


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [1, 2, 3, 4, 5, 6, 7, 8]),
        ({"tenant": "acme"}, [1, 3, 4, 6, 7, 8]),  # `*` records concern every tenant
        ({"tenant": "globex"}, [2, 3, 5, 7]),
        ({"tenant": "initech"}, [3, 7]),
        ({"kind": "effect"}, [2, 6, 8]),
        ({"run_id": "r1"}, [1, 4, 8]),
        ({"run_id": ""}, [3, 7]),
        ({"tenant": "acme", "kind": "effect"}, [6, 8]),
        ({"tenant": "globex", "run_id": "r1"}, []),
        ({"tenant": "acme", "kind": "gap", "run_id": ""}, [7]),
        ({"kind": "undo"}, []),
    ],
)
def test_filters_choose_records_in_order(
    mixed: AuditLog, filters: dict[str, str], expected: list[int]
) -> None:
    assert [r["seq"] for r in mixed.records(**filters)] == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("after", "limit", "filters", "expected"),
    [
        (0, 3, {}, [1, 2, 3]),
        (3, 3, {}, [4, 5, 6]),
        (6, 3, {}, [7, 8]),
        (8, 3, {}, []),
        (-5, 2, {}, [1, 2]),
        (0, 0, {}, []),
        (0, -1, {}, []),
        (2, 2, {"tenant": "acme"}, [3, 4]),  # the limit counts matching records
        (4, 2, {"kind": "effect"}, [6, 8]),
    ],
)
def test_after_and_limit_page_through_the_records(
    mixed: AuditLog, after: int, limit: int, filters: dict[str, str], expected: list[int]
) -> None:
    got = mixed.records(after=after, limit=limit, **filters)  # type: ignore[arg-type]
    assert [r["seq"] for r in got] == expected


def test_paging_with_after_reads_every_record_once(mixed: AuditLog) -> None:
    seen, after = [], 0
    while page := mixed.records(after=after, limit=3, tenant="acme"):
        seen += [r["seq"] for r in page]
        after = page[-1]["seq"]
    assert seen == [1, 3, 4, 6, 7, 8]


def test_a_keyed_chain_verifies_only_with_its_key(open_log: OpenLog) -> None:
    keyed = open_log(key=b"key A")
    sealed = keyed.append([entry(1), entry(2)])
    assert keyed.verify().ok
    assert sealed[0]["hash"] != seal(entry(1), seq=1, prev=GENESIS)["hash"]  # an HMAC, not SHA
    records, head = all_records(keyed), keyed.head()
    wrong = verify_chain(records, head=head, key=b"key B")
    assert [(p.kind, p.seq) for p in wrong.problems] == [("altered", 1), ("altered", 2)]
    unkeyed = verify_chain(records, head=head, key=None)
    assert not unkeyed.ok and unkeyed.problems[0].seq == 1


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_handle_with_another_key_finds_the_log_broken(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    address = (
        str(tmp_path / "audit.sqlite")
        if backend == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    first = open_backend(backend, address, key=b"key A")
    first.append([entry(1), entry(2)])
    other = open_backend(backend, address, key=b"key B")
    assert [(p.kind, p.seq) for p in other.verify().problems] == [("altered", 1), ("altered", 2)]
    other.append([entry(3)])  # sealed with B after records sealed with A
    assert [(p.kind, p.seq) for p in first.verify().problems] == [("altered", 3)]
    first.close()
    other.close()


@pytest.mark.parametrize("key", [b"", "text", 42])
def test_a_malformed_key_is_refused(tmp_path: Path, key: Any) -> None:
    with pytest.raises(AuditConfigError, match="audit key must be non-empty bytes"):
        SqliteAuditLog(tmp_path / "audit.sqlite", key=key)
    with pytest.raises(AuditConfigError, match="audit key must be non-empty bytes"):
        RedisAuditLog("redis://127.0.0.1:1/0", key=key)


def test_another_handle_and_a_reopened_one_continue_the_chain(open_log: OpenLog) -> None:
    first = open_log()
    first.append([entry(1), entry(2)])
    second = open_log()
    assert second.head() == first.head()
    second.append([entry(3)])
    first.close()
    first.close()  # twice is harmless
    reopened = open_log()
    reopened.append([entry(4)])
    records = all_records(reopened)
    assert [r["subject"] for r in records] == ["d1", "d2", "d3", "d4"]
    assert all_records(second) == records
    assert reopened.verify().ok and reopened.head() == {"seq": 4, "hash": records[-1]["hash"]}


# ---------------------------------------------------------------------------------------------
# Races: appenders in threads and processes form one chain holding every entry exactly once.

THREADS = 8
BATCHES = 25


def check_one_chain(log: AuditLog, batches: dict[str, list[list[str]]]) -> None:
    """The log is one valid chain holding every batch once, each batch's subjects adjacent
    and in order, and each writer's batches in the order it appended them."""
    records = all_records(log)
    subjects = [r["subject"] for r in records]
    expected = [s for mine in batches.values() for batch in mine for s in batch]
    assert [r["seq"] for r in records] == list(range(1, len(expected) + 1))
    assert sorted(subjects) == sorted(expected) and len(set(subjects)) == len(subjects)
    at = {subject: index for index, subject in enumerate(subjects)}
    for mine in batches.values():
        starts = [at[batch[0]] for batch in mine]
        assert starts == sorted(starts)
        for batch in mine:
            assert subjects[at[batch[0]] : at[batch[0]] + len(batch)] == batch
    report = log.verify()
    assert report.ok, report.problems
    assert report.records == len(expected) and log.head() == {
        "seq": len(expected),
        "hash": records[-1]["hash"],
    }


def test_threads_appending_at_once_form_one_chain(open_log: OpenLog) -> None:
    """8 threads on two handles append 25 batches of 1-3 entries each, all at once."""
    handles = [open_log(), open_log()]
    start = threading.Barrier(THREADS)
    batches: dict[str, list[list[str]]] = {f"t{i}": [] for i in range(THREADS)}
    errors: list[BaseException] = []

    def append_many(index: int) -> None:
        name, log = f"t{index}", handles[index % 2]
        try:
            start.wait(DEADLINE_S)
            for b in range(BATCHES):
                batch = [f"{name}-{b}-{k}" for k in range(1 + (index + b) % 3)]
                log.append([entry(0, subject=s, tenant=name) for s in batch])
                batches[name].append(batch)
        except BaseException as error:  # reported below
            errors.append(error)
            start.abort()

    threads = [threading.Thread(target=append_many, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert not any(thread.is_alive() for thread in threads), "an appender hung"
    assert not errors, errors
    check_one_chain(handles[1], batches)


PROCESSES = 3
PROCESS_BATCHES = 40


def append_from_process(
    backend: str, address: str, count: int, start: Barrier, results: Queue
) -> None:
    """A worker process: append `count` batches of two entries; report (name, batches) or
    (name, error text)."""
    name = f"p{os.getpid()}"
    try:
        log = open_backend(backend, address)
        start.wait(DEADLINE_S)
        batches = []
        for b in range(count):
            batch = [f"{name}-{b}-0", f"{name}-{b}-1"]
            log.append([entry(0, subject=s, tenant=name) for s in batch])
            batches.append(batch)
        log.close()
        results.put((name, batches))
    except Exception as error:  # reported to the test, which names it
        results.put((name, f"{type(error).__name__}: {error}"))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_processes_appending_at_once_form_one_chain(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """3 processes (from the session's forkserver) append 40 batches of two entries each."""
    if backend == "sqlite":
        address = str(tmp_path / "audit.sqlite")
        SqliteAuditLog(address).close()  # created once, as a deployment would
    else:
        address = request.getfixturevalue("redis_url")
    args = (backend, address, PROCESS_BATCHES)
    reports = run_together(append_from_process, args, PROCESSES, DEADLINE_S)
    assert [r for r in reports if isinstance(r[1], str)] == []
    log = open_backend(backend, address)
    try:
        check_one_chain(log, dict(reports))
    finally:
        log.close()


# ---------------------------------------------------------------------------------------------
# Backend specifics: errors that say what to do, clients, forks.


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_redis_raises_naming_the_url_without_its_password() -> None:
    port = _unused_port()
    log = RedisAuditLog(f"redis://:s3cret@127.0.0.1:{port}/0", timeout_s=0.5)
    calls: dict[str, Callable[[], object]] = {
        "append": lambda: log.append([entry(1)]),
        "records": log.records,
        "head": log.head,
        "verify": log.verify,
    }
    for name, call in calls.items():
        with pytest.raises(TraceBackendError) as caught:
            call()
        message = str(caught.value)
        assert f"redis://:***@127.0.0.1:{port}/0" in message, name
        assert "s3cret" not in message and "s3cret" not in caught.value.url, name
        assert "is Redis running there? check BASTION_REDIS_URL" in message, name
        assert ("Nothing was appended" in message) == (name == "append"), name
    log.close()


def test_an_unusable_sqlite_file_raises_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 200)
    with pytest.raises(TraceBackendError) as caught:
        SqliteAuditLog(path)
    assert str(path) in str(caught.value) and "not a SQLite file" in str(caught.value)
    assert caught.value.url == str(path)
    with pytest.raises(TraceBackendError, match="writable"):
        SqliteAuditLog(path / "audit.sqlite")  # under a file: no folder can be made
    with pytest.raises(TraceBackendError, match="it is a folder"):
        SqliteAuditLog(tmp_path)
    with pytest.raises(AuditConfigError, match="InMemoryAuditLog"):
        SqliteAuditLog(":memory:")
    assert path.read_text() == "not a database\n" * 200


def test_a_sqlite_append_that_cannot_get_the_write_lock_writes_nothing(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "audit.sqlite"
    log = SqliteAuditLog(path, busy_timeout_s=0.05)
    log.append([entry(1)])
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(TraceBackendError, match=r"Nothing was appended.*write lock"):
            log.append([entry(2)])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert [r["subject"] for r in all_records(log)] == ["d1"]
    log.close()


@pytest.mark.redis
def test_a_given_redis_client_is_left_open_and_may_decode(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    connection_id = client.client_id()
    log = RedisAuditLog(client, prefix="acme:audit")
    log.append([entry(1), entry(2)])
    assert [r["seq"] for r in log.records(after=1)] == [2]
    assert log.verify().ok
    assert sorted(client.keys("acme:audit:*")) == ["acme:audit:head", "acme:audit:log"]
    assert client.xrange("acme:audit:log")[0][0] == "1-1"  # type: ignore[index]  # `<seq>-1`
    assert RedisAuditLog(client).head() is None  # another prefix is another log
    log.close()
    assert client.client_id() == connection_id
    client.close()


def test_a_forked_child_uses_its_own_sqlite_connection(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    log = SqliteAuditLog(path)
    log.append([entry(1)])
    pid = os.fork()
    if pid == 0:  # the child: append through the inherited log, close it, leave at once
        code = 1
        try:
            log.append([entry(2)])
            log.close()
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    log.append([entry(3)])  # the parent's connection still works
    other = SqliteAuditLog(path)
    assert [r["subject"] for r in all_records(other)] == ["d1", "d2", "d3"]
    assert other.verify().ok
    other.close()
    log.close()
