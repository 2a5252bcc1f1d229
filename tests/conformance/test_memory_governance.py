"""Conformance of the memory contract on every backend: tags, purpose, clearance, tenant wall,
retention, promotion and source freshness."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from memory_backends import (
    DAY,
    PREFS,
    MemoryFactory,
    memory_factory,  # noqa: F401 (the backend fixture)
    put,
    scope,
)

from memory import (
    FreshnessRule,
    MemoryContractError,
    MemoryScope,
    MemoryTags,
    MissingTagsError,
    SourceMonitor,
    VersionedMemory,
)
from memory.layout import all_items, ns_of

ACME = scope()
CTX = ("ctx",)


@pytest.fixture
def memory(memory_factory: MemoryFactory) -> VersionedMemory:  # noqa: F811
    """A handle on a fresh memory of the backend."""
    return memory_factory()


def keys(memory: VersionedMemory, who: MemoryScope, query: str | None = None, **kw: Any) -> set:
    """Keys of every record `who` recalls."""
    return {hit.record.key for hit in memory.recall(who, query, limit=50, **kw)}


def assert_nothing_written(memory: VersionedMemory) -> None:
    assert memory.commits(ACME) == [] and memory.log.head("acme") is None
    assert memory.recall(ACME) == []


# -- the tags every write carries ---------------------------------------------------------------


def test_missing_tags_are_refused_by_name() -> None:
    with pytest.raises(MissingTagsError) as caught:
        MemoryTags.from_mapping({"retention": "case", "sensitivity": "internal", "run_id": "r1"})
    assert "missing tag(s) purpose, source." in str(caught.value)
    with pytest.raises(MissingTagsError, match=r"missing tag\(s\) run_id\."):
        MemoryTags.from_mapping(
            {"purpose": "support", "retention": "case", "sensitivity": "internal",
             "source": "crm", "run_id": "  "}
        )  # fmt: skip


def test_a_write_without_its_tags_writes_nothing(memory: VersionedMemory) -> None:
    with pytest.raises(MissingTagsError, match=r"missing tag\(s\) purpose\."):
        put(memory, ACME, "k", {"text": "x"}, purpose=" ")
    with pytest.raises(MissingTagsError, match=r"missing tag\(s\) sensitivity\."):
        put(memory, ACME, "k", {"text": "x"}, sensitivity="")
    with pytest.raises(MissingTagsError, match=r"missing tag\(s\) run_id\."):
        put(memory, scope(run_id=""), "k", {"text": "x"})
    with pytest.raises(MissingTagsError), memory.session(ACME) as cycle:
        cycle.stage(PREFS, "k", {"text": "x"}, tags=MemoryTags.from_mapping({"purpose": "x"}))
    assert_nothing_written(memory)


def test_unknown_retention_and_sensitivity_are_refused(memory: VersionedMemory) -> None:
    with pytest.raises(MemoryContractError, match="unknown retention class 'forever'"):
        put(memory, ACME, "k", {"text": "x"}, retention="forever")
    with pytest.raises(MemoryContractError, match="unknown sensitivity 'secret'"):
        put(memory, ACME, "k", {"text": "x"}, sensitivity="secret")
    with pytest.raises(MemoryContractError, match="unknown sensitivity 'top'"):
        scope(clearance="top")  # type: ignore[arg-type]
    assert_nothing_written(memory)


BAD_NAMESPACES = [("..",), ("_x",), ("a.b",), (), ("",), ("a",) * 7, ("a/b",), ("a b",)]


def test_bad_namespaces_are_refused_on_every_call(memory: VersionedMemory) -> None:
    for ns in BAD_NAMESPACES:
        calls: list[Callable[[], object]] = [
            functools.partial(put, memory, ACME, "k", {"text": "x"}, namespace=ns),
            functools.partial(memory.forget, ACME, ns, "k"),
            functools.partial(memory.get, ACME, ns, "k"),
            functools.partial(memory.history, ACME, ns, "k"),
        ]
        if ns:  # an empty namespace in recall means "everything of the tenant"
            calls.append(functools.partial(memory.recall, ACME, namespace=ns))
        for call in calls:
            with pytest.raises(MemoryContractError, match="namespace"):
                call()
    assert_nothing_written(memory)


def test_bad_keys_and_values_are_refused(memory: VersionedMemory) -> None:
    for key in ("a@b", "", "x" * 201, "line\nbreak"):
        with pytest.raises(MemoryContractError, match="bad memory key"):
            put(memory, ACME, key, {"text": "x"})
        with pytest.raises(MemoryContractError, match="bad memory key"):
            memory.session(ACME).get(PREFS, key)
    for value in ({"when": object()}, {"x": float("nan")}, {"s": {1, 2}}, ["not", "a", "map"]):
        with pytest.raises(MemoryContractError, match="JSON"):
            put(memory, ACME, "k", value)  # type: ignore[arg-type]
    with pytest.raises(MemoryContractError, match="limit is 64000"):
        put(memory, ACME, "k", {"text": "x" * 70_000})
    assert_nothing_written(memory)


# -- who may read -------------------------------------------------------------------------------


def test_purpose_limitation_hides_records_kept_for_other_purposes(memory: VersionedMemory) -> None:
    billing = scope(agent="billing-bot", purposes=("billing",))
    commit = put(memory, billing, "card", {"text": "card ends 4242"}, purpose="billing").commit
    put(memory, ACME, "tone", {"text": "prefers a formal tone"})
    assert commit is not None
    assert memory.get(ACME, PREFS, "card") is None
    assert keys(memory, ACME) == {"tone"} and keys(memory, ACME, "card ends 4242") == {"tone"}
    assert memory.history(ACME, PREFS, "card") == []
    assert memory.as_of(ACME, commit.id).get(PREFS, "card") is None
    assert memory.as_of(ACME, commit.id).records() == []
    assert memory.diff(ACME, None, commit.id).entries == ()
    assert memory.get(billing, PREFS, "card").value == {"text": "card ends 4242"}  # type: ignore[union-attr]
    assert keys(memory, billing) == {"card"}
    both = scope(purposes=("support", "billing"))
    assert keys(memory, both) == {"card", "tone"}


def test_readers_see_only_up_to_their_clearance(memory: VersionedMemory) -> None:
    put(memory, ACME, "public", {"text": "opening hours"}, sensitivity="public")
    put(memory, ACME, "internal", {"text": "escalation contact"}, sensitivity="internal")
    put(memory, ACME, "secret", {"text": "legal hold on account"}, sensitivity="confidential")
    put(memory, ACME, "restricted", {"text": "fraud case"}, sensitivity="restricted")
    levels = ["public", "internal", "secret", "restricted"]
    for clearance, seen in (("public", 1), ("internal", 2), ("confidential", 3),
                            ("restricted", 4)):  # fmt: skip
        reader = scope(clearance=clearance)  # type: ignore[arg-type]
        assert keys(memory, reader) == set(levels[:seen]), clearance
        assert keys(memory, reader, "legal hold on account") == set(levels[:seen]), clearance
        for key in levels[seen:]:
            assert memory.get(reader, PREFS, key) is None
            assert memory.history(reader, PREFS, key) == []


def test_another_tenant_sees_nothing_whatever_namespace_it_names(memory: VersionedMemory) -> None:
    acme = put(memory, ACME, "k", {"text": "acme private preference"}).commit
    assert acme is not None
    for tenant in ("evil", "acme2", "acme-eu"):
        other = scope(tenant, purposes=("support", "billing"), clearance="restricted")
        assert memory.get(other, PREFS, "k") is None
        assert memory.recall(other) == [] and memory.recall(other, "acme private") == []
        assert memory.history(other, PREFS, "k") == []
        assert memory.commits(other) == [] and memory.sources(other) == []
        for trick in (("acme",), ("acme", "memory"), ("acme", "memory", "crm", "prefs")):
            assert memory.get(other, trick, "k") is None
            assert memory.recall(other, namespace=trick) == []
            assert memory.history(other, trick, "k") == []
        with pytest.raises(MemoryContractError, match="no commit"):
            memory.commit_of(other, acme.id)
    evil = scope("evil")
    landed = put(
        memory, evil, "k", {"text": "planted"}, namespace=("acme", "memory", "crm", "prefs")
    )
    assert landed.ok and landed.commit is not None and landed.commit.tenant == "evil"
    record = memory.get(ACME, PREFS, "k")
    assert record is not None and record.value == {"text": "acme private preference"}
    assert record.version == 1 and [c.id for c in memory.commits(ACME)] == [acme.id]
    assert "planted" not in {hit.record.value["text"] for hit in memory.recall(ACME, "planted")}  # type: ignore[index]
    raw = memory.long.get(("evil", "memory", "acme", "memory", "crm", "prefs"), "k")
    assert raw is not None and raw.value["data"] == {"text": "planted"}
    for tenant in ("acme/../evil", "", "_acme", "a" * 65):
        with pytest.raises(MemoryContractError, match="bad tenant"):
            scope(tenant)


# -- retention and promotion --------------------------------------------------------------------


def test_expired_records_leave_reads_and_purge_removes_them(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory, clock = memory_factory(), memory_factory.clock
    put(memory, ACME, "turn", {"text": "customer is on the phone now"}, retention="session",
        namespace=CTX)  # fmt: skip
    put(memory, ACME, "keep", {"text": "customer is on the phone plan"})
    record = memory.get(ACME, CTX, "turn")
    assert record is not None and record.tier == "short" and record.expires_at == clock() + DAY
    assert memory.purge() == 0
    clock.advance(DAY + 1)
    assert memory.get(ACME, CTX, "turn") is None
    assert keys(memory, ACME) == {"keep"} and keys(memory, ACME, "on the phone now") == {"keep"}
    current, versions = ns_of("acme", "memory", CTX), ns_of("acme", "history", CTX)
    assert memory.short.get(current, "turn") is not None  # hidden, not yet purged
    assert memory.purge() == 1
    assert memory.short.get(current, "turn") is None
    assert [item.key for item in all_items(memory.short, versions)] == []
    assert memory.history(ACME, CTX, "turn") == []
    assert memory.get(ACME, PREFS, "keep") is not None
    assert len(memory.history(ACME, PREFS, "keep")) == 1
    assert len(memory.commits(ACME)) == 2  # commits keep their metadata, never values
    assert memory.purge() == 0
    put(memory, ACME, "turn", {"text": "a new call"}, retention="session", namespace=CTX)
    assert memory.get(ACME, CTX, "turn").version == 2  # type: ignore[union-attr]


def test_expired_versions_leave_history_as_of_and_diff(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory, clock = memory_factory(), memory_factory.clock
    first = put(memory, ACME, "turn", {"text": "call notes"}, retention="turn", namespace=CTX)
    second = put(memory, ACME, "turn", {"text": "more notes"}, retention="turn", namespace=CTX)
    kept = put(memory, ACME, "keep", {"text": "prefers email"})
    assert first.commit is not None and second.commit is not None and kept.commit is not None
    assert len(memory.history(ACME, CTX, "turn")) == 2
    assert memory.as_of(ACME, first.commit.id).get(CTX, "turn") is not None
    clock.advance(3601)  # `turn` keeps records for an hour
    assert memory.history(ACME, CTX, "turn") == []
    assert memory.as_of(ACME, first.commit.id).get(CTX, "turn") is None
    assert [e.key for e in memory.diff(ACME, None, kept.commit.id).entries] == ["keep"]
    with pytest.raises(MemoryContractError, match="past its retention"):
        memory.revert(ACME, second.commit.id, reason="bring the first notes back")


def test_an_escalated_conflict_expires_with_its_value(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory, clock = memory_factory(conflicts={"ctx": "escalate"}), memory_factory.clock
    put(memory, ACME, "turn", {"text": "v1"}, retention="session", namespace=CTX)
    cycle = memory.session(ACME)
    assert cycle.get(CTX, "turn") is not None
    put(memory, ACME, "turn", {"text": "theirs"}, retention="session", namespace=CTX)
    cycle.remember(CTX, "turn", {"text": "mine"}, purpose="support", retention="session",
                   sensitivity="internal")  # fmt: skip
    (conflict,) = cycle.commit().conflicts
    assert [c.conflict_id for c in memory.open_conflicts(ACME)] == [conflict.conflict_id]
    clock.advance(DAY + 1)  # the refused value's `session` retention has run out
    assert memory.open_conflicts(ACME) == []
    with pytest.raises(MemoryContractError, match="expired"):
        memory.settle(scope(agent="human:ana"), str(conflict.conflict_id), keep="mine", reason="x")
    memory.purge()
    assert all_items(memory.long, ns_of("acme", "conflicts")) == []


def test_consolidate_promotes_candidates_to_the_long_term_tier(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory, clock = memory_factory(), memory_factory.clock
    put(memory, ACME, "dark", {"text": "likes dark mode"}, retention="candidate",
        source="ticket:T01", namespace=CTX)  # fmt: skip
    put(memory, ACME, "stale", {"text": "old hunch"}, retention="candidate", namespace=CTX)
    put(memory, ACME, "turn", {"text": "just context"}, retention="turn", namespace=CTX)
    clock.advance(2 * 3600)  # `turn` (1 h) has expired, the candidates (1 day) have not
    memory.forget(ACME, CTX, "stale")
    record = memory.get(ACME, CTX, "dark")
    assert record is not None and (record.tier, record.tags.retention) == ("short", "candidate")
    result = memory.consolidate(scope(agent="consolidator", run_id="run-9"))
    assert result.status == "committed" and result.commit is not None
    assert [(c.key, c.tier, c.version) for c in result.commit.changes] == [("dark", "long", 2)]
    record = memory.get(ACME, CTX, "dark")
    assert record is not None and record.value == {"text": "likes dark mode"}
    assert (record.tier, record.tags.retention, record.version) == ("long", "profile", 2)
    assert (record.tags.lineage.source, record.tags.lineage.run_id) == ("ticket:T01", "run-9")
    assert record.expires_at == clock() + 365 * DAY
    space = ns_of("acme", "memory", CTX)
    assert memory.short.get(space, "dark") is None
    assert memory.long.get(space, "dark") is not None
    assert [(r.tier, r.tags.retention) for r in memory.history(ACME, CTX, "dark")] == [
        ("short", "candidate"), ("long", "profile"),
    ]  # fmt: skip
    assert memory.recall(ACME, "dark mode")[0].record.key == "dark"
    assert memory.consolidate(ACME).status == "empty"


# -- source freshness ---------------------------------------------------------------------------


def fresh_memory(factory: MemoryFactory, *rules: FreshnessRule) -> VersionedMemory:
    return factory(monitor=SourceMonitor(rules, clock=factory.clock))


@pytest.mark.parametrize("on_stale", ["exclude", "flag"])
def test_records_past_their_source_window_are_excluded_or_flagged(
    memory_factory: MemoryFactory,  # noqa: F811
    on_stale: str,
) -> None:
    rule = FreshnessRule(source_prefix="crm", max_age_s=3600, on_stale=on_stale)  # type: ignore[arg-type]
    memory = fresh_memory(memory_factory, rule)
    put(memory, ACME, "plan", {"text": "on the pro plan"}, source="crm:accounts")
    put(memory, ACME, "note", {"text": "asked about the pro plan"}, source="ticket:T01")
    assert [hit.stale for hit in memory.recall(ACME)] == [False, False]
    memory_factory.clock.advance(3601)
    stale = {hit.record.key: hit.stale for hit in memory.recall(ACME, "pro plan")}
    if on_stale == "exclude":
        assert stale == {"note": False}
        assert memory.get(ACME, PREFS, "plan") is None
    else:
        assert stale == {"plan": True, "note": False}
        assert memory.get(ACME, PREFS, "plan") is not None
    put(memory, ACME, "plan", {"text": "on the pro plan, confirmed"}, source="crm:accounts")
    assert {hit.record.key: hit.stale for hit in memory.recall(ACME)} == {
        "plan": False, "note": False,
    }  # fmt: skip


def test_a_silent_source_is_disabled_until_a_person_enables_it(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory = fresh_memory(memory_factory, FreshnessRule(source_prefix="feed", max_silence_s=600))
    put(memory, ACME, "price", {"text": "price list"}, source="feed")
    put(memory, ACME, "tone", {"text": "formal tone"}, source="crm")
    (feed,) = [s for s in memory.sources(ACME) if s.source == "feed"]
    assert feed.enabled
    memory_factory.clock.advance(601)
    (feed,) = [s for s in memory.sources(ACME) if s.source == "feed"]
    assert not feed.enabled and "silent" in feed.reason
    assert feed.changed_by == "freshness-monitor"
    assert memory.get(ACME, PREFS, "price") is None and keys(memory, ACME) == {"tone"}
    put(memory, ACME, "price", {"text": "price list, resent"}, source="feed")  # it speaks again
    (feed,) = [s for s in memory.sources(ACME) if s.source == "feed"]
    assert not feed.enabled and "silent" in feed.reason  # ...but only a person re-enables it
    assert memory.get(ACME, PREFS, "price") is None and keys(memory, ACME) == {"tone"}
    person = scope(agent="human:ana")
    status = memory.set_source(person, "feed", enabled=True, reason="feed restored")
    assert (status.enabled, status.changed_by, status.reason) == (True, "human:ana",
                                                                 "feed restored")  # fmt: skip
    assert [(s.source, s.enabled) for s in memory.sources(ACME)] == [("crm", True), ("feed", True)]
    assert memory.get(ACME, PREFS, "price") is not None and keys(memory, ACME) == {"price", "tone"}
    memory.set_source(person, "crm", enabled=False, reason="bad import")
    assert keys(memory, ACME) == {"price"}
    (crm,) = [s for s in memory.sources(ACME) if s.source == "crm"]
    assert (crm.enabled, crm.reason, crm.changed_by) == (False, "bad import", "human:ana")


def test_a_source_whose_shape_drifts_is_disabled_until_enabled(
    memory_factory: MemoryFactory,  # noqa: F811
) -> None:
    memory = fresh_memory(memory_factory, FreshnessRule(source_prefix="crm", check_shape=True))
    put(memory, ACME, "a", {"text": "first", "plan": "pro"})
    put(memory, ACME, "b", {"text": "second", "plan": "free"})
    assert keys(memory, ACME) == {"a", "b"}
    assert put(memory, ACME, "c", {"text": "third", "tier": "gold"}).ok  # written, then judged
    (crm,) = memory.sources(ACME)
    assert not crm.enabled and crm.reason.startswith("drift")
    assert memory.get(ACME, PREFS, "a") is None and memory.recall(ACME) == []
    memory.set_source(scope(agent="human:ana"), "crm", enabled=True, reason="new schema is fine")
    assert keys(memory, ACME) == {"a", "b", "c"}
    assert put(memory, ACME, "d", {"text": "fourth", "tier": "silver"}).ok  # the adopted shape
    (crm,) = memory.sources(ACME)
    assert crm.enabled, crm.reason
    assert keys(memory, ACME) == {"a", "b", "c", "d"}
