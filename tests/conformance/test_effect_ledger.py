"""Conformance of every `EffectLedger`: claims, leases, takeovers, outcomes, shadow, undo."""

from __future__ import annotations

import functools
import itertools
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from redis_calls import CountingConnection

from tools.base import Claim, Compensation, EffectIntent, EffectLedger, EffectLedgerError
from tools.base import EffectOutcome as Outcome
from tools.ledger import InMemoryEffectLedger, new_owner, owner_is_dead
from tools.redis_ledger import RedisEffectLedger
from tools.spec import ToolConfigError
from tools.sqlite_ledger import SqliteEffectLedger

T0 = 1_700_000_000.0
LEASE = 30.0
OK = Outcome(ok=True, content="refunded $10", output={"refund_id": "R-1", "amount": 10})
WORKER = Path(__file__).resolve().parent.parent / "ledger_worker.py"
REPO_ROOT = WORKER.parent.parent

OpenLedger = Callable[[], EffectLedger]


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def open_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenLedger]:
    """Opens handles on one shared ledger: memory hands out the same object, SQLite a new
    ledger on the same file and Redis a new client (as separate processes would have)."""
    if request.param == "memory":
        shared = InMemoryEffectLedger()
        yield lambda: shared
        return
    factory: Callable[[], SqliteEffectLedger | RedisEffectLedger]
    if request.param == "sqlite":
        factory = functools.partial(SqliteEffectLedger, tmp_path / "effects.sqlite")
    else:
        factory = functools.partial(RedisEffectLedger, request.getfixturevalue("redis_url"))
    opened: list[SqliteEffectLedger | RedisEffectLedger] = []

    def open_backend() -> EffectLedger:
        opened.append(factory())
        return opened[-1]

    yield open_backend
    for handle in opened:
        handle.close()


@pytest.fixture
def ledger(open_ledger: OpenLedger) -> EffectLedger:
    """One handle on a fresh ledger."""
    return open_ledger()


@pytest.fixture(scope="module")
def dead_owner() -> str:
    """The owner id of a process of this host that has exited (its pid is free or reused)."""
    child = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE)
    stat = Path(f"/proc/{child.pid}/stat").read_text()
    start = stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in ticks since boot
    child.communicate(b"\n")
    owner = f"{socket.gethostname()}|{child.pid}|{start}|0123456789ab"
    assert owner_is_dead(owner)
    return owner


def intent(
    key: str = "refund:ORD-1",
    *,
    run_id: str = "run-1",
    thread_id: str = "thread-1",
    tenant: str = "acme",
    args: dict[str, object] | None = None,
) -> EffectIntent:
    return EffectIntent(
        key=key,
        tool="refund",
        tenant=tenant,
        thread_id=thread_id,
        run_id=run_id,
        agent="billing",
        args={"order": "ORD-1", "amount": 10} if args is None else args,
        side_effect="reversible",
    )


def claim(ledger: EffectLedger, it: EffectIntent, owner: str, now: float = T0) -> Claim:
    return ledger.claim(it, owner=owner, lease_s=LEASE, now=now)


def test_implements_the_protocol_and_starts_empty(ledger: EffectLedger) -> None:
    assert isinstance(ledger, EffectLedger)
    assert ledger.get("refund:ORD-1") is None
    assert ledger.effects() == []


def test_the_first_claim_acquires_a_pending_record(ledger: EffectLedger) -> None:
    it, owner = intent(), new_owner()
    first = claim(ledger, it, owner)
    assert first.kind == "acquired" and not first.recovered
    record = first.record
    assert (record.intent, record.status, record.owner, record.attempts) == (
        it,
        "pending",
        owner,
        1,
    )
    assert (record.lease_until, record.started_at, record.finished_at) == (T0 + LEASE, T0, None)
    assert record.outcome is None and record.compensation is None and record.seq >= 1
    assert ledger.get(it.key) == record


