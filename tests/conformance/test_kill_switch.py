"""Conformance of every `KillSwitch`: scopes, precedence, lift, re-kill, history, visibility."""

from __future__ import annotations

import functools
import itertools
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from guards.base import KillRecord, KillScope, KillSwitch, KillTarget
from guards.errors import GuardConfigError
from guards.killswitch import InMemoryKillSwitch, KillSwitchBackendError, target_keys
from guards.redis_killswitch import RedisKillSwitch
from guards.sqlite_killswitch import SqliteKillSwitch

HISTORY_SIZE = 5
WAIT_S = 5.0
WHO = {"requester": "ops:alice", "reason": "refunds are going to the wrong accounts"}

TENANTS = ("acme", "acme2", "globex")
WORKFLOWS = ("refunds", "support", "acme")  # `acme` the workflow is not `acme` the tenant
TARGETS = tuple(
    KillTarget(tenant=t, workflow=w, run_id=f"{t}.{w}.{n}")
    for t, w, n in itertools.product(TENANTS, WORKFLOWS, (1, 2))
)

Switch = InMemoryKillSwitch | RedisKillSwitch | SqliteKillSwitch
OpenHandle = Callable[[], Switch]


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def open_handle(request: pytest.FixtureRequest) -> Iterator[OpenHandle]:
    """Opens handles on one shared backend: memory hands out the same object, Redis a new
    client each time and SQLite a new switch on the same file (as two processes would have)."""
    if request.param == "memory":
        shared = InMemoryKillSwitch(history_size=HISTORY_SIZE)
        yield lambda: shared
        return
    factory: Callable[[], RedisKillSwitch | SqliteKillSwitch]
    if request.param == "sqlite":
        path = request.getfixturevalue("tmp_path") / "kill.sqlite"
        factory = functools.partial(SqliteKillSwitch, path, history_size=HISTORY_SIZE)
    else:
        url = request.getfixturevalue("redis_url")
        factory = functools.partial(RedisKillSwitch, url, history_size=HISTORY_SIZE)
    opened: list[RedisKillSwitch | SqliteKillSwitch] = []

    def open_backend() -> Switch:
        opened.append(factory())
        return opened[-1]

    yield open_backend
    for handle in opened:
        handle.close()


@pytest.fixture
def switch(open_handle: OpenHandle) -> Switch:
    """One handle on a fresh backend."""
    return open_handle()


def _covers(scope: KillScope, target: KillTarget) -> bool:
    """The oracle: what a scope must stop, written independently of the implementations."""
    return {
        "global": True,
        "tenant": target.tenant == scope.value,
        "workflow": target.workflow == scope.value,
        "run": target.run_id == scope.value,
    }[scope.kind]


def test_implements_the_protocol_and_starts_empty(switch: Switch) -> None:
    assert isinstance(switch, KillSwitch)
    assert all(switch.check(target) is None for target in TARGETS)
    assert switch.active() == []
    assert switch.history() == []


@pytest.mark.parametrize(
    "scope",
    ["global", "tenant:acme", "workflow:acme", "workflow:refunds", "run:acme2.support.1"],
)
def test_each_scope_stops_exactly_the_targets_it_covers(switch: Switch, scope: str) -> None:
    killed = KillScope.parse(scope)
    before = time.time()
    record = switch.kill(killed, **WHO)
    assert (record.scope, record.requester, record.reason) == (killed, *WHO.values())
    assert before <= record.at <= time.time()
    for target in TARGETS:
        assert switch.check(target) == (record if _covers(killed, target) else None), target
    assert switch.active() == [record]


def test_the_broadest_kill_wins_and_lifting_reveals_the_next(switch: Switch) -> None:
    target = TARGETS[0]
    narrowest_first = tuple(reversed(target.scopes()))
    records = [switch.kill(scope, **WHO) for scope in narrowest_first]
    assert switch.active() == records[::-1]
    for scope, record in zip(target.scopes(), records[::-1], strict=True):
        assert switch.check(target) == record
        assert switch.lift(scope, requester="ops:bob", reason="fixed") == record
    assert switch.check(target) is None


def test_killing_a_killed_scope_keeps_the_first_record(switch: Switch) -> None:
    scope = KillScope(kind="tenant", value="acme")
    first = switch.kill(scope, **WHO)
    again = switch.kill(scope, requester="ops:bob", reason="me too")
    assert again == first
    assert switch.active() == [first]
    assert [e["event"] for e in switch.history()] == ["kill"]


