"""Tampering with a stored audit log (edit, delete, reorder, truncate, replace) is caught and named.

Each backend is tampered with the way an intruder with access to its storage would: raw SQL on
the SQLite file, XDEL/XADD/HSET on the Redis keys, the record list of the in-memory log.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from observability import (
    AuditEntry,
    AuditHead,
    AuditLog,
    AuditRecord,
    InMemoryAuditLog,
    canonical,
    seal,
    verify_chain,
)
from observability.redis_audit import RedisAuditLog
from observability.sqlite_audit import SqliteAuditLog

COUNT = 10
"""Records in each tampered log."""


def entry(n: int) -> AuditEntry:
    """The n-th entry of a small but varied log."""
    kind = ("decision", "approval", "effect", "kill")[n % 4]
    return AuditEntry(
        kind=kind,  # type: ignore[typeddict-item]
        ts=1_700_000_000.0 + 60 * n,
        tenant="acme" if n % 3 else "*",
        actor="human:alice" if kind == "approval" else "guard",
        run_id=f"r{n % 2}",
        subject=f"d{n}",
        detail={"verdict": "allow", "reasons": [f"reason {n}"], "amount": n * 10},
    )


class Tamper(Protocol):
    """Writes straight to a log's storage, around its API."""

    @property
    def log(self) -> AuditLog:
        """The log under attack."""
        ...

    def stored(self) -> list[AuditRecord]:
        """Every stored record, in stored order."""
        ...

    def edit(self, seq: int, field: str, value: Any) -> None:
        """Change one field of record `seq`."""
        ...

    def delete(self, *seqs: int) -> None:
        """Remove records."""
        ...

    def swap(self, a: int, b: int) -> None:
        """Exchange the contents of records `a` and `b`, each keeping its position."""
        ...

    def replace(self, record: AuditRecord) -> None:
        """Put `record` in place of the record at its `seq`."""
        ...

    def set_head(self, head: AuditHead | None) -> None:
        """Overwrite (or delete) the kept head."""
        ...


class MemoryTamper:
    """Edits the in-memory log's record list (its head is out of reach)."""

    def __init__(self, key: bytes | None) -> None:
        self.log = InMemoryAuditLog(key=key)

    def stored(self) -> list[AuditRecord]:
        return list(self.log.raw)

    def _at(self, seq: int) -> int:
        return next(i for i, r in enumerate(self.log.raw) if r["seq"] == seq)

    def edit(self, seq: int, field: str, value: Any) -> None:
        self.log.raw[self._at(seq)][field] = value  # type: ignore[literal-required]

    def delete(self, *seqs: int) -> None:
        self.log.raw[:] = [r for r in self.log.raw if r["seq"] not in seqs]

    def swap(self, a: int, b: int) -> None:
        i, j = self._at(a), self._at(b)
        raw = self.log.raw
        raw[i], raw[j] = {**raw[j], "seq": a}, {**raw[i], "seq": b}  # type: ignore[typeddict-item]

    def replace(self, record: AuditRecord) -> None:
        self.log.raw[self._at(record["seq"])] = record

    def set_head(self, head: AuditHead | None) -> None:
        raise AssertionError("the in-memory log's head lives in the process, out of reach")


class SqliteTamper:
    """Runs SQL on the audit file through a connection of its own."""

    def __init__(self, path: Path, key: bytes | None) -> None:
        self.log = SqliteAuditLog(path, key=key)
        self._db = sqlite3.connect(path, isolation_level=None)

    def stored(self) -> list[AuditRecord]:
        return self.log.records(limit=10_000)

    def edit(self, seq: int, field: str, value: Any) -> None:
        value = json.dumps(value) if field == "detail" else value
        self._db.execute(f"UPDATE audit SET {field} = ? WHERE seq = ?", (value, seq))

    def delete(self, *seqs: int) -> None:
        self._db.executemany("DELETE FROM audit WHERE seq = ?", [(s,) for s in seqs])

    def swap(self, a: int, b: int) -> None:
        first, second = (self._record(seq) for seq in (a, b))
        self.replace({**second, "seq": a})  # type: ignore[typeddict-item]
        self.replace({**first, "seq": b})  # type: ignore[typeddict-item]

    def replace(self, record: AuditRecord) -> None:
        fields = [f for f in record if f != "seq"]
        values = [json.dumps(record["detail"]) if f == "detail" else record[f] for f in fields]  # type: ignore[literal-required]
        assignments = ", ".join(f"{f} = ?" for f in fields)
        self._db.execute(f"UPDATE audit SET {assignments} WHERE seq = ?", (*values, record["seq"]))

    def set_head(self, head: AuditHead | None) -> None:
        self._db.execute("DELETE FROM audit_head")
        if head is not None:
            self._db.execute("INSERT INTO audit_head VALUES (1, ?, ?)", (head["seq"], head["hash"]))

    def _record(self, seq: int) -> AuditRecord:
        return next(r for r in self.stored() if r["seq"] == seq)


