"""Exporting the audit log: JSONL with its head beside it, a readable report, offline checks."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from observability.audit_report import render_report
from observability.base import AuditLog
from observability.chain import AuditConfigError, VerifyReport, canonical, verify_chain
from observability.events import AuditHead, AuditRecord

__all__ = ["ExportFormat", "ExportResult", "export_audit", "head_path", "verify_jsonl"]

ExportFormat = Literal["jsonl", "report"]
"""`jsonl`: one record per line (plus `<name>.head.json`); `report`: Markdown for people."""

_PAGE = 1000
"""Records read from the log per call."""


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    """What an export wrote and what the chain check found."""

    path: Path
    """The file written."""
    records: int
    """Records exported."""
    verified: VerifyReport | None
    """The chain check of the whole log at export time; None for a tenant-filtered export,
    which cannot be verified (the other tenants' records the chain runs through are left out)."""
    head_file: Path | None = None
    """For JSONL: the `<name>.head.json` beside it (the head and the check, for `verify_jsonl`)."""

    @property
    def ok(self) -> bool:
        """False only when the check found problems."""
        return self.verified is None or self.verified.ok

    @property
    def text(self) -> str:
        """One line for a terminal."""
        if self.verified is None:
            check = "not verified (tenant-filtered export)"
        elif self.verified.ok:
            check = "chain verified intact"
        else:
            check = f"CHAIN BROKEN: {len(self.verified.problems)} problem(s)"
        return f"wrote {self.records} audit records to {self.path}; {check}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (`bastion audit export --json`)."""
        return {
            "path": str(self.path),
            "records": self.records,
            "verified": None if self.verified is None else self.verified.as_dict(),
            "head_file": None if self.head_file is None else str(self.head_file),
            "ok": self.ok,
        }


def head_path(path: Path) -> Path:
    """The head file of a JSONL export: `audit.jsonl` -> `audit.head.json`."""
    return path.with_suffix(".head.json")


def export_audit(
    log: AuditLog, out: Path, *, tenant: str | None = None, fmt: ExportFormat = "jsonl"
) -> ExportResult:
    """Write the log (or one tenant's records, with the `*` ones) to `out`.

    The whole log is verified first, and exactly the records up to the head it was verified
    against are written, so appends made meanwhile never disagree with the stated head.
    JSONL writes one `AuditRecord` per line (canonical JSON) and, beside it, `head_path(out)`:
    `{"head", "tenant", "records", "exported_at", "verified"}`; each line stays a record.

    Raises:
        AuditConfigError: an unknown format.
        TraceBackendError: the log cannot be read.
        OSError: `out` cannot be written.
    """
    if fmt not in ("jsonl", "report"):
        raise AuditConfigError(f"audit export format {fmt!r} is unknown; use 'jsonl' or 'report'")
    report = None if tenant is not None else log.verify()
    head = report.head if report is not None else log.head()
    records = _upto(log, head["seq"] if head else None, tenant)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "report":
        text = render_report(records, log=_name(log), tenant=tenant, head=head, report=report)
        _write(out, [text])
        return ExportResult(path=out, records=len(records), verified=report)
    _write(out, (canonical(record).decode() + "\n" for record in records))
    meta = {
        "head": head,
        "tenant": tenant,
        "records": len(records),
        "exported_at": time.time(),
        "log": _name(log),
        "verified": None if report is None else report.as_dict(),
    }
    _write(head_path(out), [json.dumps(meta, indent=2, sort_keys=True) + "\n"])
    return ExportResult(path=out, records=len(records), verified=report, head_file=head_path(out))


def verify_jsonl(
    path: Path, *, key: bytes | None = None, head: AuditHead | None = None
) -> VerifyReport:
    """Check a JSONL export offline, without the log.

    Args:
        path: the export.
        key: the log's HMAC key, if it has one.
        head: the head to check against, e.g. a witness copied elsewhere; None: the one in
            `head_path(path)`, if that file exists (else truncation goes unnoticed).

    A line that is not a JSON record becomes a blank record at the next position, so it is
    reported as altered there.

    Raises:
        AuditConfigError: the export is filtered to one tenant (its chain cannot be checked).
        OSError: a file cannot be read.
    """
    side = head_path(path)
    meta = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
    if meta.get("tenant") is not None:
        raise AuditConfigError(
            f"{path} holds only tenant {meta['tenant']!r}'s records, so its chain cannot be "
            "verified (the other records it links through are missing). Hint: verify a full "
            "export (no tenant), or the log itself with `bastion audit verify`."
        )
    if head is None and meta.get("head"):
        head = AuditHead(seq=int(meta["head"]["seq"]), hash=str(meta["head"]["hash"]))
    return verify_chain(_read_jsonl(path), head=head, key=key)


def _read_jsonl(path: Path) -> Iterator[AuditRecord]:
    seq = 0
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                seq = int(record["seq"])
            except (ValueError, TypeError, KeyError):
                seq += 1
                record = dict.fromkeys(("kind", "tenant", "actor", "run_id", "subject"), "")
                record.update(ts=0, detail={"unreadable": line.strip()}, seq=seq, prev="", hash="")
            yield record


def _upto(log: AuditLog, last: int | None, tenant: str | None) -> list[AuditRecord]:
    """The log's records (of `tenant`, with `*`) with `seq <= last` (None: all; a log without
    a head may still hold records), read page by page."""
    records: list[AuditRecord] = []
    after, bound = 0, float("inf") if last is None else last
    while after < bound:
        page = log.records(after=after, limit=_PAGE, tenant=tenant)
        records += [record for record in page if record["seq"] <= bound]
        if len(page) < _PAGE or page[-1]["seq"] >= bound:
            break
        after = page[-1]["seq"]
    return records


def _write(path: Path, chunks: Iterable[str]) -> None:
    """Write via a temporary file and rename it: a reader never sees half an export."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as handle:
        handle.writelines(chunks)
    os.replace(partial, path)


def _name(log: AuditLog) -> str:
    return str(getattr(log, "url", None) or type(log).__name__)