def test_lift_returns_the_record_and_is_recorded(switch: Switch) -> None:
    scope = KillScope(kind="workflow", value="refunds")
    record = switch.kill(scope, **WHO)
    assert switch.lift(scope, requester=" ops:bob ", reason="bank fixed the mapping") == record
    assert switch.check(TARGETS[0]) is None
    assert switch.active() == []
    assert switch.lift(scope, requester="ops:bob", reason="again") is None
    lifted, killed = switch.history()
    assert killed == {"event": "kill", "scope": "workflow:refunds", **WHO, "at": record.at}
    assert lifted["event"] == "lift" and lifted["scope"] == "workflow:refunds"
    assert (lifted["requester"], lifted["reason"]) == ("ops:bob", "bank fixed the mapping")
    assert lifted["at"] >= record.at


def test_a_lifted_scope_can_be_killed_again(switch: Switch) -> None:
    scope = KillScope(kind="run", value="acme.refunds.1")
    first = switch.kill(scope, **WHO)
    switch.lift(scope, requester="ops:bob", reason="false alarm")
    second = switch.kill(scope, requester="ops:carol", reason="it happened again")
    assert second.requester == "ops:carol" and second.at >= first.at
    assert switch.check(TARGETS[0]) == second
    assert [e["event"] for e in switch.history()] == ["kill", "lift", "kill"]


def test_history_is_bounded_and_newest_first(switch: Switch) -> None:
    for n in range(4):
        scope = KillScope(kind="run", value=f"r{n}")
        switch.kill(scope, requester=f"killer{n}", reason="r")
        switch.lift(scope, requester=f"lifter{n}", reason="r")
    history = switch.history(limit=100)
    assert len(history) == HISTORY_SIZE
    assert [e["requester"] for e in history] == [
        "lifter3", "killer3", "lifter2", "killer2", "lifter1",
    ]  # fmt: skip
    assert [e["at"] for e in history] == sorted((e["at"] for e in history), reverse=True)
    assert switch.history(limit=2) == history[:2]
    assert switch.history(limit=0) == []
    with pytest.raises(GuardConfigError, match="-1"):
        switch.history(limit=-1)


@pytest.mark.parametrize("action", ["kill", "lift"])
@pytest.mark.parametrize("field", ["requester", "reason"])
@pytest.mark.parametrize("blank", ["", "   "])
def test_requester_and_reason_are_required(
    switch: Switch, action: str, field: str, blank: str
) -> None:
    scope = KillScope(kind="tenant", value="acme")
    if action == "lift":
        switch.kill(scope, **WHO)
    with pytest.raises(GuardConfigError, match=f"non-blank `{field}`.*Hint"):
        getattr(switch, action)(scope, **{**WHO, field: blank})
    assert len(switch.history()) == (1 if action == "lift" else 0)
    assert bool(switch.active()) == (action == "lift")


@pytest.mark.parametrize("scope", [KillScope(kind="tenant", value=""), KillScope(kind="run")])
def test_a_scope_must_name_what_it_stops(switch: Switch, scope: KillScope) -> None:
    with pytest.raises(GuardConfigError, match="Hint: to stop everything"):
        switch.kill(scope, **WHO)
    assert switch.active() == []


def test_a_global_kill_is_one_scope_whatever_its_value(switch: Switch) -> None:
    record = switch.kill(KillScope(kind="global", value="oops"), **WHO)
    assert record.scope == KillScope(kind="global")
    assert all(switch.check(target) == record for target in TARGETS)
    assert switch.lift(KillScope(kind="global"), **WHO) == record


def test_a_kill_by_one_handle_is_seen_by_the_next_check_of_another(open_handle: OpenHandle) -> None:
    console, runtime = open_handle(), open_handle()
    target = TARGETS[0]
    assert runtime.check(target) is None  # whatever the runtime has read must not be reused
    record = console.kill(KillScope(kind="tenant", value=target.tenant), **WHO)
    assert runtime.check(target) == record
    assert runtime.active() == [record]
    assert runtime.lift(record.scope, requester="ops:bob", reason="ok") == record
    assert console.check(target) is None
    assert [e["event"] for e in console.history()] == ["lift", "kill"]