def test_finish_records_the_outcome_and_every_later_claim_replays_it(
    open_ledger: OpenLedger,
) -> None:
    ledger, it, owner = open_ledger(), intent(), new_owner()
    pending = claim(ledger, it, owner).record
    assert ledger.finish(it.key, owner=owner, outcome=OK, now=T0 + 1)
    done = replace(pending, status="done", outcome=OK, finished_at=T0 + 1)
    assert ledger.get(it.key) == done
    for now in (T0 + 2, T0 + 10 * LEASE):  # a done record never expires
        replay = claim(open_ledger(), it, new_owner(), now)
        assert (replay.kind, replay.record, replay.recovered) == ("done", done, False)
    other = Outcome(ok=False, content="again", error_kind="tool_error")
    assert not ledger.finish(it.key, owner=owner, outcome=other, now=T0 + 3)
    assert ledger.get(it.key) == done


def test_a_live_owners_claim_is_busy_while_its_lease_runs(open_ledger: OpenLedger) -> None:
    it, owner = intent(), new_owner()  # an owner of this very process: provably alive
    first = claim(open_ledger(), it, owner).record
    busy = claim(open_ledger(), it, new_owner(), T0 + LEASE - 0.001)
    assert (busy.kind, busy.record, busy.recovered) == ("busy", first, False)
    assert open_ledger().get(it.key) == first


def test_an_expired_lease_is_taken_over_and_the_old_owner_loses_it(
    ledger: EffectLedger,
) -> None:
    it, old, new = intent(), new_owner(), new_owner()
    first = claim(ledger, it, old).record
    taken = claim(ledger, it, new, T0 + LEASE)  # the lease runs until T0 + LEASE, exclusive
    assert taken.kind == "acquired" and taken.recovered
    expected = replace(first, owner=new, lease_until=T0 + 2 * LEASE, attempts=2)
    assert taken.record == expected and ledger.get(it.key) == expected
    assert not ledger.finish(it.key, owner=old, outcome=OK, now=T0 + LEASE + 1)
    assert not ledger.mark_in_doubt(it.key, owner=old, detail="late", now=T0 + LEASE + 1)
    assert not ledger.release(it.key, owner=old)
    assert ledger.get(it.key) == expected
    assert ledger.finish(it.key, owner=new, outcome=OK, now=T0 + LEASE + 2)
    assert ledger.get(it.key) == replace(
        expected, status="done", outcome=OK, finished_at=T0 + LEASE + 2
    )


def test_a_dead_owners_claim_is_taken_over_before_its_lease_ends(
    ledger: EffectLedger, dead_owner: str
) -> None:
    it, live = intent(), new_owner()
    first = claim(ledger, it, dead_owner).record
    taken = claim(ledger, it, live, T0 + 1)
    assert taken.kind == "acquired" and taken.recovered
    assert taken.record == replace(first, owner=live, lease_until=T0 + 1 + LEASE, attempts=2)
    assert not ledger.finish(it.key, owner=dead_owner, outcome=OK, now=T0 + 2)
    assert ledger.get(it.key) == taken.record


def test_an_owner_on_another_host_is_trusted_until_its_lease_ends(ledger: EffectLedger) -> None:
    # Its pid means nothing here, even one that does not exist on this host.
    it, remote = intent(), f"elsewhere.invalid|{2**22 + 1}|12345|0123456789ab"
    first = claim(ledger, it, remote).record
    assert claim(ledger, it, new_owner(), T0 + 1).kind == "busy"
    assert claim(ledger, it, new_owner(), T0 + LEASE).record.attempts == first.attempts + 1


def test_only_the_owner_may_finish_release_or_mark_in_doubt(ledger: EffectLedger) -> None:
    it, owner, stranger = intent(), new_owner(), new_owner()
    first = claim(ledger, it, owner).record
    assert not ledger.finish(it.key, owner=stranger, outcome=OK, now=T0 + 1)
    assert not ledger.mark_in_doubt(it.key, owner=stranger, detail="?", now=T0 + 1)
    assert not ledger.release(it.key, owner=stranger)
    assert ledger.get(it.key) == first
    assert not ledger.finish("never-claimed", owner=owner, outcome=OK, now=T0 + 1)
    assert not ledger.mark_in_doubt("never-claimed", owner=owner, detail="?", now=T0 + 1)
    assert not ledger.release("never-claimed", owner=owner)
    assert ledger.get("never-claimed") is None
    assert ledger.effects() == [first]


