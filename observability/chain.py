"""The audit hash chain: sealing entries and finding exactly where a log was tampered with.

Each record's hash covers the previous record's hash, its own sequence number and its entry, so
changing, removing, inserting or re-ordering any record breaks the chain at that record. A kept
`AuditHead` catches truncation (removing the newest records). With a key (HMAC), nobody without
it can re-seal a forged chain; without one, the chain proves integrity against an earlier head.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from observability.events import AUDIT_KINDS, AuditEntry, AuditHead, AuditRecord

__all__ = [
    "GENESIS",
    "AuditConfigError",
    "ChainProblem",
    "VerifyReport",
    "canonical",
    "check_entry",
    "seal",
    "verify_chain",
]

GENESIS = "0" * 64
"""The `prev` of the first record."""

_ENTRY_FIELDS = ("kind", "ts", "tenant", "actor", "run_id", "subject", "detail")
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "ts": (int, float),
    "tenant": str,
    "actor": str,
    "run_id": str,
    "subject": str,
    "detail": dict,
}
"""Types a store gives back unchanged (SQLite would turn a bool into 1, breaking the hash)."""


class AuditConfigError(ValueError):
    """An audit entry or audit log setting is malformed (names the field and what is expected)."""


def canonical(value: Any) -> bytes:
    """The bytes a record's hash covers: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def check_entry(entry: AuditEntry) -> AuditEntry:
    """Validate an entry at the boundary and return exactly its fields.

    Raises:
        AuditConfigError: a missing field, an unknown kind, or a detail that is not JSON.
    """
    missing = [name for name in _ENTRY_FIELDS if name not in entry]
    if missing:
        raise AuditConfigError(
            f"audit entry lacks {missing!r}; an entry needs {list(_ENTRY_FIELDS)!r}"
        )
    if entry["kind"] not in AUDIT_KINDS:
        raise AuditConfigError(
            f"audit entry kind {entry['kind']!r} is unknown; expected one of {list(AUDIT_KINDS)}"
        )
    wrong = [
        name
        for name, kinds in _FIELD_TYPES.items()
        if not isinstance(entry[name], kinds) or isinstance(entry[name], bool)  # type: ignore[literal-required]
    ]
    if wrong:
        raise AuditConfigError(
            f"audit entry {entry['kind']!r} has fields of the wrong type: {wrong!r}; expected "
            "ts a number, detail a dict, and kind, tenant, actor, run_id, subject strings"
        )
    clean: dict[str, Any] = {name: entry[name] for name in _ENTRY_FIELDS}  # type: ignore[literal-required]
    try:
        canonical(clean)
    except (TypeError, ValueError) as error:
        raise AuditConfigError(
            f"audit entry {entry['kind']!r} on {entry['subject']!r} is not JSON-safe ({error}); "
            "pass str, int, float, bool, None, lists and dicts only"
        ) from None
    return clean  # type: ignore[return-value]


def _digest(entry: AuditEntry, seq: int, prev: str, key: bytes | None) -> str:
    body = canonical({**{name: entry[name] for name in _ENTRY_FIELDS}, "seq": seq, "prev": prev})  # type: ignore[literal-required]
    if key:
        return hmac.new(key, body, hashlib.sha256).hexdigest()
    return hashlib.sha256(body).hexdigest()


def seal(entry: AuditEntry, *, seq: int, prev: str, key: bytes | None = None) -> AuditRecord:
    """The record `entry` becomes at position `seq` after a record whose hash is `prev`."""
    record: dict[str, Any] = {name: entry[name] for name in _ENTRY_FIELDS}  # type: ignore[literal-required]
    record.update(seq=seq, prev=prev, hash=_digest(entry, seq, prev, key))
    return record  # type: ignore[return-value]


ProblemKind = Literal["altered", "removed", "reordered", "inserted", "truncated"]


@dataclass(frozen=True, kw_only=True)
class ChainProblem:
    """One place where the chain does not hold."""

    kind: ProblemKind
    """altered (content changed), removed (records missing), reordered (a record moved),
    inserted (a record that was never sealed here), truncated (the newest records missing)."""
    seq: int
    """The record where it shows (for `removed`/`truncated`: the first missing number)."""
    message: str
    """What is wrong, in a sentence that names the records."""


@dataclass(frozen=True, kw_only=True)
class VerifyReport:
    """The outcome of checking a whole log."""

    records: int
    """Records checked."""
    head: AuditHead | None
    """The kept head the log was checked against."""
    problems: tuple[ChainProblem, ...] = field(default=())
    """Every problem found, in log order; empty when the log is intact."""

    @property
    def ok(self) -> bool:
        """Whether the log is intact."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (`bastion audit verify --json`)."""
        return {
            "ok": self.ok,
            "records": self.records,
            "head": self.head,
            "problems": [p.__dict__ for p in self.problems],
        }