def test_concurrent_kills_of_one_scope_agree_on_the_first_record(open_handle: OpenHandle) -> None:
    handles = [open_handle() for _ in range(8)]
    start = threading.Barrier(len(handles))
    returned: dict[int, KillRecord] = {}

    def kill(n: int) -> None:
        start.wait()
        returned[n] = handles[n].kill(KillScope(kind="global"), requester=f"ops:{n}", reason="r")

    threads = [threading.Thread(target=kill, args=(n,)) for n in range(len(handles))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    (winner,) = set(returned.values())
    assert len(returned) == len(handles)
    assert handles[0].active() == [winner]
    assert [(e["event"], e["requester"]) for e in handles[0].history()] == [
        ("kill", winner.requester)
    ]


class _Inbox:
    """Collects watched events; `wait(n)` blocks until n arrived (no sleeping)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self._fail = fail
        self._changed = threading.Condition()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()
        if self._fail:
            raise RuntimeError("a broken console")

    def wait(self, count: int) -> list[dict[str, Any]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.events) >= count, WAIT_S), self.events
            return list(self.events)


def test_watchers_get_every_kill_and_lift_until_stopped(open_handle: OpenHandle) -> None:
    console, runtime = open_handle(), open_handle()
    stopped, sentinel = _Inbox(), _Inbox()
    stop_first, stop_sentinel = runtime.watch(stopped), runtime.watch(sentinel)
    scope = KillScope(kind="run", value="r1")
    record = console.kill(scope, **WHO)
    console.lift(scope, requester="ops:bob", reason="done")
    kill, lift = stopped.wait(2)
    assert kill == {"event": "kill", "scope": "run:r1", **WHO, "at": record.at}
    assert (lift["event"], lift["requester"]) == ("lift", "ops:bob")
    stop_first()
    console.kill(scope, **WHO)
    assert len(sentinel.wait(3)) == 3
    assert len(stopped.events) == 2
    stop_sentinel()


def test_a_failing_watcher_does_not_undo_the_kill(open_handle: OpenHandle) -> None:
    console = open_handle()
    broken, healthy = _Inbox(fail=True), _Inbox()
    stops = [console.watch(broken), console.watch(healthy)]
    record = console.kill(KillScope(kind="global"), **WHO)
    assert console.check(TARGETS[0]) == record
    console.lift(KillScope(kind="global"), **WHO)
    assert len(broken.wait(2)) == len(healthy.wait(2)) == 2
    for stop in stops:
        stop()


def test_target_keys_are_the_scopes_as_text() -> None:
    for target in TARGETS:
        assert target_keys(target) == tuple(str(s) for s in target.scopes())


# ---------------------------------------------------------------------------------------------
# Redis specifics: the backend's failure modes and its one-round-trip check.


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_dead_redis_raises_an_error_naming_the_url_and_the_fix() -> None:
    url = f"redis://127.0.0.1:{_unused_port()}/0"
    with RedisKillSwitch(url, timeout_s=0.5) as dead:
        calls: dict[str, Callable[[], object]] = {
            "check": lambda: dead.check(TARGETS[0]),
            "kill": lambda: dead.kill(KillScope(kind="global"), **WHO),
            "lift": lambda: dead.lift(KillScope(kind="global"), **WHO),
            "active": dead.active,
            "history": dead.history,
            "watch": lambda: dead.watch(_Inbox()),
        }
        for name, call in calls.items():
            with pytest.raises(KillSwitchBackendError) as caught:
                call()
            message = str(caught.value)
            assert url in message and "start Redis" in message, name
            assert "unset BASTION_REDIS_URL" in message, name
            assert caught.value.url == url
            assert isinstance(caught.value, RuntimeError)


@pytest.mark.redis
def test_check_is_one_mget(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    with RedisKillSwitch(admin) as switch:
        switch.kill(KillScope(kind="run", value="elsewhere"), **WHO)
        admin.config_resetstat()
        for target in TARGETS:
            switch.check(target)
        stats = admin.info("commandstats")
    calls = {name: s["calls"] for name, s in stats.items()}
    assert calls == {"cmdstat_mget": len(TARGETS), "cmdstat_config|resetstat": 1}
    admin.ping()  # the caller's client stays open: the switch did not own it
    admin.close()


@pytest.mark.redis
def test_an_unreadable_kill_record_fails_closed(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    admin.set("bastion:kill:scope:tenant:acme", b"not json")
    admin.close()
    with RedisKillSwitch(redis_url) as switch:
        with pytest.raises(KillSwitchBackendError, match="not valid"):
            switch.check(TARGETS[0])
        assert switch.check(KillTarget(tenant="globex", workflow="w", run_id="r")) is None


@pytest.mark.redis
def test_prefixes_isolate_deployments_even_with_glob_characters(redis_url: str) -> None:
    with (
        RedisKillSwitch(redis_url, prefix="a*") as star,
        RedisKillSwitch(redis_url, prefix="ab") as plain,
    ):
        record = plain.kill(KillScope(kind="global"), **WHO)
        assert star.check(TARGETS[0]) is None
        assert star.active() == [] and star.history() == []
        assert plain.active() == [record]
    admin = redis.Redis.from_url(redis_url)
    raw = admin.get("ab:scope:global")
    admin.close()
    assert raw is not None
    stored = json.loads(raw)
    assert stored == {"kind": "global", "value": "*", **WHO, "at": record.at}


# ---------------------------------------------------------------------------------------------
# SQLite specifics: unusable files, one indexed SELECT per check, commits other readers see.


def _not_a_database(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, and not ours to delete\n" * 200)
    return path


@pytest.mark.parametrize(
    ("make_path", "hint"),
    [
        (lambda tmp: tmp, "it is a folder; name a file in it"),
        (lambda tmp: _not_a_database(tmp), "it is not a SQLite file; name a new file"),
        (lambda tmp: _not_a_database(tmp) / "kill.sqlite", "its folder must exist or be creatable"),
    ],
    ids=["folder", "not-sqlite", "under-a-file"],
)
def test_an_unusable_kill_file_raises_an_error_naming_the_path_and_the_fix(
    tmp_path: Path, make_path: Callable[[Path], Path], hint: str
) -> None:
    path = make_path(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(KillSwitchBackendError) as caught:
        SqliteKillSwitch(path)
    message = str(caught.value)
    assert str(path) in message and f"Hint: {hint}" in message
    assert "fail closed" in message
    assert caught.value.url == str(path)
    if before is not None:
        assert path.read_bytes() == before  # a file that is not ours is left alone


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_kill_file_in_a_read_only_folder_raises(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(KillSwitchBackendError, match="writable by this process"):
            SqliteKillSwitch(tmp_path / "kill.sqlite")
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_a_kill_file_must_be_a_file(path: str) -> None:
    with pytest.raises(GuardConfigError, match="InMemoryKillSwitch"):
        SqliteKillSwitch(path)


def test_a_kill_is_committed_to_the_wal_file_before_kill_returns(tmp_path: Path) -> None:
    path = tmp_path / "home" / "kill.sqlite"  # the folder is created
    with SqliteKillSwitch(path) as switch:
        record = switch.kill(KillScope(kind="tenant", value="acme"), **WHO)
        outsider = sqlite3.connect(path)  # not a kill switch: plain SQLite, its own snapshot
        try:
            assert outsider.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
            rows = outsider.execute("SELECT scope, requester, reason, at FROM kill_scopes")
            assert rows.fetchall() == [("tenant:acme", *WHO.values(), record.at)]
        finally:
            outsider.close()


def test_check_is_one_indexed_select(tmp_path: Path) -> None:
    with SqliteKillSwitch(tmp_path / "kill.sqlite") as switch:
        record = switch.kill(KillScope(kind="workflow", value="acme"), **WHO)
        statements: list[str] = []
        conn = switch._connection()
        conn.set_trace_callback(statements.append)
        results = [switch.check(target) for target in TARGETS]
        conn.set_trace_callback(None)
        # The traced text has the keys filled in, so the plan is that of a real check.
        plan = conn.execute("EXPLAIN QUERY PLAN " + statements[0]).fetchall()
        details = [row[-1] for row in plan]
    assert results == [record if t.workflow == "acme" else None for t in TARGETS]
    assert len(statements) == len(TARGETS)
    for statement, target in zip(statements, TARGETS, strict=True):
        assert statement.startswith("SELECT") and "FROM kill_scopes" in statement
        assert all(f"'{key}'" in statement for key in target_keys(target))
    assert any("USING PRIMARY KEY (scope=?)" in d for d in details), details
    assert not any(d.startswith("SCAN") for d in details), details


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    switch = SqliteKillSwitch(tmp_path / "kill.sqlite")
    parent_conn = id(switch._connection())
    record = switch.kill(KillScope(kind="global"), **WHO)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's teardown
        try:
            seen = switch.check(TARGETS[0]) == record
            os.write(write_end, json.dumps([seen, id(switch._connection())]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    seen, child_conn = json.loads(report)
    assert seen and child_conn != parent_conn
    assert switch.lift(KillScope(kind="global"), **WHO) == record
    switch.close()