def test_in_doubt_is_sticky(ledger: EffectLedger) -> None:
    it, owner = intent(), new_owner()
    first = claim(ledger, it, owner).record
    detail = "timed out after the bank accepted the transfer"
    assert ledger.mark_in_doubt(it.key, owner=owner, detail=detail, now=T0 + 2)
    doubt = Outcome(ok=False, content=detail, error_kind="in_doubt")
    expected = replace(first, status="in_doubt", outcome=doubt, finished_at=T0 + 2)
    assert ledger.get(it.key) == expected
    for who, now in ((new_owner(), T0 + 3), (owner, T0 + 10**6)):
        again = claim(ledger, it, who, now)
        assert (again.kind, again.record, again.recovered) == ("in_doubt", expected, False)
    assert not ledger.finish(it.key, owner=owner, outcome=OK, now=T0 + 4)
    assert not ledger.release(it.key, owner=owner)
    assert not ledger.mark_in_doubt(it.key, owner=owner, detail="again", now=T0 + 4)
    assert not ledger.compensate(it.key, Compensation(ok=True, by="ops", reason="r", at=T0))
    assert ledger.get(it.key) == expected


def test_release_forgets_the_claim_so_the_next_claim_starts_afresh(ledger: EffectLedger) -> None:
    it, owner = intent(), new_owner()
    claim(ledger, it, owner)
    later = claim(ledger, intent("other", run_id="run-2"), owner).record
    assert ledger.release(it.key, owner=owner)
    assert ledger.get(it.key) is None
    assert not ledger.release(it.key, owner=owner)
    assert ledger.effects() == [later] and ledger.effects(run_id="run-1") == []
    again = claim(ledger, it, new_owner(), T0 + 1)
    assert again.kind == "acquired" and not again.recovered
    assert again.record.attempts == 1 and again.record.started_at == T0 + 1
    assert again.record.seq > later.seq  # a new record: it sorts as the newest
    assert ledger.effects() == [later, again.record]


def test_shadow_records_are_stored_listed_and_kept_apart_from_real_calls(
    ledger: EffectLedger,
) -> None:
    real = intent()
    shadow = intent(f"shadow:{real.key}")
    would = Outcome(ok=True, content="would refund $10", output={"shadow": True})
    ledger.record_shadow(shadow, would, now=T0)
    first = ledger.get(shadow.key)
    assert first is not None
    assert (first.intent, first.status, first.outcome) == (shadow, "shadow", would)
    assert (first.started_at, first.finished_at) == (T0, T0)
    acquired = claim(ledger, real, new_owner(), T0 + 1)
    assert acquired.kind == "acquired" and acquired.record.attempts == 1
    assert ledger.finish(real.key, owner=acquired.record.owner, outcome=OK, now=T0 + 2)
    assert ledger.get(shadow.key) == first
    moved = replace(shadow, run_id="run-2")  # replaced: a new outcome, run and seq
    ledger.record_shadow(moved, OK, now=T0 + 3)
    second = ledger.get(shadow.key)
    assert second is not None and second.intent == moved and second.outcome == OK
    assert second.seq > acquired.record.seq and second.finished_at == T0 + 3
    assert [r.intent.key for r in ledger.effects()] == [real.key, shadow.key]
    assert ledger.effects(run_id="run-1") == [ledger.get(real.key)]
    assert ledger.effects(run_id="run-2") == [second]
    assert claim(ledger, real, new_owner(), T0 + 4).kind == "done"


