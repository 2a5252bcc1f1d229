"""Conformance of `VersionedMemory` on every backend: the API, commits, conflicts, history."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import pytest
from langgraph.store.base import BaseStore, Op, PutOp, Result
from memory_backends import (
    PREFS,
    MemoryFactory,
    memory_factory,  # noqa: F401 (the backend fixture)
    put,
    scope,
)

from memory import (
    Commit,
    CommitResult,
    MemoryContractError,
    MemoryScope,
    MemorySession,
    VersionedMemory,
)
from memory.core import Staged
from memory.layout import ns_of, version_key

ACME = scope()
OTHER = scope(agent="billing-bot")


@pytest.fixture
def memory(memory_factory: MemoryFactory) -> VersionedMemory:  # noqa: F811
    """A handle on a fresh memory of the backend (last writer wins everywhere)."""
    return memory_factory()


def texts(memory: VersionedMemory, who: MemoryScope, key: str, ns: tuple[str, ...] = PREFS) -> list:
    """The `text` of every version of a record, oldest first (None for tombstones)."""
    return [r.value["text"] if r.value else None for r in memory.history(who, ns, key)]


class StallingStore(BaseStore):
    """A store that lets a test stall chosen batches (to order a race) and passes on the rest."""

    def __init__(self, inner: BaseStore, stall: Callable[[list[Op]], None]) -> None:
        self.inner, self.stall = inner, stall

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        self.stall(ops)
        return self.inner.batch(ops)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await self.inner.abatch(ops)


def run_threads(count: int, work: Callable[[int, threading.Barrier], None]) -> None:
    """Run `work(i, barrier)` on `count` threads released together; re-raise the first error."""
    barrier, errors = threading.Barrier(count), []

    def guarded(index: int) -> None:
        try:
            work(index, barrier)
        except BaseException as error:  # the test thread reports it
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    if errors:
        raise errors[0]


# -- remember, get, forget ---------------------------------------------------------------------


def test_remember_then_get_returns_value_tags_and_lineage(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory = memory_factory()
    writer = MemoryScope(
        tenant="acme", agent="triage", purposes=frozenset({"support"}), run_id="run-7",
        decision_id="dec-3",
    )  # fmt: skip
    result = memory.remember(
        writer, PREFS, "c-42", {"text": "prefers email", "channel": "email"},
        purpose="support", retention="permanent", sensitivity="internal", source="ticket:T01",
    )  # fmt: skip
    assert result.status == "committed" and result.commit is not None
    record = memory.get(writer, PREFS, "c-42")
    assert record is not None
    assert record.value == {"text": "prefers email", "channel": "email"}
    assert (record.namespace, record.key, record.version) == (PREFS, "c-42", 1)
    assert (record.tags.purpose, record.tags.retention, record.tags.sensitivity) == (
        "support", "permanent", "internal",
    )  # fmt: skip
    lineage = record.tags.lineage
    assert (lineage.source, lineage.run_id, lineage.decision_id) == ("ticket:T01", "run-7", "dec-3")
    assert record.author == "triage"
    assert record.commit_id == result.commit.id
    assert record.written_at == memory_factory.clock()
    assert record.expires_at is None and record.tier == "long" and not record.deleted


def test_each_write_of_a_key_is_the_next_version(memory: VersionedMemory) -> None:
    for text in ("one", "two", "three"):
        assert put(memory, ACME, "k", {"text": text}).ok
    record = memory.get(ACME, PREFS, "k")
    assert record is not None and record.version == 3 and record.value == {"text": "three"}
    assert [r.version for r in memory.history(ACME, PREFS, "k")] == [1, 2, 3]
    assert texts(memory, ACME, "k") == ["one", "two", "three"]


def test_namespaces_and_keys_are_exact(memory: VersionedMemory) -> None:
    spaces = [("crm", "prefs"), ("crm", "pref"), ("runs", "running"), ("runs", "run"),
              ("user:42", "a+b@c-d"), ("crm", "prefs", "x")]  # fmt: skip
    for ns in spaces:
        put(memory, ACME, "k", {"text": "/".join(ns)}, namespace=ns)
    put(memory, ACME, "k.v2 (draft)", {"text": "odd key"})
    for ns in spaces:
        record = memory.get(ACME, ns, "k")
        assert record is not None and record.value == {"text": "/".join(ns)}, ns
        assert record.version == 1 and len(memory.history(ACME, ns, "k")) == 1
    assert memory.get(ACME, PREFS, "k.v2 (draft)").value == {"text": "odd key"}  # type: ignore[union-attr]


def test_forget_writes_a_tombstone_and_a_later_write_continues(memory: VersionedMemory) -> None:
    put(memory, ACME, "k", {"text": "one"})
    put(memory, ACME, "k", {"text": "two"})
    result = memory.forget(ACME, PREFS, "k")
    assert result.status == "committed" and result.commit is not None
    (change,) = result.commit.changes
    assert (change.op, change.version, change.previous_version) == ("delete", 3, 2)
    assert memory.get(ACME, PREFS, "k") is None
    assert memory.recall(ACME, namespace=PREFS) == []
    tomb = memory.history(ACME, PREFS, "k")[-1]
    assert (tomb.version, tomb.deleted, tomb.value) == (3, True, None)
    assert texts(memory, ACME, "k") == ["one", "two", None]
    put(memory, ACME, "k", {"text": "back"})
    record = memory.get(ACME, PREFS, "k")
    assert record is not None and record.version == 4 and record.value == {"text": "back"}


def test_forgetting_what_is_not_there_is_empty(memory: VersionedMemory) -> None:
    assert memory.forget(ACME, PREFS, "never").status == "empty"
    put(memory, ACME, "k", {"text": "one"})
    memory.forget(ACME, PREFS, "k")
    result = memory.forget(ACME, PREFS, "k")
    assert result.status == "empty" and result.commit is None and result.ok
    assert len(memory.commits(ACME)) == 2


# -- sessions and commits ----------------------------------------------------------------------


def test_a_session_writes_one_commit_and_commits_chain(memory: VersionedMemory) -> None:
    with memory.session(ACME, "learn from T01") as cycle:
        cycle.remember(PREFS, "a", {"text": "a"}, purpose="support", retention="permanent",
                       sensitivity="internal")  # fmt: skip
        cycle.remember(PREFS, "b", {"text": "b"}, purpose="support", retention="case",
                       sensitivity="internal")  # fmt: skip
        cycle.remember(("crm", "notes"), "c", {"text": "c"}, purpose="support",
                       retention="permanent", sensitivity="public")  # fmt: skip
        assert memory.get(ACME, PREFS, "a") is None  # staged, not written
    assert cycle.result is not None and cycle.result.status == "committed"
    first = cycle.result.commit
    assert first is not None
    assert {(c.namespace, c.key, c.op, c.version) for c in first.changes} == {
        (PREFS, "a", "put", 1), (PREFS, "b", "put", 1), (("crm", "notes"), "c", "put", 1),
    }  # fmt: skip
    assert (first.seq, first.parent, first.author, first.run_id, first.message) == (
        1, None, "triage", "run-1", "learn from T01",
    )  # fmt: skip
    for ns, key in ((PREFS, "a"), (PREFS, "b"), (("crm", "notes"), "c")):
        record = memory.get(ACME, ns, key)
        assert record is not None and record.commit_id == first.id
    later = [put(memory, ACME, "a", {"text": f"a{n}"}).commit for n in range(3)]
    listed = memory.commits(ACME)
    assert [c.id for c in listed] == [first.id, *(c.id for c in later if c)]
    assert [c.seq for c in listed] == [1, 2, 3, 4]
    assert [c.parent for c in listed] == [None, *(c.id for c in listed[:-1])]
    assert len({c.id for c in listed}) == 4
    assert memory.commit_of(ACME, first.id) == first


def test_an_error_inside_a_session_writes_nothing(memory: VersionedMemory) -> None:
    with pytest.raises(RuntimeError, match="model failed"), memory.session(ACME) as cycle:
        cycle.remember(PREFS, "a", {"text": "a"}, purpose="support", retention="permanent",
                       sensitivity="internal")  # fmt: skip
        raise RuntimeError("model failed")
    assert memory.get(ACME, PREFS, "a") is None
    assert memory.commits(ACME) == [] and memory.log.head("acme") is None


def test_a_key_staged_twice_keeps_the_last_value(memory: VersionedMemory) -> None:
    with memory.session(ACME) as cycle:
        for text in ("first", "last"):
            cycle.remember(PREFS, "k", {"text": text}, purpose="support",
                           retention="permanent", sensitivity="internal")  # fmt: skip
    assert cycle.result is not None and cycle.result.commit is not None
    assert len(cycle.result.commit.changes) == 1
    record = memory.get(ACME, PREFS, "k")
    assert record is not None and record.value == {"text": "last"} and record.version == 1


def test_a_session_records_the_versions_it_read(memory: VersionedMemory) -> None:
    put(memory, ACME, "a", {"text": "alpha"})
    put(memory, ACME, "a", {"text": "alpha two"})
    put(memory, ACME, "b", {"text": "beta"})
    with memory.session(ACME) as cycle:
        record = cycle.get(PREFS, "a")
        cycle.recall("beta", namespace=PREFS, limit=1)
    assert record is not None
    assert [(r.key, r.version, r.commit_id) for r in cycle.reads][:1] == [
        ("a", 2, record.commit_id)
    ]
    assert [r.key for r in cycle.reads][1:] == ["b"]
    assert cycle.result is not None and cycle.result.status == "empty"


def test_commit_ids_are_in_commits_changes_and_records(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory, ids = memory_factory(), []
    for n in range(6):
        memory_factory.clock.advance(1)
        result = put(memory, ACME, f"k{n % 2}", {"text": str(n)})
        assert result.commit is not None
        ids.append(result.commit.id)
        assert memory.get(ACME, PREFS, f"k{n % 2}").commit_id == result.commit.id  # type: ignore[union-attr]
    assert len(set(ids)) == 6
    assert [r.commit_id for r in memory.history(ACME, PREFS, "k0")] == ids[0::2]
    assert [hit.record.commit_id for hit in memory.recall(ACME, limit=5)] == [ids[5], ids[4]]


# -- recall ------------------------------------------------------------------------------------


FACTS = {
    "contact": "prefers email contact in the morning",
    "address": "billing address is in Berlin Germany",
    "colour": "favourite colour is forest green",
    "shipping": "ships orders by express courier",
}


def test_recall_ranks_the_record_sharing_words_with_the_query_first(
    memory: VersionedMemory,
) -> None:
    for key, text in FACTS.items():
        put(memory, ACME, key, {"text": text})
    for query, best in (("email in the morning", "contact"), ("express courier", "shipping"),
                        ("Berlin billing address", "address")):  # fmt: skip
        hits = memory.recall(ACME, query)
        assert hits[0].record.key == best, (query, [h.record.key for h in hits])
        scores = [hit.score for hit in hits]
        assert all(s is not None for s in scores)
        assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]


def test_recall_filters_by_namespace_prefix_label_by_label(memory: VersionedMemory) -> None:
    put(memory, ACME, "p", {"text": "pref"}, namespace=("crm", "prefs"))
    put(memory, ACME, "n", {"text": "note"}, namespace=("crm", "notes"))
    put(memory, ACME, "b", {"text": "bill"}, namespace=("billing",))
    put(memory, ACME, "x", {"text": "lookalike"}, namespace=("crmx", "prefs"))
    put(memory, ACME, "d", {"text": "deeper"}, namespace=("crm", "prefs", "old"))

    def keys(*ns: str, query: str | None = None) -> set[str]:
        return {hit.record.key for hit in memory.recall(ACME, query, namespace=ns)}

    assert keys("crm") == {"p", "n", "d"}
    assert keys("crm", "prefs") == {"p", "d"}
    assert keys("crm", "prefs", "old") == {"d"}
    assert keys("crm", query="lookalike") == {"p", "n", "d"}
    assert keys("billing") == {"b"}
    assert keys() == {"p", "n", "b", "x", "d"}
    hit = memory.recall(ACME, "deeper", namespace=("crm",))[0]
    assert hit.record.namespace == ("crm", "prefs", "old")


def test_recall_returns_at_most_limit(memory: VersionedMemory) -> None:
    with memory.session(ACME) as cycle:
        for n in range(7):
            cycle.remember(PREFS, f"k{n}", {"text": f"fact number {n}"}, purpose="support",
                           retention="permanent", sensitivity="internal")  # fmt: skip
    assert len(memory.recall(ACME, "fact number", limit=3)) == 3
    assert len(memory.recall(ACME, limit=3)) == 3
    assert len(memory.recall(ACME, limit=50)) == 7
    with pytest.raises(MemoryContractError, match="limit"):
        memory.recall(ACME, limit=0)


def test_recall_filters_on_tag_fields(memory: VersionedMemory) -> None:
    put(memory, ACME, "a", {"text": "from the crm"}, source="crm")
    put(memory, ACME, "b", {"text": "from a ticket"}, source="ticket:T01")
    assert [h.record.key for h in memory.recall(ACME, filter={"source": "crm"})] == ["a"]
    hits = memory.recall(ACME, "from a ticket", filter={"source": "crm"})
    assert [h.record.key for h in hits] == ["a"]


def test_recall_filters_on_value_fields(memory: VersionedMemory) -> None:
    put(memory, ACME, "a", {"text": "customer on the pro plan", "plan": "pro"})
    put(memory, ACME, "b", {"text": "customer on the free plan", "plan": "free"})
    assert [h.record.key for h in memory.recall(ACME, filter={"plan": "pro"})] == ["a"]
    assert [h.record.key for h in memory.recall(ACME, "free plan", filter={"plan": "pro"})] == ["a"]


def test_recall_without_query_is_newest_first(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory = memory_factory()
    for n in range(20):  # more than one store page, written oldest first
        memory_factory.clock.advance(60)
        put(memory, ACME, f"k{n:02}", {"text": f"fact {n}"})
    hits = memory.recall(ACME, limit=3)
    assert [hit.record.key for hit in hits] == ["k19", "k18", "k17"]
    assert all(hit.score is None for hit in hits)
    memory_factory.clock.advance(60)
    put(memory, ACME, "k00", {"text": "rewritten"})
    assert memory.recall(ACME, limit=1)[0].record.key == "k00"


@pytest.mark.timeout(10)  # a store whose vector search ignores `offset` makes recall page forever
def test_hidden_records_do_not_count_towards_the_limit(memory: VersionedMemory) -> None:
    put(memory, ACME, "seen-1", {"text": "refund policy for support"})
    put(memory, ACME, "seen-2", {"text": "refund window is thirty days"})
    with memory.session(ACME) as cycle:  # newer and closer to the query, but for billing only
        for n in range(40):
            cycle.remember(PREFS, f"hidden-{n}", {"text": f"refund policy refund {n}"},
                           purpose="billing", retention="permanent",
                           sensitivity="internal")  # fmt: skip
    assert {h.record.key for h in memory.recall(ACME, "refund policy", limit=2)} == {
        "seen-1", "seen-2",
    }  # fmt: skip
    assert {h.record.key for h in memory.recall(ACME, limit=2)} == {"seen-1", "seen-2"}


# -- conflicts ---------------------------------------------------------------------------------


def stale_session_write(
    memory: VersionedMemory, key: str = "k"
) -> tuple[MemorySession, CommitResult]:
    """ACME reads `key` (v1), OTHER writes v2, then ACME's session writes: its result."""
    put(memory, ACME, key, {"text": "v1"})
    cycle = memory.session(ACME)
    read = cycle.get(PREFS, key)
    assert read is not None and read.version == 1
    assert put(memory, OTHER, key, {"text": "theirs"}).ok
    cycle.remember(PREFS, key, {"text": "mine"}, purpose="support", retention="permanent",
                   sensitivity="internal")  # fmt: skip
    return cycle, cycle.commit()


