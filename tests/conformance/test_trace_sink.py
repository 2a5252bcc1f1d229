"""Conformance of every `TraceSink`: round trip, filters, limits, run folding, retries, races."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
import redis

from observability.base import TraceBackendError, TraceSink
from observability.events import CostRecord, TraceEvent
from observability.memory_sinks import InMemoryTraceSink
from observability.redis_trace import RedisTraceSink
from observability.runs import fold_run
from observability.sqlite_trace import SqliteTraceSink

OpenSink = Callable[[], TraceSink]
BACKENDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]
T0 = 1_700_000_000.0
DEADLINE_S = 60.0
"""Longest the test waits for a worker process; a stuck one fails the test instead of hanging."""

_ids = itertools.count(1)


def make_event(
    run_id: str = "run-1",
    *,
    ts: float | None = None,
    node: str = "agent_billing",
    tenant: str = "acme",
    **fields: Any,
) -> TraceEvent:
    """A trace event with every field filled in (override any by keyword)."""
    n = next(_ids)
    event = TraceEvent(
        event_id=f"ev-{n}",
        ts=T0 + n if ts is None else ts,
        duration_ms=12.5,
        run_id=run_id,
        thread_id=f"thread-{run_id}",
        tenant=tenant,
        workflow="refunds",
        node=node,
        agent="billing" if node.startswith("agent_") else None,
        goal="Refund order #42 — «damaged»",
        context_hash="c0ffee",
        proposals=[
            {
                "call_id": f"call-{n}",
                "tool": "refund",
                "args": {"order": 42, "amount": 19.99, "items": ["mug", None]},
                "confidence": 0.8,
                "rationale": "the parcel arrived broken",
            }
        ],
        verdicts=[],
        tool_calls=[],
        output="",
        confidence=0.8,
        flags=["taint: email"],
        escalation=None,
        memory_reads=[{"namespace": "policies", "key": "refunds", "version": 3}],
        cost=CostRecord(tokens_in=100, tokens_out=20, usd=0.0015),
        status="ok",
        error=None,
    )
    event.update(fields)  # type: ignore[typeddict-item]
    return event


def verdict(kind: str, decided_by: str = "guard") -> dict[str, Any]:
    """A verdict as a guard or a reviewer records it."""
    return {
        "decision_id": f"d-{next(_ids)}",
        "call_id": "c",
        "kind": kind,
        "reasons": ["r"],
        "zone": "red",
        "policies": ["refunds@2"],
        "decided_by": decided_by,
        "memory_reads": [],
    }


def open_backend(backend: str, address: str) -> TraceSink:
    """A new handle on a shared sink: `sqlite` (a file) or `redis` (a URL)."""
    return SqliteTraceSink(address) if backend == "sqlite" else RedisTraceSink(address)


@pytest.fixture(params=BACKENDS)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """The backend and its address (unused for memory)."""
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    return request.param, str(tmp_path / "traces.sqlite")


@pytest.fixture
def open_sink(shared: tuple[str, str]) -> Iterator[OpenSink]:
    """Opens handles on one shared sink: memory hands out the same object, SQLite a new sink on
    the same file and Redis a new client (as separate processes would have)."""
    if shared[0] == "memory":
        one = InMemoryTraceSink()
        yield lambda: one
        return
    opened: list[TraceSink] = []

    def open_one() -> TraceSink:
        opened.append(open_backend(*shared))
        return opened[-1]

    yield open_one
    for handle in opened:
        handle.close()


@pytest.fixture
def sink(open_sink: OpenSink) -> TraceSink:
    """One handle on a fresh sink."""
    return open_sink()


def test_implements_the_protocol_and_starts_empty(sink: TraceSink) -> None:
    assert isinstance(sink, TraceSink)
    assert sink.events() == [] and sink.runs() == []
    assert sink.events(run_id="run-1") == [] and sink.events(tenant="acme") == []
    sink.write([])
    assert sink.events() == []


def test_every_field_survives_the_round_trip(open_sink: OpenSink) -> None:
    full = make_event(
        verdicts=[verdict("escalate")],
        tool_calls=[
            {
                "call_id": "c",
                "tool": "refund",
                "status": "success",
                "replayed": False,
                "shadow": True,
                "side_effect": "irreversible",
                "error_kind": None,
            }
        ],
        escalation={"zones": ["red"], "reviewers": ["ops"], "deadline": T0 + 0.1},
        output="route to billing",
        confidence=0.1 + 0.2,
        status="interrupted",
    )
    bare = make_event(
        node="guard", confidence=None, error="ValueError: bad", status="error", proposals=[]
    )
    open_sink().write([full, bare])
    for reader in (open_sink(), open_sink()):  # the writer's handle and a fresh one agree
        assert reader.events() == [full, bare]
        assert reader.events(run_id="run-1") == [full, bare]
        assert reader.events(tenant="acme") == [full, bare]


def test_events_are_filtered_by_run_and_tenant(sink: TraceSink) -> None:
    plan = [("r1", "acme"), ("r2", "globex"), ("r1", "acme"), ("r3", "acme"), ("r2", "globex")]
    events = [make_event(run, tenant=tenant) for run, tenant in plan]
    sink.write(events[:2])
    sink.write(events[2:])
    assert sink.events() == events
    assert sink.events(run_id="r1") == [events[0], events[2]]
    assert sink.events(tenant="globex") == [events[1], events[4]]
    assert sink.events(tenant="acme") == [events[0], events[2], events[3]]
    assert sink.events(run_id="r3", tenant="acme") == [events[3]]
    assert sink.events(run_id="r3", tenant="globex") == []
    assert sink.events(run_id="nope") == [] and sink.events(tenant="initech") == []


def test_limit_keeps_the_newest_events_oldest_first(sink: TraceSink) -> None:
    events = [make_event("r1" if n % 2 else "r2") for n in range(10)]
    sink.write(events)
    assert sink.events(limit=3) == events[-3:]
    assert sink.events(run_id="r1", limit=2) == [events[7], events[9]]
    assert sink.events(tenant="acme", limit=4) == events[-4:]
    assert sink.events(limit=100) == events
    assert sink.events(limit=0) == []


def test_events_come_back_in_storage_order_not_timestamp_order(sink: TraceSink) -> None:
    late, early = make_event(ts=T0 + 50), make_event(ts=T0 + 10)
    sink.write([late])
    sink.write([early])
    assert sink.events() == [late, early]
    assert sink.events(run_id="run-1") == [late, early]


def test_runs_fold_steps_cost_times_and_decisions(open_sink: OpenSink) -> None:
    events = [
        make_event(node="intake", ts=T0 + 2, goal="refund #42"),
        make_event(ts=T0 + 1, cost=CostRecord(tokens_in=7, tokens_out=3, usd=0.25)),
        make_event(node="guard", ts=T0 + 3, verdicts=[verdict("deny"), verdict("allow")]),
        make_event(node="approval", ts=T0 + 4, verdicts=[verdict("allow", "human:bob")]),
    ]
    open_sink().write(events[:2])
    open_sink().write(events[2:])
    (summary,) = open_sink().runs()
    expected = None
    for event in events:
        expected = fold_run(expected, event)
    assert summary == expected
    assert (summary["run_id"], summary["tenant"], summary["status"]) == ("run-1", "acme", "running")
    assert (summary["started_at"], summary["updated_at"], summary["steps"]) == (T0 + 1, T0 + 4, 4)
    assert summary["cost"]["tokens_in"] == 307 and summary["cost"]["tokens_out"] == 63
    assert summary["cost"]["usd"] == pytest.approx(0.2545)
    assert (summary["interventions"], summary["incidents"]) == (1, 1)


def test_a_finalize_event_sets_the_outcome_and_keeps_it(sink: TraceSink) -> None:
    sink.write([make_event(node="intake"), make_event()])
    sink.write([make_event(node="finalize", output="resolved: exit condition met")])
    assert sink.runs()[0]["status"] == "resolved"
    sink.write([make_event(node="guard")])  # a straggler does not reopen the run
    assert sink.runs()[0]["status"] == "resolved"
    sink.write([make_event("r2", node="finalize", output="nonsense")])
    assert sink.runs()[0]["status"] == "failed"


def test_an_interrupted_latest_event_means_waiting(sink: TraceSink) -> None:
    sink.write([make_event(), make_event(node="approval", status="interrupted")])
    (summary,) = sink.runs()
    assert (summary["status"], summary["escalations"]) == ("waiting", 1)
    sink.write([make_event(ts=T0 - 5)])  # an older event arriving late changes nothing
    assert sink.runs()[0]["status"] == "waiting"
    sink.write([make_event(node="approval")])  # resumed
    assert sink.runs()[0]["status"] == "running"


def test_runs_are_listed_newest_update_first_and_by_tenant(sink: TraceSink) -> None:
    sink.write([make_event("a", ts=T0 + 1), make_event("b", ts=T0 + 2, tenant="globex")])
    sink.write([make_event("c", ts=T0 + 3), make_event("a", ts=T0 + 4)])
    assert [r["run_id"] for r in sink.runs()] == ["a", "c", "b"]
    assert [r["run_id"] for r in sink.runs(limit=2)] == ["a", "c"]
    assert [r["run_id"] for r in sink.runs(tenant="acme")] == ["a", "c"]
    assert [r["run_id"] for r in sink.runs(tenant="globex")] == ["b"]
    assert sink.runs(tenant="initech") == [] and sink.runs(limit=0) == []


def test_events_without_a_run_are_stored_but_make_no_run(sink: TraceSink) -> None:
    event = make_event("", node="intake")
    sink.write([event])
    assert sink.events() == [event] and sink.events(tenant="acme") == [event]
    assert sink.runs() == []


def test_a_retried_batch_is_stored_and_folded_once(open_sink: OpenSink) -> None:
    batch = [make_event(), make_event(), make_event("r2")]
    open_sink().write(batch)
    open_sink().write(batch)  # the tracer retries after a timeout that hid a success
    extra = make_event()
    open_sink().write([batch[1], extra, extra])  # half old, and a duplicate inside the batch
    sink = open_sink()
    assert sink.events() == [*batch, extra]
    folded = {r["run_id"]: (r["steps"], r["cost"]["tokens_in"]) for r in sink.runs()}
    assert folded == {"run-1": (3, 300), "r2": (1, 100)}


def test_threads_writing_one_run_lose_no_step(open_sink: OpenSink) -> None:
    threads, per_thread = 6, 30
    shared_batch = [make_event() for _ in range(5)]  # every thread also retries this batch
    start, errors = threading.Barrier(threads), []

    def write(handle: TraceSink, worker: int) -> None:
        try:
            start.wait(DEADLINE_S)
            for n in range(0, per_thread, 3):
                handle.write([make_event(event_id=f"t{worker}-{n + i}") for i in range(3)])
            handle.write(shared_batch)
        except Exception as error:  # reported below
            errors.append(error)

    handles = [open_sink() for _ in range(threads // 2)]
    workers = [
        threading.Thread(target=write, args=(handles[n % len(handles)], n)) for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(DEADLINE_S)
    assert errors == []
    sink = open_sink()
    (summary,) = sink.runs()
    assert summary["steps"] == threads * per_thread + len(shared_batch)
    assert summary["cost"]["tokens_in"] == 100 * summary["steps"]
    assert len(sink.events(run_id="run-1")) == summary["steps"]


def write_run(
    backend: str, address: str, worker: int, count: int, start: Barrier, results: Queue
) -> None:
    """A worker process: write `count` events of run `shared` in batches of 2; report
    `(worker, None)`, or `(worker, error text)`."""
    try:
        sink = open_backend(backend, address)
        start.wait(DEADLINE_S)
        for n in range(0, count, 2):
            sink.write(
                [
                    make_event("shared", event_id=f"p{worker}-{n + i}", ts=T0 + n + i / 10)
                    for i in range(min(2, count - n))
                ]
            )
        sink.close()
        results.put((worker, None))
    except Exception as error:  # reported to the test, which names it
        results.put((worker, f"{type(error).__name__}: {error}"))


@pytest.mark.parametrize(
    "shared", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)], indirect=True
)
def test_processes_writing_one_run_lose_no_step(shared: tuple[str, str]) -> None:
    if shared[0] == "sqlite":
        SqliteTraceSink(shared[1]).close()  # created once, as a deployment would
    workers, count = 4, 121
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(workers), spawn.Queue()
    processes = [
        spawn.Process(target=write_run, args=(*shared, n, count, start, results))
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        reports = dict(results.get(timeout=DEADLINE_S) for _ in processes)
    except queue.Empty:
        pytest.fail(f"a worker did not report within {DEADLINE_S}s")
    finally:
        for process in processes:
            process.join(DEADLINE_S)
    assert reports == {n: None for n in range(workers)}
    sink = open_backend(*shared)
    (summary,) = sink.runs()
    assert summary["steps"] == workers * count
    assert summary["cost"]["tokens_in"] == 100 * workers * count
    assert (summary["started_at"], summary["updated_at"]) == (T0, T0 + count - 1)
    stored = sink.events(run_id="shared")
    assert sorted(e["event_id"] for e in stored) == sorted(
        f"p{w}-{n}" for w in range(workers) for n in range(count)
    )
    sink.close()


# Backend specifics: errors that say what to do, Redis layout, forks.


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_a_sqlite_sink_needs_a_file(path: str) -> None:
    with pytest.raises(ValueError, match="InMemoryTraceSink"):
        SqliteTraceSink(path)


@pytest.mark.parametrize(
    ("make_path", "hint"),
    [
        (lambda tmp: tmp, "it is a folder"),
        (lambda tmp: _write(tmp / "notes.txt", "not a database\n" * 200), "it is not a SQLite"),
        (lambda tmp: _write(tmp / "file", "x") / "traces.sqlite", "its folder must exist"),
    ],
    ids=["folder", "not-sqlite", "under-a-file"],
)
def test_an_unusable_trace_file_raises_naming_the_path_and_the_fix(
    tmp_path: Path, make_path: Callable[[Path], Path], hint: str
) -> None:
    path = make_path(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(TraceBackendError) as caught:
        SqliteTraceSink(path)
    message = str(caught.value)
    assert str(path) in message and f"Hint: {hint}" in message
    assert "could not create the trace file" in message and caught.value.url == str(path)
    if before is not None:
        assert path.read_bytes() == before  # a file that is not ours is left alone


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_trace_file_in_a_read_only_folder_raises(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(TraceBackendError, match="writable by this process"):
            SqliteTraceSink(tmp_path / "traces.sqlite")
    finally:
        tmp_path.chmod(0o700)


def test_a_trace_file_that_goes_away_raises_on_write(tmp_path: Path) -> None:
    folder = tmp_path / "home"
    sink = SqliteTraceSink(folder / "traces.sqlite")
    sink.close()
    for name in os.listdir(folder):
        os.remove(folder / name)
    folder.rmdir()
    _write(folder, "now a file")  # the folder is gone and cannot come back
    with pytest.raises(TraceBackendError, match="could not write trace events") as caught:
        sink.write([make_event()])
    assert str(folder / "traces.sqlite") in str(caught.value) and "Hint: " in str(caught.value)


def test_a_forked_child_uses_its_own_sqlite_connection(tmp_path: Path) -> None:
    path = tmp_path / "traces.sqlite"
    sink = SqliteTraceSink(path)
    sink.write([make_event()])
    child_event = make_event()
    pid = os.fork()
    if pid == 0:  # the child: write through the inherited sink, close it, leave at once
        code = 1
        try:
            sink.write([child_event])
            sink.close()
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    assert sink.events()[-1] == child_event  # the parent's handle still works
    sink.write([make_event()])
    with SqliteTraceSink(path) as other:
        assert other.runs()[0]["steps"] == 3
    sink.close()


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_dead_redis_raises_naming_the_url_without_its_password() -> None:
    port = _unused_port()
    sink = RedisTraceSink(f"redis://:s3cret@127.0.0.1:{port}/0", timeout_s=0.5)
    calls: dict[str, Callable[[], object]] = {
        "write trace events": lambda: sink.write([make_event()]),
        "read trace events": sink.events,
        "read run summaries": sink.runs,
    }
    for action, call in calls.items():
        with pytest.raises(TraceBackendError) as caught:
            call()
        message = str(caught.value)
        assert f"redis://:***@127.0.0.1:{port}/0" in message and "s3cret" not in message
        assert f"could not {action}" in message
        assert "Hint: is Redis running there? check BASTION_REDIS_URL" in message
        assert caught.value.url == f"redis://:***@127.0.0.1:{port}/0"
    sink.close()


@pytest.mark.redis
def test_redis_keeps_a_tailable_stream_and_forgets_seen_ids_later(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    connection_id = client.client_id()
    sink = RedisTraceSink(client, prefix="t", dedupe_ttl_s=600)
    events = [make_event(), make_event("r2", tenant="globex")]
    sink.write(events)
    tail: Any = client.xrange("t:events")  # what an exporter tailing the stream reads
    assert [json.loads(fields["event"]) for _, fields in tail] == events
    assert client.xlen("t:tenant:globex") == 1 and client.llen("t:run:run-1") == 1
    assert 0 < client.ttl(f"t:seen:{events[0]['event_id']}") <= 600
    assert client.zrange("t:runs:updated", 0, -1) == ["run-1", "r2"]
    assert sink.events(tenant="globex") == [events[1]] and len(sink.runs()) == 2
    sink.close()
    assert client.client_id() == connection_id  # a given client is left open
    client.close()


@pytest.mark.redis
def test_redis_streams_are_capped_near_maxlen(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    sink = RedisTraceSink(client, prefix="cap", maxlen=10)
    events = [make_event() for _ in range(500)]
    for n in range(0, 500, 50):
        sink.write(events[n : n + 50])
    assert 10 <= client.xlen("cap:events") < 500  # approximate trimming: whole nodes at once
    assert client.llen("cap:run:run-1") == 10
    assert sink.events(limit=5) == events[-5:] and sink.events(run_id="run-1") == events[-10:]
    assert sink.runs()[0]["steps"] == 500  # the summary counts what was trimmed
    client.close()


@pytest.mark.redis
def test_redis_prefixes_isolate_deployments(redis_url: str) -> None:
    with RedisTraceSink(redis_url, prefix="a") as a, RedisTraceSink(redis_url, prefix="b") as b:
        a.write([make_event()])
        assert b.events() == [] and b.runs() == []


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