def verify_chain(
    records: Iterable[AuditRecord], *, head: AuditHead | None, key: bytes | None = None
) -> VerifyReport:
    """Check records (in stored order) against each other and against the kept head.

    Each problem names the record where it shows: a record whose content no longer matches its
    hash is `altered`, unless its hash matches it at the position its `prev` points to (then it
    was `reordered`); a gap in the numbers is `removed`; a record that links to nothing sealed
    is `inserted`; a head beyond the last record means `truncated`.
    """
    ordered: Sequence[AuditRecord] = list(records)
    position_of = {record["hash"]: record["seq"] for record in ordered}
    by_hash = {record["hash"]: record for record in ordered}
    sealed_hash_at: dict[int, str] = {0: GENESIS}  # where each record was sealed -> its hash
    problems: list[ChainProblem] = []
    prev, expected, prev_altered = GENESIS, 1, False
    for record in ordered:
        seq = record["seq"]
        if seq > expected:
            problems.append(_removed(expected, seq))
        if _digest(record, seq, record["prev"], key) != record["hash"]:
            problem, sealed_at = _mismatch(record, position_of, key)
            problems.append(problem)
            sealed_hash_at[sealed_at] = record["hash"]
            altered = problem.kind == "altered"
        else:
            sealed_hash_at.setdefault(seq, record["hash"])
            # A record after a moved one still links to the record sealed just before it.
            linked = record["prev"] in (prev, sealed_hash_at.get(seq - 1)) or _sealed_at(
                by_hash.get(record["prev"]), seq - 1, key
            )
            # An altered record's own hash may be what was edited: the next cannot be judged by it.
            if not linked and seq <= expected and not prev_altered:
                problems.append(_unlinked(record, position_of))
            altered = False
        prev, expected, prev_altered = record["hash"], max(expected, seq + 1), altered
    if head is not None:
        last = ordered[-1]["seq"] if ordered else 0
        if head["seq"] > last:
            problems.append(
                ChainProblem(
                    kind="truncated",
                    seq=last + 1,
                    message=f"records {last + 1}..{head['seq']} are missing: the kept head is "
                    f"record {head['seq']} but the log ends at {last} (truncated)",
                )
            )
        elif sealed_hash_at.get(head["seq"], head["hash"]) != head["hash"] and not any(
            problem.seq == head["seq"] for problem in problems
        ):
            # The record sealed at the head's position (wherever it sits now; a head may also
            # be an older witness) must be the one the head names, unless already blamed.
            problems.append(
                ChainProblem(
                    kind="altered",
                    seq=head["seq"],
                    message=f"record {head['seq']} is not the record the kept head sealed "
                    "(it was replaced)",
                )
            )
    return VerifyReport(records=len(ordered), head=head, problems=tuple(problems))


def _sealed_at(record: AuditRecord | None, seq: int, key: bytes | None) -> bool:
    """Whether `record`, wherever it sits now, was sealed at position `seq`."""
    return record is not None and _digest(record, seq, record["prev"], key) == record["hash"]


def _removed(expected: int, seq: int) -> ChainProblem:
    span = f"record {expected} is" if seq == expected + 1 else f"records {expected}..{seq - 1} are"
    return ChainProblem(
        kind="removed", seq=expected, message=f"{span} missing (removed) before record {seq}"
    )


def _mismatch(
    record: AuditRecord, position_of: dict[str, int], key: bytes | None
) -> tuple[ChainProblem, int]:
    """The problem of a record that fails its hash, and the position it was sealed at."""
    seq = record["seq"]
    for sealed_at in _seal_positions(record, position_of):
        if sealed_at != seq and _digest(record, sealed_at, record["prev"], key) == record["hash"]:
            return ChainProblem(
                kind="reordered",
                seq=seq,
                message=f"record {seq} ({record['kind']} on {record['subject']!r}) was sealed "
                f"as record {sealed_at} (re-ordered)",
            ), sealed_at
    return ChainProblem(
        kind="altered",
        seq=seq,
        message=f"record {seq} ({record['kind']} on {record['subject']!r}) does not match its "
        "hash: its content was changed after it was sealed (altered)",
    ), seq


_REORDER_WINDOW = 64
"""How far from its place a moved record is looked for (only when a record fails its hash)."""


def _seal_positions(record: AuditRecord, position_of: dict[str, int]) -> Iterable[int]:
    """Where a record that fails its hash may have been sealed: after the record its `prev`
    names, or near where it sits now."""
    if record["prev"] == GENESIS:
        yield 1
    elif record["prev"] in position_of:
        yield position_of[record["prev"]] + 1
    seq = record["seq"]
    yield from range(max(1, seq - _REORDER_WINDOW), seq + _REORDER_WINDOW + 1)


def _unlinked(record: AuditRecord, position_of: dict[str, int]) -> ChainProblem:
    seq = record["seq"]
    if record["prev"] in position_of or record["prev"] == GENESIS:
        return ChainProblem(
            kind="reordered",
            seq=seq,
            message=f"record {seq} does not follow record {seq - 1}: it was sealed after "
            f"record {position_of.get(record['prev'], 0)} (re-ordered)",
        )
    return ChainProblem(
        kind="inserted",
        seq=seq,
        message=f"record {seq} links to no record of this log: it was inserted or the "
        f"record before it was replaced",
    )
