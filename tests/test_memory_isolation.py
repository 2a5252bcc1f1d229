"""Tenant isolation property test: random operations by several tenants never cross the wall."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import nodes
from memory import CommitResult, MemoryContractError, MemoryRecord, MemoryScope, VersionedMemory
from memory.factory import in_memory, open_memory
from memory.layout import all_items
from tools import ToolContext

# Tenants that are prefixes and case variants of each other: a wall keyed on text prefixes or
# case-folded matching would let them see (or overwrite) one another.
TENANTS = ("acme", "acme-eu", "Acme", "globex")
PURPOSE = "support"
RETENTIONS = ("profile", "case", "session", "turn")  # both tiers
SENSITIVITIES = ("public", "internal", "confidential", "restricted")
WORDS = ("tea", "coffee", "email", "phone", "refund", "vip", *TENANTS, "memory")
AREAS = {"memory", "history", "tombs", "commits", "sources", "conflicts"}
# Valid namespaces (below the tenant) chosen to collide: other tenants' names, their
# ("other", "memory", …) layout, stemming neighbours (pref/prefs), case variants.
NAMESPACES = [
    ("prefs",), ("pref",), ("Prefs",), ("prefs", "food"), ("facts",), ("notes", "x:y"),
    ("globex", "memory", "prefs"), ("acme",), ("acme-eu", "memory"), ("Acme", "history"),
    ("x" * 64,), ("a",),
]  # fmt: skip
KEYS = [
    "k1", "K1", "k2", "tone", "../globex", "globex/memory/k1", "acme-eu", "a.b", "*", "k1*",
    "{x}", "key with spaces", "ключ", "\u0430cme", "x" * 200, "-",
]  # fmt: skip
# Must be refused: they could climb out of the tenant or reach Bastion's bookkeeping.
BAD_NAMESPACES = [
    ("..",), ("prefs", ".."), ("/",), ("prefs/../../globex",), ("a\x00b",), ("\u0430cme",),
    ("\uff41cme",), ("x" * 65,), ("_private",), ("",), (), ("a",) * 7, ("globex", "..", "x"),
    ("acme.memory",), ("acme memory",), ("globex\n",),
]  # fmt: skip
BAD_KEYS = ["k1@c0123", "x" * 201, "\x00", "a\nb", ""]
BAD_TENANTS = ["", "acme/../globex", "globex\x00", "../globex", "acme.eu", "\u0430cme", "_acme"]

OPS: Counter[str] = Counter()
"""Memory API calls the rules made (`<backend>`) and states checked (`<backend>-steps`)."""

State = tuple[str, str, str]
"""What the model keeps of a record: canonical JSON value, retention, sensitivity."""
Ref = tuple[tuple[str, ...], str]
OpenMemory = Callable[[], AbstractContextManager[VersionedMemory]]


def must_be_refused(namespace: Sequence[str], key: str) -> bool:
    """Labels that could climb out of the tenant or reach bookkeeping, and malformed keys."""
    bad_label = any(
        not label or len(label) > 64 or label[0] in "_-" or not label.isascii()
        or any(char in label for char in "./\\\x00 \n")
        for label in namespace
    )  # fmt: skip
    bad_key = not key or len(key) > 200 or "@" in key or not key.isprintable()
    return bad_label or bad_key or not 1 <= len(namespace) <= 6


def tool_scope(run_context: Mapping[str, str]) -> MemoryScope:
    """How a tool builds its scope (`nodes.tool_scope`, as the support memory tool does): from
    the gateway's context only, never from its arguments."""
    ctx = ToolContext(
        tenant=run_context["tenant"], thread_id="thread-1", run_id=run_context["run_id"],
        agent=run_context["agent"], call_id="call-1", idempotency_key="key-1",
    )  # fmt: skip
    return nodes.tool_scope(ctx, purposes=frozenset({PURPOSE}), clearance="restricted")


def run_context(tenant: str) -> dict[str, str]:
    return {"tenant": tenant, "agent": f"agent-{tenant}", "run_id": f"run-{tenant}"}


def scope_of(tenant: str) -> MemoryScope:
    """The scope a run of `tenant` gets (it may see every record of its own tenant)."""
    return tool_scope(run_context(tenant))


def tool_remember(
    memory: VersionedMemory, context: Mapping[str, str], args: Mapping[str, Any]
) -> CommitResult:
    """A `remember` tool: model-chosen args (which may name a `tenant`), run-context scope."""
    return memory.remember(
        tool_scope(context), args["namespace"], args["key"], args["value"],
        purpose=PURPOSE, retention="profile", sensitivity="internal",
    )  # fmt: skip


