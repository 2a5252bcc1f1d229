"""What every policy engine shares: the scope index, the decision cache, decision assembly."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, Generic, TypeVar, get_args

from guards.base import DecisionPoint, PolicyDecision, PolicyMeta, PolicyRequest
from guards.errors import GuardConfigError

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "REQUEST_FIELDS",
    "CacheStats",
    "DecisionCache",
    "PolicyGroup",
    "ScopeIndex",
    "evaluate_cached",
    "freeze",
]

REQUEST_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PolicyRequest))
"""Top-level fields of the policy input (`input.<field>` in Rego)."""
DECISION_POINTS: frozenset[str] = frozenset(get_args(DecisionPoint))
DEFAULT_CACHE_SIZE = 4096
"""Decisions kept per engine (0 turns the cache off)."""
_ROUTES_CAP = 4096  # tool names come from model output: bound what they can make us remember


def freeze(value: Any) -> Hashable:
    """A hashable stand-in for a JSON-like value that tells `1`, `1.0` and `True` apart.

    Raises:
        TypeError: for values that are not JSON-like (such requests are not cached).
    """
    cls = value.__class__
    if cls is str:
        return value  # the common case, and a str never equals any tuple made below
    if cls is dict:  # exact-type checks first: isinstance against an ABC costs more
        return (dict, tuple([(freeze(k), freeze(v)) for k, v in value.items()]))
    if cls is int or cls is float or cls is bool or value is None:
        return (cls, value)  # 1 == 1.0 == True in Python; a policy may tell them apart
    if cls is list or cls is tuple:
        return (list, tuple([freeze(v) for v in value]))
    if isinstance(value, Mapping):
        return freeze(dict(value))
    if isinstance(value, str):
        return (str, value)
    raise TypeError(f"cannot use a {cls.__name__} in a decision cache key")


class PolicyGroup(ABC):
    """The policies in scope for a route (point, tool, tenant, workflow), evaluated together.

    An abstract base: each engine subclasses it and implements `run`. The group object itself
    is part of every cache key, so two routes that select the same policies share cached
    decisions.
    """

    def __init__(
        self, metas: tuple[PolicyMeta, ...], *, pure: bool, reads: Sequence[str] | None
    ) -> None:
        self.metas = metas
        """Contracts of the member policies, in bundle order."""
        self.refs = tuple(m.ref for m in metas)
        """`id@version` of each member (the decision's `policies`)."""
        self.pure = pure
        """Whether decisions may be cached."""
        names = tuple(REQUEST_FIELDS if reads is None else sorted(reads))
        self.fields = names
        """The request fields the members read: the cache key and, for Rego, the input."""
        getter = attrgetter(*names) if names else None
        self._values: Callable[[PolicyRequest], tuple[Any, ...]] = (
            (lambda _: ())
            if getter is None
            else (lambda r: (getter(r),))
            if len(names) == 1
            else getter  # type: ignore[assignment]
        )

    def key(self, request: PolicyRequest) -> Hashable | None:
        """Cache key: this group plus the request fields its policies read (None: uncacheable)."""
        try:
            return (self, tuple(map(freeze, self._values(request))))
        except TypeError:
            return None

    @abstractmethod
    def run(self, request: PolicyRequest) -> PolicyDecision:
        """Evaluate every member on `request`; never raises for a failing policy."""

    def decide(
        self, outcomes: Iterable[tuple[Sequence[str], Sequence[str], str | None]]
    ) -> PolicyDecision:
        """Aggregate each member's `(deny, escalate, error)` outcome into one decision."""
        denied: list[str] = []
        escalated: list[str] = []
        errors: list[str] = []
        remediation: list[str] = []
        for meta, (deny_msgs, escalate_msgs, error) in zip(self.metas, outcomes, strict=True):
            denied += deny_msgs
            escalated += escalate_msgs
            if error is not None:
                errors.append(f"policy `{meta.id}`@{meta.version} failed to evaluate: {error}")
            fix = meta.remediation
            if (deny_msgs or escalate_msgs) and fix and fix not in remediation:
                remediation.append(fix)
        return PolicyDecision(
            deny=tuple(denied),
            escalate=tuple(escalated),
            errors=tuple(errors),
            policies=self.refs,
            remediation=tuple(remediation),
        )


G = TypeVar("G", bound=PolicyGroup)


class ScopeIndex(Generic[G]):
    """Finds the policies in scope for a request without visiting the others.

    Policies are indexed once by (decision point, tool); those without tools sit under the
    point alone. The group of each route is made once (`make_group`) and remembered.
    """

    def __init__(
        self, metas: Sequence[PolicyMeta], make_group: Callable[[tuple[int, ...]], G]
    ) -> None:
        self._metas = tuple(metas)
        self._make_group = make_group
        by_tool: dict[tuple[str, str], list[int]] = {}
        any_tool: dict[str, list[int]] = {}
        for i, meta in enumerate(self._metas):
            for point in meta.decision_points:
                if point not in DECISION_POINTS:
                    raise GuardConfigError(
                        f"policy `{meta.id}`: decision point {point!r} is not one of "
                        f"{sorted(DECISION_POINTS)!r}"
                    )
                for tool in meta.scope.tools:
                    by_tool.setdefault((point, tool), []).append(i)
                if not meta.scope.tools:
                    any_tool.setdefault(point, []).append(i)
        self._by_tool = {k: tuple(v) for k, v in by_tool.items()}
        self._any_tool = {k: tuple(v) for k, v in any_tool.items()}
        self._routes: dict[tuple[str, str, str, str], G] = {}
        self._groups: dict[tuple[int, ...], G] = {}
        self._lock = threading.Lock()

    def group(self, request: PolicyRequest) -> G:
        """The group of policies in scope for `request`."""
        route = (request.point, request.tool, request.tenant, request.workflow)
        group = self._routes.get(route)
        return self._resolve(route, request) if group is None else group

    def _resolve(self, route: tuple[str, str, str, str], request: PolicyRequest) -> G:
        specific = self._by_tool.get((request.point, request.tool), ())
        general = self._any_tool.get(request.point, ())
        candidates = sorted(specific + general) if specific and general else specific or general
        members = tuple(i for i in candidates if self._metas[i].scope.covers(request))
        with self._lock:
            group = self._groups.get(members)
            if group is None:
                if len(self._groups) >= _ROUTES_CAP:
                    self._groups.clear()
                group = self._groups[members] = self._make_group(members)
            if len(self._routes) >= _ROUTES_CAP:
                self._routes.clear()
            self._routes[route] = group
        return group


@dataclass(frozen=True, kw_only=True)
class CacheStats:
    """How the decision cache is doing."""

    hits: int
    """Decisions answered from the cache."""
    misses: int
    """Cacheable decisions that had to be evaluated."""
    size: int
    """Decisions held now."""
    capacity: int
    """Most decisions held (0: cache off)."""


class DecisionCache:
    """A bounded, thread-safe LRU of decisions for pure policies."""

    def __init__(self, capacity: int = DEFAULT_CACHE_SIZE) -> None:
        if not isinstance(capacity, int) or capacity < 0:
            raise GuardConfigError(
                f"decision cache size must be a non-negative integer, got {capacity!r}. "
                "Hint: 0 turns the cache off."
            )
        self.capacity = capacity
        """Most decisions held (0: cache off)."""
        self._entries: OrderedDict[Hashable, PolicyDecision] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = 0

    def get(self, key: Hashable) -> PolicyDecision | None:
        """The cached decision for `key`, or None."""
        # No lock on the hot path: each OrderedDict call is atomic under the GIL (keys hash in
        # C), and an entry evicted between the two calls is simply a miss. Counters may lose
        # an increment under contention; they are statistics, not accounting.
        decision = self._entries.get(key)
        if decision is None:
            self._misses += 1
            return None
        try:  # noqa: SIM105 (contextlib.suppress costs more on this hot path)
            self._entries.move_to_end(key)
        except KeyError:
            pass
        self._hits += 1
        return decision

    def put(self, key: Hashable, decision: PolicyDecision) -> None:
        """Remember `decision`, evicting the least recently used beyond capacity."""
        with self._lock:
            self._entries[key] = decision
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    @property
    def stats(self) -> CacheStats:
        """Hits, misses, size and capacity."""
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                size=len(self._entries),
                capacity=self.capacity,
            )


_NO_POLICY = PolicyDecision()


def evaluate_cached(
    index: ScopeIndex[Any], cache: DecisionCache, request: PolicyRequest
) -> PolicyDecision:
    """Route `request` to its group, answer from the cache when the group is pure, else run it.

    Decisions with errors are not cached, so a failing policy is retried on the next request.
    """
    group = index.group(request)
    if not group.metas:
        return _NO_POLICY
    key = group.key(request) if cache.capacity and group.pure else None
    if key is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    decision: PolicyDecision = group.run(request)
    if key is not None and not decision.errors:
        cache.put(key, decision)
    return decision
