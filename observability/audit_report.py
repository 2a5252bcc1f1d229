"""The human-readable audit report: the log's state, its problems, and each run in sentences."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from observability.chain import ChainProblem, VerifyReport
from observability.events import AuditHead, AuditRecord

__all__ = ["record_sentence", "render_report"]


def render_report(
    records: Sequence[AuditRecord],
    *,
    log: str,
    tenant: str | None,
    head: AuditHead | None,
    report: VerifyReport | None,
) -> str:
    """Markdown: a header (log, scope, time range, head, the verification with every problem),
    the gaps, then the records of each run and those outside any run, one sentence each.

    Args:
        records: the exported records, in sequence order.
        log: the log's name (file or redacted URL).
        tenant: the tenant the export is filtered to, if any.
        head: the head the records were read up to.
        report: the check of the whole log; None for a tenant-filtered export.
    """
    problems: dict[int, list[ChainProblem]] = {}
    for problem in report.problems if report else ():
        problems.setdefault(problem.seq, []).append(problem)
    lines = ["# Bastion audit report", ""]
    lines += _header(records, log=log, tenant=tenant, head=head, report=report)
    gaps = [r for r in records if r["kind"] == "gap"]
    if gaps:
        lines += ["", "## ⚠ GAPS: records that were never written", ""]
        lines += [f"- **{record_sentence(r)}** (record {r['seq']})" for r in gaps]
    runs: dict[str, list[AuditRecord]] = {}
    for record in records:
        runs.setdefault(record["run_id"], []).append(record)
    for run_id, mine in runs.items():
        title = f"Run {_code(run_id)}" if run_id else "Outside any run"
        tenants = ", ".join(_code(t) for t in dict.fromkeys(r["tenant"] for r in mine))
        lines += ["", f"## {title} (tenant {tenants})", ""]
        lines += _run_lines(mine, problems)
    if not records:
        lines += ["", "_No records._"]
    return "\n".join(lines) + "\n"


def _header(
    records: Sequence[AuditRecord],
    *,
    log: str,
    tenant: str | None,
    head: AuditHead | None,
    report: VerifyReport | None,
) -> list[str]:
    scope = "every tenant" if tenant is None else f"tenant {_code(tenant)} (and `*` records)"
    lines = [
        f"- **Log:** {_code(log)}",
        f"- **Exported:** {_utc(datetime.now(UTC).timestamp())} UTC",
        f"- **Scope:** {scope}",
    ]
    if records:
        times = [r["ts"] for r in records if isinstance(r["ts"], int | float)] or [0]
        lines.append(
            f"- **Records:** {len(records)} (records {records[0]['seq']}..{records[-1]['seq']}), "
            f"{_utc(min(times))} to {_utc(max(times))} UTC"
        )
    else:
        lines.append("- **Records:** none")
    held = f"record {head['seq']}, hash {_code(head['hash'])}" if head else "none"
    if head is None:
        held += " (MISSING, see the verification)" if records else " (empty log)"
    lines.append(f"- **Head:** {held}")
    if report is None:
        lines.append(
            "- **Verification:** NOT VERIFIED. This export holds one tenant's records only; the "
            "chain runs through every tenant's records, so it cannot be checked from here. "
            "An administrator can verify the whole log with `bastion audit verify`."
        )
    elif report.ok:
        lines.append(
            f"- **Verification:** INTACT. All {report.records} records match their hashes, "
            "follow each other in order, and end at the kept head."
        )
    else:
        lines.append(
            f"- **Verification:** FAILED. {len(report.problems)} problem(s) in "
            f"{report.records} records:"
        )
        lines += [f"  - **{p.kind}** at record {p.seq}: {p.message}" for p in report.problems]
    return lines


def _run_lines(
    records: Sequence[AuditRecord], problems: Mapping[int, list[ChainProblem]]
) -> list[str]:
    lines, day = [], ""
    for record in records:
        stamp = _utc(record["ts"])
        shown = stamp if stamp[:10] != day else stamp[11:]  # the date once per day
        day = stamp[:10]
        text = f"- {shown} {record_sentence(record)} (record {record['seq']})"
        for problem in problems.get(record["seq"], ()):
            text += f" **⚠ {problem.kind.upper()}: {problem.message}**"
        lines.append(text)
    return lines


def record_sentence(record: AuditRecord) -> str:
    """What one record says, in a sentence without the time."""
    phrase = _PHRASES.get(record["kind"], _other)
    return phrase(record, record["detail"] if isinstance(record["detail"], dict) else {})


_GUARD_VERBS = {"allow": "allowed", "deny": "denied", "escalate": "escalated", "halt": "halted"}
_HUMAN_VERBS = _GUARD_VERBS | {"allow": "approved", "deny": "rejected"}


def _decision(record: AuditRecord, detail: Mapping[str, Any]) -> str:
    verdict = str(detail.get("verdict") or "?")
    tool = _code(detail.get("tool") or detail.get("call_id") or record["subject"])
    human = record["actor"].startswith("human:")
    verbs = _HUMAN_VERBS if human else _GUARD_VERBS
    text = f"{_actor(record['actor'])} {verbs.get(verdict, verdict)} {tool}"
    if verdict == "escalate":
        text += f" to a human (zone {detail.get('zone') or '?'})"
    text += f" (decision {_code(record['subject'])})"
    reasons = "; ".join(_listed(detail.get("reasons")))
    if reasons:
        text += f": {reasons}" if human else f" because {reasons}"
    if detail.get("note"):
        text += f"; note: {detail['note']}"
    policies = _listed(detail.get("policies"))
    if policies:
        text += "; policies " + ", ".join(_code(p) for p in policies)
    return text


def _effect(record: AuditRecord, detail: Mapping[str, Any]) -> str:
    how = [str(detail.get("side_effect") or "side effect unknown")]
    if detail.get("replayed"):
        how.append("replayed from the ledger, not run again")
    return (
        f"effect: {_code(detail.get('tool') or '?')} ran ({', '.join(how)}) for "
        f"{_actor(record['actor'])} (call {_code(record['subject'])})"
    )


def _timeout(record: AuditRecord, detail: Mapping[str, Any]) -> str:
    action = _text(detail, "action", "on_timeout", "default") or "the default action"
    return (
        f"no reviewer answered in time: {_actor(record['actor'])} applied {_code(action)} "
        f"to {_code(record['subject'])}{_why(detail)}"
    )


def _gap(record: AuditRecord, detail: Mapping[str, Any]) -> str:
    since, until = detail.get("since"), detail.get("until")
    span = (
        f" between {_utc(since)} and {_utc(until)} UTC"
        if isinstance(since, int | float) and isinstance(until, int | float)
        else ""
    )
    lost = detail.get("dropped_steps", record["subject"])
    return f"GAP: {lost} trace step(s) were lost{span}; what they decided is NOT on record"


def _other(record: AuditRecord, detail: Mapping[str, Any]) -> str:
    rest = {k: v for k, v in detail.items() if k not in ("reason", "note", "rationale")}
    extra = f" [{_short(rest)}]" if rest else ""
    return (
        f"{record['kind']} by {_actor(record['actor'])} on {_code(record['subject'])}"
        f"{_why(detail)}{extra}"
    )


def _verb(verb: str) -> Callable[[AuditRecord, Mapping[str, Any]], str]:
    def phrase(record: AuditRecord, detail: Mapping[str, Any]) -> str:
        target = _text(detail, "scope", "target", "bundle", "namespace") or record["subject"]
        return f"{_actor(record['actor'])} {verb} {_code(target)}{_why(detail)}"

    return phrase


_PHRASES: dict[str, Callable[[AuditRecord, Mapping[str, Any]], str]] = {
    "decision": _decision,
    "approval": _decision,
    "approval_timeout": _timeout,
    "effect": _effect,
    "undo": _verb("undid"),
    "kill": _verb("KILLED"),
    "lift": _verb("lifted the kill on"),
    "policy": _verb("loaded policies"),
    "memory_revert": _verb("reverted memory"),
    "feedback": _verb("gave feedback on"),
    "gap": _gap,
}


def _actor(actor: str) -> str:
    """`guard` -> "the guard"; `human:ann` -> "reviewer `ann`"; `cli:bob` -> "`bob` (CLI)"."""
    kind, _, name = actor.partition(":")
    if not name:
        return "the guard" if actor == "guard" else _code(actor)
    labels = {"human": "reviewer {}", "agent": "agent {}", "cli": "{} (CLI)"}
    labels |= {"console": "{} (console)", "system": "the system ({})"}
    return labels.get(kind, kind + " {}").format(_code(name) if kind != "system" else name)


def _why(detail: Mapping[str, Any]) -> str:
    reason = _text(detail, "reason", "rationale")
    note = _text(detail, "note")
    return (f": {reason}" if reason else "") + (f"; note: {note}" if note else "")


def _utc(ts: Any) -> str:
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return f"(time {ts!r})"  # a tampered record; verification names it
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(value: Any, width: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _code(value: Any) -> str:
    """A Markdown code span (backticks inside become quotes)."""
    text = str(value).replace("`", "'")
    return f"`{text}`"


def _listed(values: Any) -> list[str]:
    if isinstance(values, list | tuple):
        return [str(v) for v in values]
    return [] if values in (None, "") else [str(values)]


def _text(detail: Mapping[str, Any], *keys: str) -> str:
    """The first non-empty of `keys` in `detail`, as text."""
    return next((str(detail[k]) for k in keys if detail.get(k) not in (None, "", [])), "")