def tool_get(
    memory: VersionedMemory, context: Mapping[str, str], args: Mapping[str, Any]
) -> MemoryRecord | None:
    """A `recall_fact` tool: same rule, `args["tenant"]` is ignored."""
    return memory.get(tool_scope(context), args["namespace"], args["key"])


def state_of(record: MemoryRecord) -> State:
    value = json.dumps(record.value, sort_keys=True)
    return value, record.tags.retention, record.tags.sensitivity


def raw_items(memory: VersionedMemory, tenant: str) -> set[Ref]:
    """Every (store namespace, key) under `tenant`, read past the memory API."""
    return {
        (tuple(item.namespace), item.key)
        for store in memory.stores()
        for item in all_items(store, (tenant,))
    }


@dataclass
class Expected:
    """The reference model of one tenant's memory."""

    current: dict[Ref, State] = field(default_factory=dict)
    versions: dict[Ref, list[State | None]] = field(default_factory=dict)
    """Every version of a key, None for a tombstone."""
    commits: list[str] = field(default_factory=list)
    snapshots: dict[str, dict[Ref, State]] = field(default_factory=dict)
    """`current` right after each commit."""
    changes: dict[str, dict[Ref, tuple[State | None, State | None]]] = field(default_factory=dict)
    """(before, after) of each key a commit changed."""
    last_writer: dict[Ref, str] = field(default_factory=dict)

    def apply(self, commit_id: str | None, writes: Mapping[Ref, State | None]) -> None:
        """Record a commit of `writes` (None: a delete) that memory accepted as `commit_id`."""
        changed = {
            ref: (self.current.get(ref), state)
            for ref, state in writes.items()
            if state is not None or ref in self.current
        }
        if not changed:
            assert commit_id is None, "a commit that changes nothing must be `empty`"
            return
        assert commit_id is not None, f"writes {sorted(changed)} made no commit"
        for ref, (_, state) in changed.items():
            if state is None:
                del self.current[ref]
            else:
                self.current[ref] = state
            self.versions.setdefault(ref, []).append(state)
            self.last_writer[ref] = commit_id
        self.commits.append(commit_id)
        self.snapshots[commit_id] = dict(self.current)
        self.changes[commit_id] = changed