def test_effects_filter_order_by_seq_and_limit_keeps_the_newest(ledger: EffectLedger) -> None:
    combos = list(itertools.product(("run-1", "run-2"), ("thread-1", "thread-2"), ("acme", "g")))
    created: list[EffectIntent] = []
    for n, (run, thread, tenant) in enumerate(combos * 2):
        it = intent(f"k{n:02d}", run_id=run, thread_id=thread, tenant=tenant)
        owner = new_owner()
        claim(ledger, it, owner, T0 + n)
        if n % 3 == 0:
            ledger.finish(it.key, owner=owner, outcome=OK, now=T0 + n)
        if n == 7:
            ledger.release(it.key, owner=owner)
            continue
        created.append(it)
    ledger.record_shadow(intent("shadow:x", run_id="run-2", tenant="g"), OK, now=T0 + 99)
    created.append(intent("shadow:x", run_id="run-2", tenant="g"))
    listed = ledger.effects()
    assert [r.intent for r in listed] == created
    assert [r.seq for r in listed] == sorted({r.seq for r in listed})
    assert listed == [ledger.get(it.key) for it in created]
    for run, thread, tenant in itertools.product(
        (None, "run-2", "none"), (None, "thread-1"), (None, "acme", "g")
    ):
        expected = [
            it.key
            for it in created
            if run in (None, it.run_id)
            and thread in (None, it.thread_id)
            and tenant in (None, it.tenant)
        ]
        for limit in (1000, 3, 1):
            found = ledger.effects(run_id=run, thread_id=thread, tenant=tenant, limit=limit)
            assert [r.intent.key for r in found] == expected[-limit:], (run, thread, tenant)


def test_compensate_only_a_done_record_and_only_once_successfully(ledger: EffectLedger) -> None:
    failed = Compensation(ok=False, by="ops:alice", reason="refund by mistake", at=T0 + 9)
    failed_again = replace(failed, at=T0 + 10, detail="bank timeout")
    undone = Compensation(ok=True, by="ops:bob", reason="refund by mistake", at=T0 + 11)
    assert not ledger.compensate("never-claimed", undone)
    it, owner = intent(), new_owner()
    claim(ledger, it, owner)
    assert not ledger.compensate(it.key, undone)  # pending: nothing to undo yet
    ledger.record_shadow(intent("shadow:x"), OK, now=T0)
    assert not ledger.compensate("shadow:x", undone)
    ledger.finish(it.key, owner=owner, outcome=OK, now=T0 + 1)
    done = ledger.get(it.key)
    assert done is not None and done.compensation is None
    for attempt in (failed, failed_again, undone):  # failures may be tried again
        assert ledger.compensate(it.key, attempt)
        assert ledger.get(it.key) == replace(done, compensation=attempt)
    assert not ledger.compensate(it.key, replace(undone, at=T0 + 12))
    assert not ledger.compensate(it.key, failed)
    assert ledger.get(it.key) == replace(done, compensation=undone)
    assert claim(ledger, it, new_owner(), T0 + 13).record.compensation == undone


def test_unicode_and_json_round_trip_exactly(ledger: EffectLedger) -> None:
    args: dict[str, object] = {
        "note": "Ünïcödé — 退款 🎉 \u202eevil\u202c zero\u200bwidth",
        "quote": 'he said "hi" \\ and \n left',
        "nul": "a\x00b",
        "lone surrogate": "\ud800",
        "🔑": [1, 2.5, 0.1, 1e-300, 2**62 + 1, -7, None, True, False, "", [], {}],
        "nested": {"deep": {"deeper": [{"x": "y"}]}},
        "sql": "'; DROP TABLE effects; --",
    }
    it = intent("ключ:🎉", tenant="ácme:prod", run_id="run/ü:1", args=args)
    owner, now = new_owner(), T0 + 0.1  # not a short decimal in binary: must come back exact
    first = claim(ledger, it, owner, now).record
    outcome = Outcome(ok=True, content="✓ 已退款", output={"ids": ["R-1", "R-2"], "€": 1.5})
    ledger.finish(it.key, owner=owner, outcome=outcome, now=now + 0.7)
    stored = ledger.get(it.key)
    assert stored is not None
    assert stored.intent == it and stored.outcome == outcome
    assert (stored.lease_until, stored.finished_at) == (now + LEASE, now + 0.7)
    assert stored == replace(first, status="done", outcome=outcome, finished_at=now + 0.7)
    assert ledger.effects(tenant="ácme:prod", run_id="run/ü:1") == [stored]


# ---------------------------------------------------------------------------------------------
# Concurrency: threads and OS processes race for one key; exactly one acts.


