"""Policies written as Python functions (`@rule`), and the engine that evaluates them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from guards.base import DecisionPoint, PolicyDecision, PolicyMeta, PolicyRequest, PolicyScope
from guards.decisions import (
    DEFAULT_CACHE_SIZE,
    REQUEST_FIELDS,
    CacheStats,
    DecisionCache,
    PolicyGroup,
    ScopeIndex,
    evaluate_cached,
)
from guards.errors import GuardConfigError

__all__ = [
    "PythonRule",
    "PythonRulesEngine",
    "RuleResult",
    "deny",
    "escalate",
    "rule",
]


@dataclass(frozen=True, kw_only=True)
class RuleResult:
    """What one Python rule says about a request."""

    kind: Literal["deny", "escalate"]
    """Refuse the action, or ask a human first."""
    message: str
    """Why, in words an agent or a reviewer can act on."""


def deny(message: str) -> RuleResult:
    """A rule result refusing the action because of `message`."""
    return RuleResult(kind="deny", message=message)


def escalate(message: str) -> RuleResult:
    """A rule result asking a human to approve the action first, because of `message`."""
    return RuleResult(kind="escalate", message=message)


RuleCheck = Callable[[PolicyRequest], "RuleResult | Iterable[RuleResult] | None"]
"""A rule's body: `None` (no objection), one result, or several."""


@dataclass(frozen=True, kw_only=True)
class PythonRule:
    """A policy written as a Python function, with its contract."""

    meta: PolicyMeta
    """The policy contract (id, version, owner, scope, decision points, remediation)."""
    check: RuleCheck
    """The body; exceptions it raises become decision errors (the guard fails closed)."""
    pure: bool = False
    """True when the answer depends on the request alone, so decisions may be cached."""
    reads: frozenset[str] | None = None
    """Request fields the check reads (e.g. `{"tool", "args"}`); None: all. Narrow reads let a
    cached decision serve later steps of a run, whose `usage` has changed."""


def _names(value: str | Iterable[str]) -> frozenset[str]:
    return frozenset((value,) if isinstance(value, str) else value)


def rule(
    *,
    id: str,
    version: str,
    owner: str,
    tenants: str | Iterable[str] = (),
    workflows: str | Iterable[str] = (),
    tools: str | Iterable[str] = (),
    decision_points: Iterable[DecisionPoint] = ("tool_call",),
    remediation: str = "",
    pure: bool = False,
    reads: Iterable[str] | None = None,
) -> Callable[[RuleCheck], PythonRule]:
    """Decorate a check function into a `PythonRule`; the keywords are its contract."""
    scope = PolicyScope(tenants=_names(tenants), workflows=_names(workflows), tools=_names(tools))
    meta = PolicyMeta(id=id, version=version, owner=owner, scope=scope, remediation=remediation,
                      decision_points=tuple(decision_points))  # fmt: skip
    fields_read = None if reads is None else _names(reads)
    return lambda check: PythonRule(meta=meta, check=check, pure=pure, reads=fields_read)


def _results(value: Any) -> tuple[list[str], list[str]] | None:
    """Split what a rule returned into deny and escalate messages (None: not a valid return)."""
    items = () if value is None else (value,) if isinstance(value, RuleResult) else value
    denied: list[str] = []
    escalated: list[str] = []
    try:
        for item in items:
            if not isinstance(item, RuleResult):
                return None
            (denied if item.kind == "deny" else escalated).append(item.message)
    except TypeError:
        return None
    return denied, escalated


class _RuleGroup(PolicyGroup):
    def __init__(self, rules: tuple[PythonRule, ...]) -> None:
        reads = [r.reads for r in rules]
        super().__init__(
            tuple(r.meta for r in rules),
            pure=all(r.pure for r in rules),
            reads=None if None in reads else frozenset().union(*reads),  # type: ignore[arg-type]
        )
        self._checks = tuple(r.check for r in rules)

    def run(self, request: PolicyRequest) -> PolicyDecision:
        outcomes: list[tuple[Sequence[str], Sequence[str], str | None]] = []
        for check in self._checks:
            try:
                returned = check(request)
            except Exception as error:
                outcomes.append(((), (), f"{type(error).__name__}: {error}"))
                continue
            results = _results(returned)
            if results is None:
                why = (
                    f"returned {returned!r:.80}; expected deny(...), escalate(...), a list, or None"
                )
                outcomes.append(((), (), why))
            else:
                outcomes.append((*results, None))
        return self.decide(outcomes)


class _RuleSet:
    """One immutable generation of rules with its index and cache (swapped whole on reload)."""

    def __init__(self, rules: Iterable[PythonRule], cache_size: int) -> None:
        self.rules = tuple(rules)
        seen: set[str] = set()
        for r in self.rules:
            if not isinstance(r, PythonRule):
                raise GuardConfigError(
                    f"expected PythonRule objects, got {r!r:.60}. Hint: decorate the check "
                    "function with `@rule(id=..., version=..., owner=...)`."
                )
            if r.meta.id in seen:
                raise GuardConfigError(f"policy id `{r.meta.id}` is used by two rules")
            unknown = sorted((r.reads or frozenset()) - set(REQUEST_FIELDS))
            if unknown:
                raise GuardConfigError(
                    f"rule `{r.meta.id}` reads unknown request field(s) {unknown!r}; the fields "
                    f"are {list(REQUEST_FIELDS)!r}"
                )
            seen.add(r.meta.id)
        refs = ",".join(str(r.meta.ref) for r in self.rules)
        self.revision = "py-" + hashlib.sha256(refs.encode()).hexdigest()[:12]
        self.index = ScopeIndex(
            [r.meta for r in self.rules],
            lambda members: _RuleGroup(tuple(self.rules[i] for i in members)),
        )
        self.cache = DecisionCache(cache_size)


class PythonRulesEngine:
    """A `PolicyEngine` over Python rules: only the rules in scope run, pure ones are cached.

    Example:
        >>> @rule(id="no-deletes", version="1", owner="sec", tools="delete_account", pure=True)
        ... def no_deletes(request):
        ...     return deny("accounts are never deleted by agents")
        >>> engine = PythonRulesEngine([no_deletes])
    """

    def __init__(
        self, rules: Iterable[PythonRule] = (), *, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        self._cache_size = cache_size
        self._set = _RuleSet(rules, cache_size)

    @property
    def policies(self) -> tuple[PolicyMeta, ...]:
        """Contracts of the loaded rules."""
        return tuple(r.meta for r in self._set.rules)

    @property
    def revision(self) -> str:
        """`py-<hash>` of the loaded rule ids and versions."""
        return self._set.revision

    @property
    def cache_stats(self) -> CacheStats:
        """The decision cache's counters."""
        return self._set.cache.stats

    def reload(self, rules: Iterable[PythonRule]) -> str:
        """Swap in a new rule set (and an empty cache) atomically; returns the new revision."""
        self._set = _RuleSet(rules, self._cache_size)
        return self._set.revision

    def evaluate(self, request: PolicyRequest) -> PolicyDecision:
        """Decide one request. Rule exceptions become `errors`; nothing raises."""
        rule_set = self._set
        return evaluate_cached(rule_set.index, rule_set.cache, request)