class TenantMachine(RuleBasedStateMachine):
    """Several tenants share one memory; a reference model says what each must see."""

    def __init__(self, open_memory: OpenMemory, backend: str) -> None:
        super().__init__()
        self._opened = open_memory()
        self.memory = self._opened.__enter__()
        self.backend = backend
        self.serial = itertools.count(1)
        self.expected = {tenant: Expected() for tenant in TENANTS}

    def teardown(self) -> None:
        self._opened.__exit__(None, None, None)

    # -- helpers ---------------------------------------------------------------------------------

    def op(self, calls: int = 1) -> None:
        OPS[self.backend] += calls

    def value(self, tenant: str, words: Sequence[str]) -> dict[str, Any]:
        """A value marked with the tenant that writes it (`owner` and the text)."""
        return {"owner": tenant, "text": f"<{tenant}> {' '.join(words)}", "n": next(self.serial)}

    def expect_own(self, tenant: str, record: MemoryRecord | None) -> None:
        """A record a read by `tenant` returned: its own, as the model has it."""
        if record is None:
            return
        assert record.value is not None and record.value["owner"] == tenant, (tenant, record)
        assert f"<{tenant}>" in record.value["text"]
        ref = (record.namespace, record.key)
        assert self.expected[tenant].current.get(ref) == state_of(record), (tenant, ref)

    def committed(self, tenant: str, result: CommitResult, writes: Mapping[Ref, Any]) -> None:
        self.expected[tenant].apply(result.commit.id if result.commit else None, writes)

    def has_commits(self) -> bool:
        return any(expected.commits for expected in self.expected.values())

    def some_commit(self, data: st.DataObject) -> tuple[str, str]:
        tenant = data.draw(st.sampled_from([t for t in TENANTS if self.expected[t].commits]))
        return tenant, data.draw(st.sampled_from(self.expected[tenant].commits))

    # -- writes ----------------------------------------------------------------------------------

    @rule(
        tenant=st.sampled_from(TENANTS), namespace=st.sampled_from(NAMESPACES),
        key=st.sampled_from(KEYS), words=st.lists(st.sampled_from(WORDS), max_size=4),
        retention=st.sampled_from(RETENTIONS), sensitivity=st.sampled_from(SENSITIVITIES),
    )  # fmt: skip
    def remember(
        self, tenant: str, namespace: tuple[str, ...], key: str, words: list[str],
        retention: str, sensitivity: Any,
    ) -> None:  # fmt: skip
        self.op(2)
        result = self.memory.remember(
            scope_of(tenant), namespace, key, self.value(tenant, words),
            purpose=PURPOSE, retention=retention, sensitivity=sensitivity,
        )  # fmt: skip
        record = self.memory.get(scope_of(tenant), namespace, key)
        assert result.commit is not None and record is not None, result
        assert record.commit_id == result.commit.id
        self.committed(tenant, result, {(namespace, key): state_of(record)})

    @rule(tenant=st.sampled_from(TENANTS), data=st.data())
    def forget(self, tenant: str, data: st.DataObject) -> None:
        ref = data.draw(st.sampled_from([*self.expected[tenant].current, (("prefs",), "k1")]))
        self.op()
        self.committed(tenant, self.memory.forget(scope_of(tenant), *ref), {ref: None})

    @rule(tenant=st.sampled_from(TENANTS), data=st.data(), fail=st.booleans())
    def session(self, tenant: str, data: st.DataObject, fail: bool) -> None:
        """Several writes in one reasoning cycle: one commit, or nothing if the cycle fails."""
        refs = data.draw(st.lists(st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(KEYS)),
                                  min_size=2, max_size=5))  # fmt: skip
        writes: dict[Ref, State | None] = {}
        self.op(len(refs) + 1)
        cycle = self.memory.session(scope_of(tenant), "cycle")
        with pytest.raises(MemoryContractError) if fail else nullcontext(), cycle:
            for ref in refs:
                self.expect_own(tenant, cycle.get(*ref))
                writes[ref] = None
                if data.draw(st.booleans()):
                    cycle.forget(*ref)
                    continue
                value = self.value(tenant, data.draw(st.lists(st.sampled_from(WORDS))))
                cycle.remember(*ref, value, purpose=PURPOSE, retention="case",
                               sensitivity="internal")  # fmt: skip
                writes[ref] = (json.dumps(value, sort_keys=True), "case", "internal")
            if fail:  # a bad write late in the cycle: the whole cycle writes nothing
                cycle.remember(("..",), "k1", {"owner": tenant}, purpose=PURPOSE,
                               retention="case", sensitivity="internal")  # fmt: skip
        if fail:
            assert cycle.result is None
        else:
            assert cycle.result is not None and cycle.result.ok, cycle.result
            self.committed(tenant, cycle.result, writes)

    @precondition(has_commits)
    @rule(data=st.data())
    def revert(self, data: st.DataObject) -> None:
        tenant, target = self.some_commit(data)
        expected = self.expected[tenant]
        changed = expected.changes[target]
        self.op()
        result = self.memory.revert(scope_of(tenant), target, reason="property test")
        if any(expected.last_writer[ref] != target for ref in changed):
            assert result.status == "conflict" and result.commit is None, result
        else:
            assert result.status == "committed", result
            self.committed(tenant, result, {ref: before for ref, (before, _) in changed.items()})

    # -- reads -----------------------------------------------------------------------------------

    @rule(tenant=st.sampled_from(TENANTS), data=st.data())
    def get(self, tenant: str, data: st.DataObject) -> None:
        refs = [ref for t in TENANTS for ref in self.expected[t].current] or [(("a",), "k1")]
        ref = data.draw(st.sampled_from(refs))  # often a key only another tenant has
        self.op()
        record = self.memory.get(scope_of(tenant), *ref)
        assert (record is None) == (ref not in self.expected[tenant].current), (tenant, ref)
        self.expect_own(tenant, record)

    @rule(
        tenant=st.sampled_from(TENANTS), query=st.none() | st.sampled_from(WORDS),
        below=st.sampled_from([(), *NAMESPACES[:6]]), limit=st.integers(1, 12),
    )  # fmt: skip
    def recall(self, tenant: str, query: str | None, below: tuple[str, ...], limit: int) -> None:
        self.op()
        hits = self.memory.recall(scope_of(tenant), query, namespace=below, limit=limit)
        wanted = [ns for ns, _ in self.expected[tenant].current if ns[: len(below)] == below]
        assert len(hits) == min(limit, len(wanted)), (tenant, query, below, hits)
        for hit in hits:
            self.expect_own(tenant, hit.record)
            assert hit.record.namespace[: len(below)] == below, (below, hit.record.namespace)

    @rule(tenant=st.sampled_from(TENANTS), data=st.data())
    def history(self, tenant: str, data: st.DataObject) -> None:
        refs = [ref for t in TENANTS for ref in self.expected[t].versions] or [(("a",), "k1")]
        ref = data.draw(st.sampled_from(refs))
        self.op()
        versions = self.memory.history(scope_of(tenant), *ref)
        got = [None if record.deleted else state_of(record) for record in versions]
        assert got == self.expected[tenant].versions.get(ref, []), (tenant, ref)

    @precondition(has_commits)
    @rule(data=st.data())
    def diff(self, data: st.DataObject) -> None:
        tenant, target = self.some_commit(data)
        own = self.expected[tenant].commits
        end = own.index(target)
        start = data.draw(st.integers(-1, end))  # -1: from empty memory
        base = own[start] if start >= 0 else None
        self.op()
        diff = self.memory.diff(scope_of(tenant), base, target)
        before = self.expected[tenant].snapshots[base] if base else {}
        after = self.expected[tenant].snapshots[target]
        changed = {ref for ref in {*before, *after} if before.get(ref) != after.get(ref)}
        assert {(entry.namespace, entry.key) for entry in diff.entries} == changed
        assert diff.commits == tuple(own[start + 1 : end + 1])
        for entry in diff.entries:
            assert entry.after is None or entry.after.value["owner"] == tenant  # type: ignore[index]
            assert entry.before is None or entry.before.value["owner"] == tenant  # type: ignore[index]

    @precondition(has_commits)
    @rule(data=st.data())
    def as_of(self, data: st.DataObject) -> None:
        tenant, commit_id = self.some_commit(data)
        self.op()
        records = self.memory.as_of(scope_of(tenant), commit_id).records()
        got = {(record.namespace, record.key): state_of(record) for record in records}
        assert got == self.expected[tenant].snapshots[commit_id]

    @precondition(has_commits)
    @rule(data=st.data())
    def foreign_commit(self, data: st.DataObject) -> None:
        """Another tenant's commit id is unknown here, for every call that takes one."""
        owner, commit_id = self.some_commit(data)
        reader = scope_of(data.draw(st.sampled_from([t for t in TENANTS if t != owner])))
        calls: list[Callable[[], object]] = [
            lambda: self.memory.commit_of(reader, commit_id),
            lambda: self.memory.as_of(reader, commit_id),
            lambda: self.memory.diff(reader, None, commit_id),
            lambda: self.memory.revert(reader, commit_id, reason="steal"),
        ]
        self.op(len(calls) + 1)
        for call in calls:
            with pytest.raises(MemoryContractError):
                call()
        assert self.memory.commit_of(scope_of(owner), commit_id).tenant == owner

    # -- adversarial input -----------------------------------------------------------------------

    @rule(
        tenant=st.sampled_from(TENANTS),
        namespace=st.sampled_from(BAD_NAMESPACES + NAMESPACES)
        | st.lists(st.text(max_size=70), max_size=7).map(tuple),
        key=st.sampled_from(BAD_KEYS + KEYS) | st.text(max_size=210),
        call=st.sampled_from(["remember", "get", "history", "recall", "forget"]),
        bad_tenant=st.sampled_from(BAD_TENANTS) | st.text(max_size=70),
    )  # fmt: skip
    def adversarial(
        self, tenant: str, namespace: tuple[str, ...], key: str, call: str, bad_tenant: str
    ) -> None:
        """Odd labels and keys are refused or kept strictly inside the caller's tenant; a scope
        for a malformed tenant is refused before it reaches any store."""
        if bad_tenant in BAD_TENANTS or not bad_tenant.isascii() or {*"/.\\"} & {*bad_tenant}:
            with pytest.raises(MemoryContractError):
                scope_of(bad_tenant)
        scope, ref = scope_of(tenant), (namespace, key)
        self.op()
        try:
            if call == "remember":
                value = self.value(tenant, ["odd"])
                tags = {"purpose": PURPOSE, "retention": "profile", "sensitivity": "internal"}
                result = self.memory.remember(scope, *ref, value, **tags)  # type: ignore[arg-type]
                state = (json.dumps(value, sort_keys=True), "profile", "internal")
                self.committed(tenant, result, {ref: state})
            elif call == "forget":
                self.committed(tenant, self.memory.forget(scope, *ref), {ref: None})
            elif call == "history":
                got = [r.value for r in self.memory.history(scope, *ref) if r.value is not None]
                assert all(value["owner"] == tenant for value in got)
            elif call == "get":
                self.expect_own(tenant, self.memory.get(scope, *ref))
            else:
                for hit in self.memory.recall(scope, "odd", namespace=namespace):
                    self.expect_own(tenant, hit.record)
        except MemoryContractError:
            return
        refused = call in ("remember", "forget", "history") and must_be_refused(namespace, key)
        assert not refused, f"{call} accepted {namespace!r} / {key!r}"

    @rule(
        context=st.sampled_from(TENANTS), arg_tenant=st.sampled_from(TENANTS), data=st.data(),
        key=st.sampled_from(KEYS[:4]),
    )  # fmt: skip
    def tool_call(self, context: str, arg_tenant: str, data: st.DataObject, key: str) -> None:
        """A tool whose args name another tenant writes and reads only the run's tenant."""
        namespace = data.draw(st.sampled_from([[arg_tenant, "memory", "prefs"], ["prefs"]]))
        value = self.value(context, ["tool"])
        args = {"tenant": arg_tenant, "namespace": namespace, "key": key, "value": value}
        others = {t: raw_items(self.memory, t) for t in TENANTS if t != context}
        self.op(2)
        result = tool_remember(self.memory, run_context(context), args)
        record = tool_get(self.memory, run_context(context), args)
        assert result.commit is not None and record is not None and record.value == value
        assert record.commit_id == result.commit.id
        self.committed(context, result, {(tuple(namespace), key): state_of(record)})
        assert {t: raw_items(self.memory, t) for t in others} == others

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def each_tenant_sees_exactly_its_model(self) -> None:
        OPS[f"{self.backend}-steps"] += 1  # invariants run after every step (and at the start)
        for tenant in TENANTS:
            hits = self.memory.recall(scope_of(tenant), limit=1000)
            for hit in hits:
                self.expect_own(tenant, hit.record)
            assert len(hits) == len(self.expected[tenant].current), tenant

    @invariant()
    def the_stores_hold_each_item_under_its_writer(self) -> None:
        for store in self.memory.stores():
            for namespace in store.list_namespaces(limit=100_000):
                assert namespace[0] in TENANTS and namespace[1] in AREAS, namespace
        for tenant in TENANTS:
            current = set()
            for item in (i for store in self.memory.stores() for i in all_items(store, (tenant,))):
                assert item.namespace[0] == tenant, (tenant, item.namespace)
                area, data = item.namespace[1], item.value.get("data")
                if area in ("memory", "history") and data is not None:
                    assert data["owner"] == tenant, (tenant, item.namespace, data)
                if area == "commits":
                    assert item.value["tenant"] == tenant
                if area == "memory":
                    current.add((tuple(item.namespace[2:]), item.key))
            assert current == set(self.expected[tenant].current), tenant