def test_cas_refuses_a_stale_write_and_a_reread_succeeds(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory = memory_factory(conflicts={"crm": "cas"})
    cycle, result = stale_session_write(memory)
    assert result.status == "conflict" and not result.ok and result.commit is None
    (conflict,) = result.conflicts
    assert (conflict.key, conflict.expected_version, conflict.actual_version) == ("k", 1, 2)
    assert (conflict.actual_author, conflict.policy) == ("billing-bot", "cas")
    assert texts(memory, ACME, "k") == ["v1", "theirs"]
    assert len(memory.commits(ACME)) == 2
    reread = cycle.get(PREFS, "k")
    assert reread is not None and reread.value == {"text": "theirs"}
    cycle.remember(PREFS, "k", {"text": "mine, after reading theirs"}, purpose="support",
                   retention="permanent", sensitivity="internal")  # fmt: skip
    assert cycle.commit().status == "committed"
    assert texts(memory, ACME, "k") == ["v1", "theirs", "mine, after reading theirs"]


def test_lww_overwrites_reports_it_and_keeps_both_versions(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory = memory_factory(conflicts={"crm": "cas", ("crm", "prefs"): "lww"})
    _, result = stale_session_write(memory)
    assert result.status == "committed" and result.ok
    (conflict,) = result.conflicts
    assert (conflict.expected_version, conflict.actual_version, conflict.policy) == (1, 2, "lww")
    assert conflict.actual_author == "billing-bot"
    assert texts(memory, ACME, "k") == ["v1", "theirs", "mine"]
    authors = [r.author for r in memory.history(ACME, PREFS, "k")]
    assert authors == ["triage", "billing-bot", "triage"]


def test_escalate_files_a_conflict_and_mine_settles_it(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory = memory_factory(conflicts={"crm": "escalate"})
    _, result = stale_session_write(memory)
    assert result.status == "escalated" and result.commit is None
    (conflict,) = result.conflicts
    assert conflict.conflict_id and conflict.policy == "escalate"
    assert memory.get(ACME, PREFS, "k").value == {"text": "theirs"}  # type: ignore[union-attr]
    (filed,) = memory.open_conflicts(ACME)
    assert filed.conflict_id == conflict.conflict_id
    assert (filed.key, filed.expected_version, filed.actual_version) == ("k", 1, 2)
    person = scope(agent="human:ana")
    settled = memory.settle(person, conflict.conflict_id, keep="mine", reason="customer said so")
    assert settled.status == "committed" and settled.commit is not None
    record = memory.get(ACME, PREFS, "k")
    assert record is not None and record.value == {"text": "mine"} and record.version == 3
    assert record.author == "human:ana"
    assert memory.open_conflicts(ACME) == []
    with pytest.raises(MemoryContractError, match="no open memory conflict"):
        memory.settle(person, conflict.conflict_id, keep="mine", reason="again")


def test_escalate_settled_as_theirs_keeps_the_current_value(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory = memory_factory(conflicts={"crm": "escalate"})
    _, result = stale_session_write(memory)
    conflict_id = result.conflicts[0].conflict_id
    assert conflict_id is not None
    settled = memory.settle(scope(agent="human:ana"), conflict_id, keep="theirs", reason="stale")
    assert settled.status == "empty" and settled.commit is None
    assert texts(memory, ACME, "k") == ["v1", "theirs"]
    assert len(memory.commits(ACME)) == 2
    assert memory.open_conflicts(ACME) == []


def blind_session_writes(memory: VersionedMemory) -> tuple[CommitResult, CommitResult]:
    """Two agents stage the same key without reading it; ACME commits first, then OTHER."""
    put(memory, ACME, "k", {"text": "v1"})
    mine, theirs = memory.session(ACME), memory.session(OTHER)
    for cycle, text in ((mine, "mine"), (theirs, "theirs")):
        cycle.remember(PREFS, "k", {"text": text}, purpose="support", retention="permanent",
                       sensitivity="internal")  # fmt: skip
    return mine.commit(), theirs.commit()


@pytest.mark.parametrize(
    ("policy", "status"), [("cas", "conflict"), ("escalate", "escalated"), ("lww", "committed")]
)
def test_a_blind_write_overtaken_before_its_commit_is_a_conflict(
    memory_factory: MemoryFactory,  # noqa: F811
    policy: str,
    status: str,
) -> None:
    memory = memory_factory(conflicts={"crm": policy})
    first, second = blind_session_writes(memory)
    assert first.status == "committed" and first.conflicts == ()
    assert second.status == status
    (conflict,) = second.conflicts
    assert (conflict.expected_version, conflict.actual_version) == (1, 2)
    assert (conflict.actual_author, conflict.policy) == ("triage", policy)
    expected = ["v1", "mine", "theirs"] if policy == "lww" else ["v1", "mine"]
    assert texts(memory, ACME, "k") == expected  # an update is refused or reported, never lost


def test_explicit_expected_version_is_compare_and_set(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory = memory_factory(conflicts={"crm": "cas"})
    assert put(memory, ACME, "k", {"text": "v1"}, expected_version=0).ok  # create only
    assert put(memory, ACME, "k", {"text": "again"}, expected_version=0).status == "conflict"
    assert put(memory, ACME, "k", {"text": "v2"}, expected_version=1).ok
    stale = put(memory, ACME, "k", {"text": "stale"}, expected_version=1)
    assert stale.status == "conflict" and stale.conflicts[0].actual_version == 2
    assert memory.forget(ACME, PREFS, "k", expected_version=1).status == "conflict"
    assert texts(memory, ACME, "k") == ["v1", "v2"]
    assert memory.forget(ACME, PREFS, "k", expected_version=2).status == "committed"
    assert memory.get(ACME, PREFS, "k") is None


# -- concurrency -------------------------------------------------------------------------------

THREADS, ROUNDS = 8, 4


def test_concurrent_cas_increments_lose_no_update(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory, counter = memory_factory(conflicts={"counters": "cas"}), ("counters",)

    def increment(index: int, barrier: threading.Barrier) -> None:
        me = scope(agent=f"agent-{index}")
        barrier.wait()
        for _ in range(ROUNDS):
            while True:
                with memory.session(me) as cycle:
                    record = cycle.get(counter, "n")
                    value = record.value["n"] if record and record.value else 0
                    cycle.remember(counter, "n", {"n": value + 1}, purpose="support",
                                   retention="permanent", sensitivity="internal")  # fmt: skip
                assert cycle.result is not None
                if cycle.result.ok:
                    break
                assert cycle.result.status == "conflict"  # someone else won: read again

    run_threads(THREADS, increment)
    record = memory.get(ACME, counter, "n")
    assert record is not None
    assert record.value == {"n": THREADS * ROUNDS} and record.version == THREADS * ROUNDS
    values = [r.value["n"] for r in memory.history(ACME, counter, "n")]  # type: ignore[index]
    assert values == list(range(1, THREADS * ROUNDS + 1))


def test_concurrent_blind_lww_writes_are_all_versions(memory: VersionedMemory) -> None:
    def write(index: int, barrier: threading.Barrier) -> None:
        me = scope(agent=f"agent-{index}")
        barrier.wait()
        for round_ in range(ROUNDS):
            assert put(memory, me, "k", {"text": f"{index}-{round_}"}).status == "committed"

    run_threads(THREADS, write)
    history = memory.history(ACME, PREFS, "k")
    assert [r.version for r in history] == list(range(1, THREADS * ROUNDS + 1))
    written = {f"{i}-{r}" for i in range(THREADS) for r in range(ROUNDS)}
    assert {r.value["text"] for r in history} == written  # type: ignore[index]
    assert len(memory.commits(ACME, limit=100)) == THREADS * ROUNDS
    assert [c.seq for c in memory.commits(ACME, limit=100)] == list(range(1, THREADS * ROUNDS + 1))


def test_a_slow_projector_never_rolls_back_a_newer_version(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    slow, fast = memory_factory(conflicts={"crm": "cas"}), memory_factory(conflicts={"crm": "cas"})
    put(slow, ACME, "k", {"text": "one"})
    half_commit(slow, "two", append=True)  # accepted, not yet projected
    reached, go = threading.Event(), threading.Event()
    projector = threading.Thread(target=slow.get, args=(ACME, PREFS, "k"))

    def stall(ops: list[Op]) -> None:
        if threading.current_thread() is projector and any(
            isinstance(op, PutOp) and op.namespace[1] == "memory" for op in ops
        ):
            reached.set()  # it checked that v2 is newer than what is in place; now it stalls
            go.wait()

    slow.projector.long = StallingStore(slow.projector.long, stall)
    projector.start()
    assert reached.wait(timeout=30)
    writer = threading.Thread(target=put, args=(fast, OTHER, "k", {"text": "three"}))
    writer.start()
    writer.join(timeout=2)  # returns at once today; a fix that serialises projection waits
    go.set()
    projector.join(timeout=30)
    writer.join(timeout=30)
    assert texts(fast, ACME, "k") == ["one", "two", "three"]
    assert fast.get(ACME, PREFS, "k").value == {"text": "three"}  # type: ignore[union-attr]
    with fast.session(ACME) as cycle:  # a careful CAS writer builds on what it reads
        seen = cycle.get(PREFS, "k")
        cycle.remember(PREFS, "k", {"text": f"after {seen.value['text']}"}, purpose="support",  # type: ignore[union-attr, index]
                       retention="permanent", sensitivity="internal")  # fmt: skip
    assert texts(fast, ACME, "k") == ["one", "two", "three", "after three"]


# -- history, diff, as_of, revert --------------------------------------------------------------


def test_diff_lists_added_removed_and_changed(memory: VersionedMemory) -> None:
    with memory.session(ACME) as first:
        for key in ("a", "b"):
            first.remember(PREFS, key, {"text": key}, purpose="support",
                           retention="permanent", sensitivity="internal")  # fmt: skip
    with memory.session(ACME) as second:
        second.remember(PREFS, "a", {"text": "a2"}, purpose="support", retention="permanent",
                        sensitivity="internal")  # fmt: skip
        second.forget(PREFS, "b")
        second.remember(PREFS, "c", {"text": "c"}, purpose="support", retention="permanent",
                        sensitivity="internal")  # fmt: skip
    c1 = first.result.commit.id  # type: ignore[union-attr]
    c2 = second.result.commit.id  # type: ignore[union-attr]
    diff = memory.diff(ACME, c1, c2)
    assert (diff.base, diff.target, diff.commits) == (c1, c2, (c2,))
    by_key = {entry.key: entry for entry in diff.entries}
    assert {key: entry.status for key, entry in by_key.items()} == {
        "a": "changed", "b": "removed", "c": "added",
    }  # fmt: skip
    assert by_key["a"].before.value == {"text": "a"}  # type: ignore[union-attr]
    assert by_key["a"].after.value == {"text": "a2"}  # type: ignore[union-attr]
    assert by_key["b"].after is None and by_key["c"].before is None
    from_empty = memory.diff(ACME, None, c1)
    assert {(e.key, e.status) for e in from_empty.entries} == {("a", "added"), ("b", "added")}
    whole = memory.diff(ACME, None, c2)
    assert {(e.key, e.status) for e in whole.entries} == {("a", "added"), ("c", "added")}
    assert whole.commits == (c1, c2)
    assert memory.diff(ACME, c2, c2).entries == ()
    with pytest.raises(MemoryContractError, match="after"):
        memory.diff(ACME, c2, c1)


def test_as_of_shows_memory_as_it_stood(memory: VersionedMemory) -> None:
    c1 = put(memory, ACME, "a", {"text": "a1"}).commit
    c2 = put(memory, ACME, "b", {"text": "b1"}).commit
    put(memory, ACME, "a", {"text": "a2"})
    c4 = memory.forget(ACME, PREFS, "b").commit
    assert c1 and c2 and c4
    then = memory.as_of(ACME, c1.id)
    assert then.get(PREFS, "a").value == {"text": "a1"}  # type: ignore[union-attr]
    assert then.get(PREFS, "b") is None
    assert {(r.key, r.value["text"]) for r in memory.as_of(ACME, c2.id).records()} == {  # type: ignore[index]
        ("a", "a1"), ("b", "b1"),
    }  # fmt: skip
    assert {(r.key, r.version) for r in memory.as_of(ACME, c4.id).records()} == {("a", 2)}
    assert memory.get(ACME, PREFS, "a").value == {"text": "a2"}  # type: ignore[union-attr]


def test_revert_restores_the_previous_value_by_a_new_commit(memory: VersionedMemory) -> None:
    put(memory, ACME, "k", {"text": "right"})
    wrong = put(memory, ACME, "k", {"text": "wrong"}).commit
    assert wrong is not None
    result = memory.revert(ACME, wrong.id, reason="bad learning episode")
    assert result.status == "committed" and result.commit is not None
    assert result.commit.message.startswith(f"revert {wrong.id}")
    record = memory.get(ACME, PREFS, "k")
    assert record is not None and record.value == {"text": "right"} and record.version == 3
    assert texts(memory, ACME, "k") == ["right", "wrong", "right"]
    again = memory.revert(ACME, result.commit.id, reason="it was right after all")
    assert again.status == "committed"
    assert texts(memory, ACME, "k") == ["right", "wrong", "right", "wrong"]


def test_reverting_a_first_write_deletes_the_key(memory: VersionedMemory) -> None:
    put(memory, ACME, "keep", {"text": "keep"})
    created = put(memory, ACME, "new", {"text": "new"}).commit
    assert created is not None
    assert memory.revert(ACME, created.id, reason="hallucinated").status == "committed"
    assert memory.get(ACME, PREFS, "new") is None
    assert memory.history(ACME, PREFS, "new")[-1].deleted
    assert memory.get(ACME, PREFS, "keep") is not None


def test_reverting_a_commit_changed_since_is_a_conflict(memory: VersionedMemory) -> None:
    first = put(memory, ACME, "k", {"text": "one"}).commit
    put(memory, ACME, "k", {"text": "two"})
    assert first is not None
    result = memory.revert(ACME, first.id, reason="too late")
    assert result.status == "conflict" and result.commit is None
    assert result.conflicts[0].actual_version == 2
    assert texts(memory, ACME, "k") == ["one", "two"]
    assert len(memory.commits(ACME)) == 2


def test_commits_lists_the_log_in_pages(memory: VersionedMemory) -> None:
    ids = [put(memory, ACME, f"k{n}", {"text": str(n)}).commit.id for n in range(5)]  # type: ignore[union-attr]
    assert [c.id for c in memory.commits(ACME)] == ids
    assert [c.id for c in memory.commits(ACME, after=2, limit=2)] == ids[2:4]
    assert memory.commits(ACME, after=5) == []
    assert memory.commits(scope("globex")) == []


def test_another_tenants_commit_id_is_unknown(memory: VersionedMemory) -> None:
    theirs = put(memory, scope("globex"), "k", {"text": "globex secret"}).commit
    put(memory, ACME, "k", {"text": "acme"})
    assert theirs is not None
    for call in (
        lambda: memory.commit_of(ACME, theirs.id),
        lambda: memory.as_of(ACME, theirs.id),
        lambda: memory.diff(ACME, None, theirs.id),
        lambda: memory.revert(ACME, theirs.id, reason="reach across"),
        lambda: memory.commit_of(ACME, "c-not-a-commit"),
    ):
        with pytest.raises(MemoryContractError, match="no commit"):
            call()
    assert memory.get(scope("globex"), PREFS, "k").value == {"text": "globex secret"}  # type: ignore[union-attr]


# -- crash recovery ----------------------------------------------------------------------------


def half_commit(memory: VersionedMemory, text: str, *, append: bool) -> Commit:
    """Write a commit of `k` the way `commit()` does but stop after the log append (or
    before it): a writer that died mid-commit. Returns the commit."""
    staged = [Staged(namespace=PREFS, key="k", op="put", value={"text": text},
                     tags=ACME.tags(purpose="support", retention="permanent",
                                    sensitivity="internal", source="crm"))]  # fmt: skip
    head = memory.catch_up("acme")
    commit, records, _ = memory._prepare(ACME, staged, {}, None, head, "crash")  # type: ignore[misc]
    memory.projector.write_pending("acme", commit, records)
    if append:
        assert memory.log.append("acme", commit.seq, commit.id)
    return commit


def test_a_commit_appended_but_not_projected_is_caught_up(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    crashed = memory_factory()
    put(crashed, ACME, "k", {"text": "old value"})
    commit = half_commit(crashed, "new value after crash", append=True)
    raw = crashed.long.get(ns_of("acme", "memory", PREFS), "k")
    assert raw is not None and raw.value["version"] == 1  # the projection never ran
    restarted = memory_factory()
    record = restarted.get(ACME, PREFS, "k")
    assert record is not None and record.value == {"text": "new value after crash"}
    assert record.version == 2 and record.commit_id == commit.id
    assert restarted.recall(ACME, "new value after crash")[0].record.version == 2
    assert [r.commit_id for r in restarted.history(ACME, PREFS, "k")][-1] == commit.id
    assert put(restarted, ACME, "k", {"text": "next"}).commit.seq == 3  # type: ignore[union-attr]


def test_an_orphan_commit_never_appended_is_invisible(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    crashed = memory_factory()
    put(crashed, ACME, "k", {"text": "old value"})
    orphan = half_commit(crashed, "orphan value", append=False)
    assert crashed.long.get(ns_of("acme", "history", PREFS), version_key("k", orphan.id))
    restarted = memory_factory()
    assert restarted.get(ACME, PREFS, "k").value == {"text": "old value"}  # type: ignore[union-attr]
    assert texts(restarted, ACME, "k") == ["old value"]
    assert [c.seq for c in restarted.commits(ACME)] == [1]
    with pytest.raises(MemoryContractError):
        restarted.commit_of(ACME, orphan.id)
    later = put(restarted, ACME, "k", {"text": "later"}).commit
    assert later is not None and later.seq == 2 and later.id != orphan.id
    assert texts(restarted, ACME, "k") == ["old value", "later"]


def test_a_handle_searches_what_another_handle_wrote(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    """Two processes on one backend: the reader's semantic index (in-process for the embedded
    store) learns the other's writes and ranks them, instead of missing them."""
    reader, writer = memory_factory(), memory_factory()
    put(reader, ACME, "old", {"text": "the desk lamp flickers"})
    assert [h.record.key for h in reader.recall(ACME, "desk lamp")] == ["old"]  # index built
    put(writer, ACME, "new", {"text": "coffee grinder arrived broken"})
    put(writer, ACME, "old", {"text": "the invoice is missing"})
    hits = reader.recall(ACME, "broken coffee grinder")
    assert hits[0].record.key == "new" and hits[0].score is not None
    assert reader.recall(ACME, "desk lamp flickers")[0].record.key != "old"  # no stale vector
    top = reader.recall(ACME, "the invoice is missing")[0]
    assert top.record.key == "old" and top.score is not None