def _race(open_ledger: OpenLedger, it: EffectIntent, now: float, threads: int = 16) -> list[Claim]:
    handles = [open_ledger() for _ in range(threads)]
    start = threading.Barrier(threads)
    claims: list[Claim | BaseException] = [RuntimeError("not run")] * threads

    def work(n: int) -> None:
        try:
            handles[n].get("warm-up")  # connect first: the race is then the claims alone
            start.wait()
            claims[n] = claim(handles[n], it, new_owner(), now)
        except BaseException as error:  # reported below, not lost in the thread
            claims[n] = error

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave as much as CPython allows
    try:
        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    done = [c for c in claims if isinstance(c, Claim)]
    assert len(done) == threads, [c for c in claims if not isinstance(c, Claim)]
    return done


def _one_winner(claims: list[Claim], ledger: EffectLedger, key: str) -> Claim:
    winners = [c for c in claims if c.kind == "acquired"]
    assert len(winners) == 1, [c.kind for c in claims]
    owner = winners[0].record.owner
    assert all(c.kind == "busy" and c.record.owner == owner for c in claims if c not in winners)
    stored = ledger.get(key)
    assert stored is not None and stored.owner == owner
    return winners[0]


def test_sixteen_threads_claiming_one_key_acquire_it_once(open_ledger: OpenLedger) -> None:
    it = intent()
    winner = _one_winner(_race(open_ledger, it, T0), open_ledger(), it.key)
    assert not winner.recovered and winner.record.attempts == 1


@pytest.mark.parametrize("why", ["expired", "dead"])
def test_sixteen_threads_taking_over_one_claim_take_it_once(
    open_ledger: OpenLedger, dead_owner: str, why: str
) -> None:
    it, ledger = intent(), open_ledger()
    claim(ledger, it, new_owner() if why == "expired" else dead_owner)
    now = T0 + LEASE if why == "expired" else T0 + 1  # a dead owner: before its lease ends
    winner = _one_winner(_race(open_ledger, it, now), ledger, it.key)
    assert winner.recovered and winner.record.attempts == 2


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_eight_processes_claiming_one_key_acquire_it_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        address = str(tmp_path / "effects.sqlite")
        ledger: SqliteEffectLedger | RedisEffectLedger = SqliteEffectLedger(address)
    else:
        address = request.getfixturevalue("redis_url")
        ledger = RedisEffectLedger(address)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    argv = [sys.executable, str(WORKER), backend, address, "refund:ORD-1"]
    workers = [
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(8)
    ]
    try:
        assert [w.stdout.readline() for w in workers if w.stdout] == ["ready\n"] * 8
        for worker in workers:  # all are waiting: release them together
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        kinds = sorted(w.stdout.readline().strip() for w in workers if w.stdout)
    finally:
        for worker in workers:
            worker.communicate(timeout=30)
    assert kinds == ["acquired"] + ["busy"] * 7
    stored = ledger.get("refund:ORD-1")
    assert stored is not None and int(stored.owner.split("|")[1]) in {w.pid for w in workers}
    ledger.close()


def test_a_forked_child_opens_its_own_sqlite_connections(tmp_path: Path) -> None:
    ledger = SqliteEffectLedger(tmp_path / "effects.sqlite")
    parent = claim(ledger, intent("parent"), new_owner()).record
    pid = os.fork()
    if pid == 0:  # the child: claim through the inherited ledger, then leave at once
        code = 1
        try:
            code = 0 if claim(ledger, intent("child"), new_owner()).kind == "acquired" else 2
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    child = ledger.get("child")
    assert child is not None and int(child.owner.split("|")[1]) == pid
    assert claim(ledger, intent("parent"), new_owner(), T0 + 1).record == parent  # still busy
    ledger.close()


# ---------------------------------------------------------------------------------------------
# Backend failures: an error that names the backend and says what to do.