def run_machine(open_memory: OpenMemory, backend: str, examples: int, steps: int) -> int:
    """Run `examples` runs of up to `steps` steps each; returns the memory calls made."""

    class Machine(TenantMachine):
        def __init__(self) -> None:
            super().__init__(open_memory, backend)

    OPS[backend] = OPS[f"{backend}-steps"] = 0
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=examples, stateful_step_count=steps, derandomize=True, deadline=None,
            database=None, suppress_health_check=list(HealthCheck),
            # No shrinking: with every store checked after every step it can use Hypothesis's
            # 5-minute shrink budget. A failing run prints in full; add Phase.shrink to shrink.
            phases=(Phase.explicit, Phase.reuse, Phase.generate),
        ),
    )  # fmt: skip
    print(f"{backend}: {OPS[backend]} memory calls, {OPS[f'{backend}-steps']} states checked")
    return OPS[backend]


def test_tenants_never_cross_in_memory() -> None:
    assert run_machine(lambda: nullcontext(in_memory()), "memory", examples=60, steps=50) >= 2500


def test_tenants_never_cross_in_sqlite(tmp_path: Path) -> None:
    folders = (tmp_path / f"run{n}" for n in itertools.count())
    ops = run_machine(lambda: open_memory(home=next(folders)), "sqlite", examples=15, steps=30)
    assert ops >= 300


@pytest.mark.redis
def test_tenants_never_cross_in_redis(redis_url: str) -> None:
    def fresh() -> AbstractContextManager[VersionedMemory]:
        client = redis.Redis.from_url(redis_url)
        try:
            client.flushall()  # hypothesis runs many examples inside one test: reset each
        finally:
            client.close()
        return open_memory(redis_url=redis_url)

    assert run_machine(fresh, "redis", examples=15, steps=30) >= 300
