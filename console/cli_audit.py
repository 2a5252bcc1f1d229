"""Audit records of what an operator does from the `bastion` command line."""

from __future__ import annotations

import time
from typing import Any

from observability import AuditKind, AuditLog, AuditRecord

__all__ = ["audit_cli"]


def audit_cli(
    audit: AuditLog,
    *,
    kind: AuditKind,
    by: str,
    tenant: str,
    subject: str,
    run_id: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditRecord:
    """Seal one record of a CLI action, synchronously (the action is on record when the
    command returns), with actor `cli:<by>`.

    Raises:
        AuditConfigError: the entry is malformed (a detail that is not JSON).
        TraceBackendError: the audit log cannot be written.
    """
    (record,) = audit.append(
        [
            {
                "kind": kind,
                "ts": time.time(),
                "tenant": tenant,
                "actor": f"cli:{by}",
                "run_id": run_id,
                "subject": subject,
                "detail": detail or {},
            }
        ]
    )
    return record
