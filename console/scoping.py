"""What a console key may see: runs, events and audit records of its tenants only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from console.api_support import ApiError
from console.auth import ApiKey
from observability import AuditLog, AuditRecord, RunSummary, TraceEvent, TraceSink, fold_run

__all__ = ["audit_records", "key_events", "key_runs", "run_events", "run_summary", "tenant_calls"]

Item = TypeVar("Item")


def tenant_calls(key: ApiKey, fetch: Callable[[str | None], list[Item]]) -> list[Item]:
    """`fetch(tenant)` once for all tenants (a `*` key), else once per tenant of the key."""
    if key.all_tenants:
        return fetch(None)
    found: list[Item] = []
    for tenant in sorted(key.tenants):
        found += fetch(tenant)
    return found


def key_runs(traces: TraceSink, key: ApiKey, limit: int) -> list[RunSummary]:
    """The key's tenants' runs, most recently updated first."""
    runs = tenant_calls(key, lambda tenant: traces.runs(tenant=tenant, limit=limit))
    return sorted(runs, key=lambda r: r["updated_at"], reverse=True)[:limit]


def key_events(traces: TraceSink, key: ApiKey, limit: int) -> list[TraceEvent]:
    """The key's tenants' newest trace events."""
    return tenant_calls(key, lambda tenant: traces.events(tenant=tenant, limit=limit))


def run_events(traces: TraceSink, key: ApiKey, run_id: str) -> list[TraceEvent]:
    """A run's events, oldest first; 404 when it is unknown or of a tenant the key does not
    cover (the two look the same)."""
    events = traces.events(run_id=run_id) if run_id else []
    tenant = next((e["tenant"] for e in events if e["tenant"]), "")
    if not events or not key.covers(tenant):
        raise ApiError(
            404,
            f"no run {run_id!r}",
            "GET /bastion/api/runs lists the runs this key can see",
        )
    return events


def run_summary(events: Sequence[TraceEvent]) -> RunSummary | None:
    """A run's summary folded from its events, as every trace sink folds it."""
    summary: RunSummary | None = None
    for event in events:
        summary = fold_run(summary, event)
    return summary


_PAGE = 1000


def audit_records(
    audit: AuditLog,
    key: ApiKey,
    *,
    after: int,
    limit: int,
    kind: str | None,
    run_id: str | None,
) -> list[AuditRecord]:
    """Audit records the key may read (its tenants' and the `*` ones), `seq > after`, in
    order, at most `limit`."""
    if key.all_tenants:
        return audit.records(after=after, limit=limit, kind=kind, run_id=run_id)
    if len(key.tenants) == 1:
        (tenant,) = key.tenants
        return audit.records(after=after, limit=limit, tenant=tenant, kind=kind, run_id=run_id)
    chosen: list[AuditRecord] = []
    while len(chosen) < limit:  # several tenants: page through, keep theirs
        page = audit.records(after=after, limit=_PAGE, kind=kind, run_id=run_id)
        chosen += [r for r in page if r["tenant"] == "*" or key.covers(r["tenant"])]
        if len(page) < _PAGE:
            break
        after = page[-1]["seq"]
    return chosen[:limit]
