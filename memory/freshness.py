"""Freshness per source: records past their window are hidden or flagged; a source that goes
silent or changes shape is disabled for reads until a person re-enables it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langgraph.store.base import BaseStore

from memory.layout import all_items, ns_of

__all__ = ["FreshnessRule", "SourceMonitor", "SourceStatus"]

_CACHE_S = 1.0  # other processes' enable/disable calls are seen within this many seconds


@dataclass(frozen=True, kw_only=True)
class FreshnessRule:
    """How fresh records of a source must be (the longest matching `source_prefix` applies)."""

    source_prefix: str
    """Sources this rule covers: `crm` covers `crm`, `crm:accounts`…"""
    max_age_s: float | None = None
    """Records older than this are past their window."""
    on_stale: Literal["exclude", "flag"] = "exclude"
    """What reads do with records past their window: hide them, or return them flagged."""
    max_silence_s: float | None = None
    """A source with no write for this long is disabled for reads (its feed died)."""
    check_shape: bool = False
    """Disable the source when a write's top-level fields differ from its first write's
    (the feed drifted)."""


@dataclass(frozen=True, kw_only=True)
class SourceStatus:
    """What reads do with a source right now (shown by `bastion memory sources`)."""

    source: str
    enabled: bool
    reason: str
    """Why it is disabled (or how it was re-enabled)."""
    changed_by: str
    changed_at: float
    last_write: float
    fields: tuple[str, ...]
    """Top-level fields of its first write (the shape drift is measured against)."""


class SourceMonitor:
    """Tracks every source's last write and shape per tenant, in the long-term store.

    Args:
        rules: freshness rules; sources without a rule are always fresh and enabled.
        clock: seconds since the epoch (injectable for tests).
    """

    def __init__(
        self, rules: Sequence[FreshnessRule] = (), *, clock: Callable[[], float] = time.time
    ) -> None:
        self._rules = sorted(rules, key=lambda rule: len(rule.source_prefix), reverse=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, SourceStatus]]] = {}

    def rule_for(self, source: str) -> FreshnessRule | None:
        """The rule covering `source`, if any."""
        for rule in self._rules:
            prefix = rule.source_prefix
            if source == prefix or source.startswith(prefix + ":"):
                return rule
        return None

    def observe(self, store: BaseStore, tenant: str, source: str, value: Any, *, by: str) -> None:
        """Record a write from `source`; disable the source if its shape drifted, and keep it
        disabled if it had gone silent (the silence is stored, not only computed on reads)."""
        now = self._clock()
        status = self._load(store, tenant, source)
        fields = tuple(sorted(value)) if isinstance(value, Mapping) else ()
        rule = self.rule_for(source)
        if status is not None:
            # A feed that went silent stays disabled when it speaks again: only a person
            # (`set_enabled`) decides its data can be trusted once more.
            status = self._silenced(status, now)
        if status is None:
            status = SourceStatus(
                source=source, enabled=True, reason="first write", changed_by=by,
                changed_at=now, last_write=now, fields=fields,
            )  # fmt: skip
        elif rule and rule.check_shape and status.enabled and status.fields not in ((), fields):
            status = _replace(
                status, enabled=False, changed_by=by, changed_at=now, last_write=now,
                reason=f"drift: fields {list(fields)} differ from {list(status.fields)}",
            )  # fmt: skip
        else:
            status = _replace(status, last_write=now, fields=status.fields or fields)
        self._save(store, tenant, status)

    def set_enabled(
        self, store: BaseStore, tenant: str, source: str, enabled: bool, *, by: str, reason: str
    ) -> SourceStatus:
        """Enable or disable a source for reads, with who and why on record.

        Re-enabling also adopts the latest shape and restarts the silence clock.
        """
        now = self._clock()
        status = self._load(store, tenant, source) or SourceStatus(
            source=source, enabled=True, reason="", changed_by=by, changed_at=now,
            last_write=now, fields=(),
        )  # fmt: skip
        status = _replace(
            status, enabled=enabled, reason=reason, changed_by=by, changed_at=now,
            last_write=now if enabled else status.last_write,
            fields=() if enabled else status.fields,
        )  # fmt: skip
        self._save(store, tenant, status)
        return status

    def statuses(
        self, store: BaseStore, tenant: str, *, fresh: bool = False
    ) -> dict[str, SourceStatus]:
        """Every known source of `tenant`, with silence applied (a silent source is disabled)."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(tenant)
        if cached is None or fresh or now - cached[0] > _CACHE_S:
            items = all_items(store, ns_of(tenant, "sources"))
            cached = (now, {item.key: _status_from(item.value) for item in items})
            with self._lock:
                self._cache[tenant] = cached
        return {source: self._silenced(status, now) for source, status in cached[1].items()}

    def verdict(
        self, statuses: Mapping[str, SourceStatus], source: str, written_at: float
    ) -> Literal["ok", "stale", "blocked"]:
        """What a read does with a record: keep it, keep it flagged stale, or hide it."""
        status = statuses.get(source)
        if status is not None and not status.enabled:
            return "blocked"
        rule = self.rule_for(source)
        if rule and rule.max_age_s is not None and self._clock() - written_at > rule.max_age_s:
            return "blocked" if rule.on_stale == "exclude" else "stale"
        return "ok"

    def _load(self, store: BaseStore, tenant: str, source: str) -> SourceStatus | None:
        """One source's stored state (a write reads only its own source, not all of them)."""
        item = store.get(ns_of(tenant, "sources"), source)
        return _status_from(item.value) if item is not None else None

    def _silenced(self, status: SourceStatus, now: float) -> SourceStatus:
        rule = self.rule_for(status.source)
        silence = rule.max_silence_s if rule else None
        if status.enabled and silence is not None and now - status.last_write > silence:
            return _replace(
                status, enabled=False, changed_by="freshness-monitor",
                changed_at=status.last_write + silence,
                reason=f"stale: silent {now - status.last_write:.0f}s (window {silence:.0f}s)",
            )  # fmt: skip
        return status

    def _save(self, store: BaseStore, tenant: str, status: SourceStatus) -> None:
        store.put(ns_of(tenant, "sources"), status.source, _status_payload(status), index=False)
        with self._lock:
            self._cache.pop(tenant, None)


def _replace(status: SourceStatus, **changes: Any) -> SourceStatus:
    return SourceStatus(**{**status.__dict__, **changes})


def _status_payload(status: SourceStatus) -> dict[str, Any]:
    return {**status.__dict__, "fields": list(status.fields)}


def _status_from(payload: Mapping[str, Any]) -> SourceStatus:
    return SourceStatus(**{**payload, "fields": tuple(payload.get("fields", ()))})
