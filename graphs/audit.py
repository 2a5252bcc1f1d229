"""Policy changes on the audit record: a `policy` entry whenever the policies served change."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from guards.base import PolicyEngine, PolicyMeta
from guards.bundle import PolicyBundle
from observability import AuditEntry, AuditLog, AuditRecord

__all__ = ["policy_subject", "record_policy_bundle"]

_PAGE = 1000
"""Records read per call while looking for the latest `policy` record."""


def _bundle_of(source: PolicyEngine | PolicyBundle) -> PolicyBundle | None:
    if isinstance(source, PolicyBundle):
        return source
    bundle = getattr(source, "bundle", None)  # RegoPolicyEngine serves a bundle
    return bundle if isinstance(bundle, PolicyBundle) else None


def _metas(source: PolicyEngine | PolicyBundle) -> tuple[PolicyMeta, ...]:
    if isinstance(source, PolicyBundle):
        return tuple(p.meta for p in source.policies)
    return tuple(source.policies)


def policy_subject(source: PolicyEngine | PolicyBundle) -> str:
    """What identifies the policies served: a bundle's digest (which pins every file), else
    the engine's `revision` (`PythonRulesEngine`), else a digest of the policy contracts."""
    bundle = _bundle_of(source)
    if bundle is not None:
        return bundle.digest
    revision = getattr(source, "revision", None)
    if isinstance(revision, str) and revision:
        return revision
    contracts = sorted(
        (m.id, m.version, m.owner, sorted(m.scope.tools), sorted(m.scope.tenants))
        for m in _metas(source)
    )
    return "sha256:" + hashlib.sha256(json.dumps(contracts).encode()).hexdigest()


def _latest_policy(audit: AuditLog) -> AuditRecord | None:
    """The newest `policy` record (policy records are few: paging through them is cheap)."""
    latest, after = None, 0
    while True:
        page = audit.records(after=after, limit=_PAGE, kind="policy")
        if not page:
            return latest
        latest, after = page[-1], page[-1]["seq"]
        if len(page) < _PAGE:
            return latest


def _detail(source: PolicyEngine | PolicyBundle, previous: AuditRecord | None) -> dict[str, Any]:
    metas = _metas(source)
    refs = [f"{m.id}@{m.version}" for m in metas]
    before = list(previous["detail"].get("policies") or []) if previous else []
    detail: dict[str, Any] = {
        "policies": refs,
        "owners": {m.id: m.owner for m in metas},
        "added": [r for r in refs if r not in before],
        "removed": [r for r in before if r not in refs],
        "previous": previous["subject"] if previous else None,
    }
    bundle = _bundle_of(source)
    if bundle is not None:
        detail.update(
            bundle=bundle.name,
            revision=bundle.revision,
            path=str(bundle.path),
            signed=bundle.signed,
        )
    else:
        detail["revision"] = getattr(source, "revision", None)
    return detail


def record_policy_bundle(
    audit: AuditLog, engine: PolicyEngine | PolicyBundle, *, actor: str
) -> AuditRecord | None:
    """Seal a `policy` record for the policies `engine` serves, unless the latest `policy`
    record already names them (restarting with the same bundle adds nothing; a changed one
    is recorded, with what changed).

    The subject is `policy_subject(engine)` (a bundle's digest); the detail lists the policies
    as `id@version`, their owners, those `added` and `removed` since the previous record, and
    for a bundle its name, revision, path and whether its signature was verified. Two
    processes starting at once with a new bundle may both record it (the log has no
    compare-and-append); a duplicate says the same thing twice, never something false.

    Args:
        audit: the audit log.
        engine: the policy engine now serving (or a loaded bundle about to be served).
        actor: who made the change, e.g. `system:startup`, `cli:<user>`.

    Returns:
        the sealed record, or None when the policies did not change.

    Raises:
        TraceBackendError: the audit log cannot be read or written.
    """
    subject = policy_subject(engine)
    previous = _latest_policy(audit)
    if previous is not None and previous["subject"] == subject:
        return None
    entry = AuditEntry(
        kind="policy",
        ts=time.time(),
        tenant="*",
        actor=actor,
        run_id="",
        subject=subject,
        detail=_detail(engine, previous),
    )
    (record,) = audit.append([entry])
    return record