class RedisTamper:
    """XDEL / XADD / HSET / DEL on the log's keys through a client of its own."""

    def __init__(self, url: str, key: bytes | None) -> None:
        self.log = RedisAuditLog(url, key=key, prefix="t")
        self._client = redis.Redis.from_url(url)

    def stored(self) -> list[AuditRecord]:
        return self.log.records(limit=10_000)

    def edit(self, seq: int, field: str, value: Any) -> None:
        self._rewrite([{**r, field: value} if r["seq"] == seq else r for r in self.stored()])

    def delete(self, *seqs: int) -> None:
        self._client.xdel("t:log", *(f"{seq}-1" for seq in seqs))

    def swap(self, a: int, b: int) -> None:
        by_seq = {r["seq"]: r for r in self.stored()}
        moved = {a: {**by_seq[b], "seq": a}, b: {**by_seq[a], "seq": b}}
        self._rewrite([moved.get(seq, r) for seq, r in by_seq.items()])

    def replace(self, record: AuditRecord) -> None:
        self._rewrite([record if r["seq"] == record["seq"] else r for r in self.stored()])

    def set_head(self, head: AuditHead | None) -> None:
        if head is None:
            self._client.delete("t:head")
        else:
            self._client.hset("t:head", mapping={"seq": head["seq"], "hash": head["hash"]})

    def _rewrite(self, records: list[Any]) -> None:
        """Rebuild the stream entry by entry: a Stream only grows at its end."""
        self._client.delete("t:log")
        for record in records:
            self._client.xadd("t:log", {"r": canonical(record)}, id=f"{record['seq']}-1")


BACKENDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=[None, b"audit key"], ids=["sha256", "hmac"])
def key(request: pytest.FixtureRequest) -> bytes | None:
    return request.param  # type: ignore[no-any-return]


def _filled(request: pytest.FixtureRequest, tmp_path: Path, key: bytes | None) -> Tamper:
    """A log of `COUNT` records (appended in three batches) and the means to tamper with it."""
    made: Tamper
    if request.param == "memory":
        made = MemoryTamper(key)
    elif request.param == "sqlite":
        made = SqliteTamper(tmp_path / "audit.sqlite", key)
    else:
        made = RedisTamper(request.getfixturevalue("redis_url"), key)
    for batch in (range(1, 4), range(4, 5), range(5, COUNT + 1)):
        made.log.append([entry(n) for n in batch])
    return made


@pytest.fixture(params=BACKENDS)
def tamper(request: pytest.FixtureRequest, tmp_path: Path, key: bytes | None) -> Iterator[Tamper]:
    """A filled log of any backend."""
    made = _filled(request, tmp_path, key)
    yield made
    made.log.close()


@pytest.fixture(params=BACKENDS[1:])
def stored(request: pytest.FixtureRequest, tmp_path: Path, key: bytes | None) -> Iterator[Tamper]:
    """A filled log whose head is in storage too (SQLite, Redis)."""
    made = _filled(request, tmp_path, key)
    yield made
    made.log.close()


def problems(log: AuditLog) -> list[tuple[str, int]]:
    return [(p.kind, p.seq) for p in log.verify().problems]


