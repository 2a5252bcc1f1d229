"""The memory contract: who may touch memory (scope), and the tags every write must carry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, get_args

__all__ = [
    "DEFAULT_RETENTION",
    "SENSITIVITY_LEVELS",
    "ConflictPolicy",
    "Lineage",
    "MemoryContractError",
    "MemoryScope",
    "MemoryTags",
    "MissingTagsError",
    "RetentionClass",
    "Sensitivity",
    "Tier",
    "check_key",
    "check_namespace",
    "check_tenant",
    "sensitivity_rank",
]

Sensitivity = Literal["public", "internal", "confidential", "restricted"]
SENSITIVITY_LEVELS: tuple[Sensitivity, ...] = get_args(Sensitivity)
Tier = Literal["short", "long"]

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:@+-]{0,63}")
_MAX_DEPTH = 6
_MAX_KEY = 200
REQUIRED_TAGS = ("purpose", "retention", "sensitivity", "source", "run_id")


class MemoryContractError(ValueError):
    """A memory call breaks the contract: bad tenant, namespace, key, tag or retention class."""


class MissingTagsError(MemoryContractError):
    """A write lacks tags the memory contract requires; the message names every missing one."""


class ConflictPolicy(StrEnum):
    """What a write does when the record changed since the writer read it."""

    CAS = "cas"
    """Refuse the whole commit; the writer re-reads and decides again."""
    LWW = "lww"
    """Last writer wins; the overwritten version stays in history and the result says so."""
    ESCALATE = "escalate"
    """Refuse the commit and file the conflict for a person to settle."""


def sensitivity_rank(level: str) -> int:
    """Order of a sensitivity level (public 0 … restricted 3)."""
    try:
        return SENSITIVITY_LEVELS.index(level)  # type: ignore[arg-type]
    except ValueError:
        raise MemoryContractError(
            f"unknown sensitivity {level!r}; expected one of {', '.join(SENSITIVITY_LEVELS)}"
        ) from None


@dataclass(frozen=True, kw_only=True)
class RetentionClass:
    """How long a record lives, in which tier, and where it goes when its run ends."""

    name: str
    """Tag value writers use (`retention="profile"`)."""
    tier: Tier
    """`short` (session context, TTL) or `long` (facts and preferences, searchable)."""
    ttl_s: float | None
    """Seconds until the record expires from reads and is purged; None keeps it."""
    promote_to: str | None = None
    """Retention class a record is promoted to by `consolidate()` (short → long), if any."""


DEFAULT_RETENTION: Mapping[str, RetentionClass] = {
    rule.name: rule
    for rule in (
        RetentionClass(name="turn", tier="short", ttl_s=3600.0),
        RetentionClass(name="session", tier="short", ttl_s=86_400.0),
        RetentionClass(name="candidate", tier="short", ttl_s=86_400.0, promote_to="profile"),
        RetentionClass(name="case", tier="long", ttl_s=90 * 86_400.0),
        RetentionClass(name="profile", tier="long", ttl_s=365 * 86_400.0),
        RetentionClass(name="permanent", tier="long", ttl_s=None),
    )
}


@dataclass(frozen=True, kw_only=True)
class Lineage:
    """Where a record came from."""

    source: str
    """What produced it: `ticket:T01`, `crm`, `agent:triage`, `promotion`…"""
    run_id: str
    """Run that wrote it."""
    decision_id: str | None = None
    """Guard decision the write belongs to, when it came from a tool call."""


@dataclass(frozen=True, kw_only=True)
class MemoryTags:
    """The tags every write carries (the tenant comes from the scope, never from here)."""

    purpose: str
    """Why the data is kept; reads are limited to their purposes (purpose limitation)."""
    retention: str
    """Name of a retention class (`DEFAULT_RETENTION` or the memory's own table)."""
    sensitivity: Sensitivity
    """Readers need at least this clearance."""
    lineage: Lineage
    """Source, run and decision of the write."""

    @classmethod
    def from_mapping(cls, tags: Mapping[str, Any]) -> MemoryTags:
        """Tags from a plain mapping (`purpose`, `retention`, `sensitivity`, `source`,
        `run_id`, optional `decision_id`).

        Raises:
            MissingTagsError: naming every required tag that is absent or blank.
        """
        missing = [name for name in REQUIRED_TAGS if not str(tags.get(name) or "").strip()]
        if missing:
            raise MissingTagsError(
                f"memory write refused: missing tag(s) {', '.join(missing)}. Every write carries "
                f"purpose, retention, sensitivity and lineage (source, run_id); got "
                f"{sorted(k for k in tags if tags.get(k))}"
            )
        sensitivity_rank(tags["sensitivity"])
        return cls(
            purpose=str(tags["purpose"]),
            retention=str(tags["retention"]),
            sensitivity=tags["sensitivity"],
            lineage=Lineage(
                source=str(tags["source"]),
                run_id=str(tags["run_id"]),
                decision_id=tags.get("decision_id") or None,
            ),
        )


@dataclass(frozen=True, kw_only=True)
class MemoryScope:
    """Who is touching memory, taken from the run context (never from model output or tool args).

    The tenant is a hard wall: every namespace is prefixed with it, so no argument can reach
    another tenant's records.
    """

    tenant: str
    """Tenant of the run."""
    agent: str
    """Agent (or person, `human:<name>`) reading or writing: the commit's author."""
    purposes: frozenset[str]
    """Purposes this reader may use data for; records kept for other purposes stay hidden."""
    clearance: Sensitivity = "internal"
    """Highest sensitivity this reader may see."""
    run_id: str = ""
    """Run on whose behalf the call is made (lineage of writes, trace of reads)."""
    decision_id: str | None = None
    """Decision the reads and writes belong to, when known."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Free-form labels copied into commits (e.g. the thread id)."""

    def __post_init__(self) -> None:
        check_tenant(self.tenant)
        sensitivity_rank(self.clearance)
        if not self.agent:
            raise MemoryContractError("a memory scope needs an `agent` (the commit author)")

    def tags(
        self, *, purpose: str, retention: str, sensitivity: Sensitivity, source: str
    ) -> MemoryTags:
        """Write tags whose lineage is this scope's run and decision."""
        return MemoryTags.from_mapping(
            {
                "purpose": purpose,
                "retention": retention,
                "sensitivity": sensitivity,
                "source": source,
                "run_id": self.run_id,
                "decision_id": self.decision_id,
            }
        )


def check_tenant(tenant: str) -> str:
    """The tenant id, or a `MemoryContractError` saying what a tenant id looks like."""
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise MemoryContractError(
            f"bad tenant {tenant!r}: expected 1-64 characters of letters, digits, `_` or `-`, "
            "starting with a letter or digit"
        )
    return tenant


def check_namespace(namespace: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """A caller's namespace (below the tenant), checked: 1-6 labels of safe characters.

    Labels cannot start with `_` or contain `.`, `/` or spaces, so a namespace can neither
    climb out of its tenant nor reach Bastion's own bookkeeping.
    """
    labels = (namespace,) if isinstance(namespace, str) else tuple(namespace)
    if not 1 <= len(labels) <= _MAX_DEPTH:
        raise MemoryContractError(
            f"namespace {labels!r} has {len(labels)} labels; expected 1 to {_MAX_DEPTH}"
        )
    for label in labels:
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
            raise MemoryContractError(
                f"bad namespace label {label!r} in {labels!r}: expected 1-64 characters of "
                "letters, digits, `_ : @ + -`, starting with a letter or digit"
            )
    return labels


def check_key(key: str) -> str:
    """A record key: 1-200 printable characters without `@` (reserved for versions)."""
    if (
        not isinstance(key, str)
        or not 0 < len(key) <= _MAX_KEY
        or "@" in key
        or not key.isprintable()
    ):
        raise MemoryContractError(
            f"bad memory key {key!r}: expected 1-{_MAX_KEY} printable characters without `@`"
        )
    return key