def _not_a_database(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, and not ours to delete\n" * 200)
    return path


@pytest.mark.parametrize(
    ("make_path", "hint"),
    [
        (lambda tmp: tmp, "it is a folder; name a file in it"),
        (_not_a_database, "it is not a SQLite file; name a new file"),
        (lambda tmp: _not_a_database(tmp) / "effects.sqlite", "its folder must exist or be"),
    ],
    ids=["folder", "not-sqlite", "under-a-file"],
)
def test_an_unusable_sqlite_file_raises_naming_the_path_and_the_fix(
    tmp_path: Path, make_path: Callable[[Path], Path], hint: str
) -> None:
    path = make_path(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(EffectLedgerError) as caught:
        SqliteEffectLedger(path)
    message = str(caught.value)
    assert str(path) in message and f"Hint: {hint}" in message
    assert "No side effect runs" in message
    if before is not None:
        assert path.read_bytes() == before  # a file that is not ours is left alone


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_sqlite_ledger_in_a_read_only_folder_raises(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(EffectLedgerError, match="writable by this process"):
            SqliteEffectLedger(tmp_path / "effects.sqlite")
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_a_sqlite_ledger_needs_a_file(path: str) -> None:
    with pytest.raises(ToolConfigError, match="InMemoryEffectLedger"):
        SqliteEffectLedger(path)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_redis_raises_naming_the_url_without_its_password() -> None:
    port = _unused_port()
    ledger = RedisEffectLedger(f"redis://:s3cret@127.0.0.1:{port}/0", timeout_s=0.5)
    owner, it = new_owner(), intent()
    calls: dict[str, Callable[[], object]] = {
        "claim": lambda: ledger.claim(it, owner=owner, lease_s=LEASE, now=T0),
        "finish": lambda: ledger.finish(it.key, owner=owner, outcome=OK, now=T0),
        "mark_in_doubt": lambda: ledger.mark_in_doubt(it.key, owner=owner, detail="", now=T0),
        "release": lambda: ledger.release(it.key, owner=owner),
        "record_shadow": lambda: ledger.record_shadow(it, OK, now=T0),
        "get": lambda: ledger.get(it.key),
        "effects": lambda: ledger.effects(run_id="run-1"),
        "compensate": lambda: ledger.compensate(
            it.key, Compensation(ok=True, by="", reason="", at=0)
        ),
    }
    for name, call in calls.items():
        with pytest.raises(EffectLedgerError) as caught:
            call()
        message = str(caught.value)
        assert f"redis://:***@127.0.0.1:{port}/0" in message, name
        assert "s3cret" not in message, name
        assert "is Redis running there? check BASTION_REDIS_URL" in message, name
    ledger.close()


@pytest.mark.redis
def test_an_unreadable_redis_record_raises(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    admin.hset("bastion:effects:rec:broken", mapping={"key": "broken", "status": "done"})
    ledger = RedisEffectLedger(admin)
    with pytest.raises(EffectLedgerError, match="record `broken` is unreadable"):
        ledger.get("broken")
    admin.close()


@pytest.mark.redis
def test_each_redis_call_is_one_script_round_trip(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, connection_class=CountingConnection)
    ledger = RedisEffectLedger(client)
    owner, warm = new_owner(), intent("warm-up")
    ledger.claim(warm, owner=owner, lease_s=LEASE, now=T0)  # connects, loads the scripts
    ledger.finish(warm.key, owner=owner, outcome=OK, now=T0)
    CountingConnection.sent.clear()
    it = intent()
    assert ledger.claim(it, owner=owner, lease_s=LEASE, now=T0).kind == "acquired"
    assert ledger.finish(it.key, owner=owner, outcome=OK, now=T0 + 1)
    assert ledger.claim(it, owner=new_owner(), lease_s=LEASE, now=T0 + 2).kind == "done"
    assert len(CountingConnection.sent) == 3
    assert all(b"EVALSHA" in request for request in CountingConnection.sent)
    client.close()


@pytest.mark.redis
def test_redis_prefixes_isolate_ledgers(redis_url: str) -> None:
    a = RedisEffectLedger(redis_url, prefix="a:")
    b = RedisEffectLedger(redis_url, prefix="b:")
    claim(a, intent(), new_owner())
    assert b.get("refund:ORD-1") is None and b.effects() == []
    assert claim(b, intent(), new_owner()).kind == "acquired"
    a.close()
    b.close()