def test_an_intact_log_verifies(tamper: Tamper) -> None:
    report = tamper.log.verify()
    assert report.ok and report.records == COUNT and report.problems == ()
    assert report.head == {"seq": COUNT, "hash": tamper.stored()[-1]["hash"]}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("detail", {"verdict": "allow", "reasons": ["reason 5"], "amount": 5000}),
        ("actor", "human:mallory"),
        ("ts", 1_700_000_000.0 + 60 * 5 + 3600),
        ("subject", "d55"),
    ],
)
def test_an_edited_field_is_named_altered_at_its_record(
    tamper: Tamper, field: str, value: Any
) -> None:
    tamper.edit(5, field, value)
    report = tamper.log.verify()
    assert [(p.kind, p.seq) for p in report.problems] == [("altered", 5)]
    assert "record 5 " in report.problems[0].message


def test_a_deleted_middle_record_is_named_removed(tamper: Tamper) -> None:
    tamper.delete(5)
    report = tamper.log.verify()
    assert [(p.kind, p.seq) for p in report.problems] == [("removed", 5)]
    assert "record 5 is missing" in report.problems[0].message
    tamper.delete(7, 8)
    assert problems(tamper.log) == [("removed", 5), ("removed", 7)]


@pytest.mark.parametrize(("a", "b"), [(3, 7), (4, 5), (1, 2), (2, COUNT)])
def test_two_swapped_records_are_both_named_reordered(tamper: Tamper, a: int, b: int) -> None:
    tamper.swap(a, b)
    report = tamper.log.verify()
    assert [(p.kind, p.seq) for p in report.problems] == [("reordered", a), ("reordered", b)]
    assert f"record {a} " in report.problems[0].message
    assert f"was sealed as record {b}" in report.problems[0].message


def test_a_truncated_tail_is_named_with_the_first_missing_record(tamper: Tamper) -> None:
    tamper.delete(COUNT - 2, COUNT - 1, COUNT)
    report = tamper.log.verify()
    assert [(p.kind, p.seq) for p in report.problems] == [("truncated", COUNT - 2)]
    assert f"records {COUNT - 2}..{COUNT} are missing" in report.problems[0].message


def test_a_resealed_replacement_of_the_last_record_is_caught_by_the_head(tamper: Tamper) -> None:
    last = tamper.stored()[-1]
    forged = {**last, "detail": {**last["detail"], "amount": 1}}
    # The intruder recomputes the hash (without the key, which it does not have).
    tamper.replace(seal(forged, seq=COUNT, prev=last["prev"]))  # type: ignore[arg-type]
    report = tamper.log.verify()
    assert [(p.kind, p.seq) for p in report.problems] == [("altered", COUNT)]
    assert f"record {COUNT} " in report.problems[0].message


def test_a_deleted_head_is_reported(stored: Tamper) -> None:
    stored.set_head(None)
    report = stored.log.verify()
    assert [(p.kind, p.seq) for p in report.problems] == [("truncated", COUNT + 1)]
    assert "the kept head is missing" in report.problems[0].message


def test_records_written_after_the_head_are_named_inserted(stored: Tamper) -> None:
    tamper = stored
    last = tamper.stored()[-1]
    head = tamper.log.head()
    forged = seal(entry(COUNT + 1), seq=COUNT + 1, prev=last["hash"])
    tamper.log.append([entry(COUNT + 1)])  # written through the log, then the head rewound
    tamper.replace(forged)
    tamper.set_head(head)
    assert problems(tamper.log) == [("inserted", COUNT + 1)]


def test_a_rewound_head_hides_a_truncation_from_the_log_but_not_from_a_witness(
    stored: Tamper, key: bytes | None
) -> None:
    tamper = stored
    witness = tamper.log.head()  # copied elsewhere earlier
    assert witness is not None
    tamper.delete(COUNT - 2, COUNT - 1, COUNT)
    last = tamper.stored()[-1]
    tamper.set_head(AuditHead(seq=last["seq"], hash=last["hash"]))
    assert tamper.log.verify().ok  # the documented limit: the kept head was rewritten too
    report = verify_chain(tamper.stored(), head=witness, key=key)
    assert [(p.kind, p.seq) for p in report.problems] == [("truncated", COUNT - 2)]


def test_a_rewritten_tail_and_head_is_caught_by_a_key_or_a_witness(
    stored: Tamper, key: bytes | None
) -> None:
    tamper = stored
    witness = tamper.log.head()
    assert witness is not None
    records = tamper.stored()
    prev = records[COUNT - 3]["prev"]  # rewrite records COUNT-2..COUNT, sealed without the key
    for record in records[COUNT - 3 :]:
        forged = seal({**record, "subject": "forged"}, seq=record["seq"], prev=prev)  # type: ignore[typeddict-unknown-key]
        tamper.replace(forged)
        prev = forged["hash"]
    tamper.set_head(AuditHead(seq=COUNT, hash=prev))
    altered = [("altered", seq) for seq in range(COUNT - 2, COUNT + 1)]
    assert problems(tamper.log) == (altered if key else [])
    report = verify_chain(tamper.stored(), head=witness, key=key)
    assert [(p.kind, p.seq) for p in report.problems] == (altered if key else [("altered", COUNT)])


# ---------------------------------------------------------------------------------------------
# Property: any single tamper operation on any log is named at the record it touched.

TAMPERS = ("edit", "delete", "swap", "truncate", "replace_last")
FIELDS = ("detail", "actor", "ts", "subject", "tenant", "run_id", "kind", "prev", "hash")
EXPECTED_KINDS = {
    "edit": {"altered"},
    "delete": {"removed", "truncated"},  # deleting the last record is a truncation
    "swap": {"reordered"},
    "truncate": {"truncated"},
    "replace_last": {"altered"},
}

entries = st.builds(
    AuditEntry,
    kind=st.sampled_from(["decision", "approval", "effect", "gap"]),
    ts=st.floats(0, 2e9, allow_nan=False) | st.integers(0, 2**40),
    tenant=st.sampled_from(["acme", "globex", "*"]),
    actor=st.sampled_from(["guard", "human:alice"]),
    run_id=st.sampled_from(["", "r1", "r2"]),
    subject=st.sampled_from(["d1", "d2"]),  # repeated contents: only the chain tells them apart
    detail=st.dictionaries(st.sampled_from("abc"), st.integers(0, 3) | st.text(max_size=3)),
)


def _changed(value: Any) -> Any:
    if isinstance(value, dict):
        return {**value, "tampered": True}
    if isinstance(value, int | float):
        return value + 1.5
    return f"{value}!"


@settings(max_examples=400, deadline=None)
@given(
    batches=st.lists(st.lists(entries, min_size=1, max_size=8), min_size=1, max_size=6),
    key=st.sampled_from([None, b"k"]),
    operation=st.sampled_from(TAMPERS),
    data=st.data(),
)
def test_any_single_tamper_is_named_where_it_happened(
    batches: list[list[AuditEntry]], key: bytes | None, operation: str, data: st.DataObject
) -> None:
    log = InMemoryAuditLog(key=key)
    for batch in batches:
        log.append(batch)
    raw, count = log.raw, len(log.raw)
    assert log.verify().ok
    position = st.integers(0, count - 1)
    if operation == "edit":
        i, field = data.draw(position), data.draw(st.sampled_from(FIELDS))
        raw[i][field] = _changed(raw[i][field])  # type: ignore[literal-required]
        expected = {i + 1}
    elif operation == "delete":
        i = data.draw(position)
        del raw[i]
        expected = {i + 1}
    elif operation == "swap":
        assume(count >= 2)
        a, b = sorted(data.draw(st.lists(position, min_size=2, max_size=2, unique=True)))
        raw[a], raw[b] = {**raw[b], "seq": a + 1}, {**raw[a], "seq": b + 1}  # type: ignore[typeddict-item]
        expected = {a + 1, b + 1}
    elif operation == "truncate":
        cut = data.draw(st.integers(1, count))
        del raw[count - cut :]
        expected = {count - cut + 1}
    else:
        last = raw[-1]
        forged: Any = {**last, "detail": {**last["detail"], "forged": True}}
        raw[-1] = seal(
            forged, seq=count, prev=last["prev"], key=data.draw(st.sampled_from([None, key]))
        )  # type: ignore[arg-type]
        expected = {count}
    report = log.verify()
    assert not report.ok
    named = {p.seq for p in report.problems}
    assert named <= expected, report.problems  # nothing else is blamed
    if operation == "swap":
        assert named == expected, report.problems  # both moved records are named
    assert {p.kind for p in report.problems} <= EXPECTED_KINDS[operation], report.problems
