"""`export_audit` and `verify_jsonl`: JSONL round trips checked offline, tampered exports caught,
and a Markdown report that states the facts a reviewer looks for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from observability import AuditConfigError, AuditEntry, AuditHead, AuditLog, InMemoryAuditLog
from observability.audit_export import ExportResult, export_audit, head_path, verify_jsonl
from observability.sqlite_audit import SqliteAuditLog

T0 = 1_767_189_600.0  # 2025-12-31 14:00:00 UTC


def decision(n: int, run: str, *, verdict: str = "allow", actor: str = "guard") -> AuditEntry:
    """A decision (or, decided by a human, an approval) as the tracer records it."""
    return AuditEntry(
        kind="approval" if actor.startswith("human:") else "decision",
        ts=T0 + n,
        tenant="acme" if run != "r-globex" else "globex",
        actor=actor,
        run_id=run,
        subject=f"dec-{n}",
        detail={
            "verdict": verdict,
            "reasons": [f"refund of ${n}0 is within the limit"],
            "zone": "yellow",
            "policies": ["refunds@3"],
            "call_id": f"call-{n}",
            "tool": "issue_refund",
            "args": {"amount": n * 10},
            "agent": "billing",
        },
    )


ENTRIES: list[AuditEntry] = [
    AuditEntry(
        kind="policy",
        ts=T0,
        tenant="*",
        actor="cli:ops",
        run_id="",
        subject="bundle sha256:abc",
        detail={"bundle": "support@7", "reason": "quarterly review"},
    ),
    decision(11, "r-acme", verdict="escalate"),
    decision(12, "r-acme", actor="human:alice"),
    AuditEntry(
        kind="effect",
        ts=T0 + 13,
        tenant="acme",
        actor="agent:billing",
        run_id="r-acme",
        subject="call-12",
        detail={"tool": "issue_refund", "side_effect": "reversible", "replayed": False},
    ),
    decision(20, "r-globex", verdict="deny"),
    AuditEntry(
        kind="gap",
        ts=T0 + 30,
        tenant="*",
        actor="system:tracer",
        run_id="",
        subject="7 step(s)",
        detail={"dropped_steps": 7, "since": T0 + 21, "until": T0 + 29},
    ),
    decision(40, "r-acme2", verdict="deny", actor="human:bob"),
    AuditEntry(
        kind="kill",
        ts=T0 + 50,
        tenant="acme",
        actor="console:carol",
        run_id="",
        subject="tenant:acme",
        detail={"scope": "tenant:acme", "reason": "refunds going to the wrong accounts"},
    ),
]


@pytest.fixture(params=["memory", "sqlite"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditLog]:
    """A log holding `ENTRIES` (two appends)."""
    made: AuditLog = (
        InMemoryAuditLog() if request.param == "memory" else SqliteAuditLog(tmp_path / "a.sqlite")
    )
    made.append(ENTRIES[:3])
    made.append(ENTRIES[3:])
    yield made
    made.close()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_jsonl_export_holds_every_record_and_verifies_offline(
    log: AuditLog, tmp_path: Path
) -> None:
    out = tmp_path / "exports" / "audit.jsonl"
    result = export_audit(log, out, fmt="jsonl")
    assert isinstance(result, ExportResult)
    assert result.path == out and result.records == len(ENTRIES)
    assert result.verified is not None and result.verified.ok and result.ok
    assert lines(out) == log.records(limit=100)
    head = json.loads(head_path(out).read_text())
    assert result.head_file == head_path(out) == tmp_path / "exports" / "audit.head.json"
    assert head["head"] == log.head() and head["tenant"] is None
    assert head["records"] == len(ENTRIES) and head["verified"]["ok"] is True
    offline = verify_jsonl(out)
    assert offline.ok and offline.records == len(ENTRIES) and offline.head == log.head()
    assert result.as_dict()["verified"]["ok"] is True
    assert f"wrote {len(ENTRIES)} audit records" in result.text and "intact" in result.text
    assert not list(out.parent.glob(".*partial"))  # written via a temporary file, renamed


def test_an_edited_exported_line_is_named(log: AuditLog, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    export_audit(log, out)
    rows = out.read_text().splitlines()
    record = json.loads(rows[2])
    record["detail"]["reasons"] = ["approved by the CFO"]
    rows[2] = json.dumps(record)
    out.write_text("\n".join(rows) + "\n")
    report = verify_jsonl(out)
    assert [(p.kind, p.seq) for p in report.problems] == [("altered", 3)]


def test_a_garbled_deleted_or_cut_export_is_named(log: AuditLog, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    export_audit(log, out)
    rows = out.read_text().splitlines()
    out.write_text("\n".join([*rows[:4], "{not json", *rows[5:]]) + "\n")
    assert [(p.kind, p.seq) for p in verify_jsonl(out).problems] == [("altered", 5)]
    out.write_text("\n".join(rows[:4] + rows[5:]) + "\n")
    assert [(p.kind, p.seq) for p in verify_jsonl(out).problems] == [("removed", 5)]
    out.write_text("\n".join(rows[:-2]) + "\n")  # the head beside it says how long it was
    problems = verify_jsonl(out).problems
    assert [(p.kind, p.seq) for p in problems] == [("truncated", len(ENTRIES) - 1)]
    head_path(out).unlink()  # without a head, a cut export cannot be told from a short one
    assert verify_jsonl(out).ok


def test_verify_jsonl_checks_against_a_given_witness_head(log: AuditLog, tmp_path: Path) -> None:
    witness = log.head()
    assert witness is not None
    log.append([decision(60, "r-late")])
    out = tmp_path / "audit.jsonl"
    export_audit(log, out)
    assert verify_jsonl(out, head=witness).ok  # the log grew since: the witness still holds
    forged = AuditHead(seq=witness["seq"], hash="f" * 64)
    assert [(p.kind, p.seq) for p in verify_jsonl(out, head=forged).problems] == [
        ("altered", witness["seq"])
    ]


def test_a_keyed_export_verifies_only_with_the_key(tmp_path: Path) -> None:
    log = InMemoryAuditLog(key=b"secret")
    log.append(ENTRIES)
    out = tmp_path / "audit.jsonl"
    export_audit(log, out)
    assert verify_jsonl(out, key=b"secret").ok
    assert not verify_jsonl(out).ok


def test_a_tenant_export_holds_its_records_and_says_it_is_not_verified(
    log: AuditLog, tmp_path: Path
) -> None:
    out = tmp_path / "acme.jsonl"
    result = export_audit(log, out, tenant="acme")
    assert result.verified is None and result.ok and "not verified" in result.text
    exported = lines(out)
    assert {r["tenant"] for r in exported} == {"acme", "*"}
    assert [r["seq"] for r in exported] == [1, 2, 3, 4, 6, 7, 8]
    assert json.loads(head_path(out).read_text())["tenant"] == "acme"
    with pytest.raises(AuditConfigError, match=r"only tenant 'acme'.*cannot be verified"):
        verify_jsonl(out)
    report = tmp_path / "acme.md"
    export_audit(log, report, tenant="acme", fmt="report")
    text = report.read_text()
    assert "NOT VERIFIED" in text and "INTACT" not in text
    assert "r-globex" not in text and "dec-20" not in text  # another tenant's run stays out
    assert "tenant `acme` (and `*` records)" in text


def test_the_report_states_runs_reviewers_gaps_and_the_verification(
    log: AuditLog, tmp_path: Path
) -> None:
    out = tmp_path / "audit.md"
    result = export_audit(log, out, fmt="report")
    assert result.records == len(ENTRIES) and result.head_file is None
    text = out.read_text()
    assert text.startswith("# Bastion audit report")
    assert "**Verification:** INTACT. All 8 records" in text
    assert f"**Head:** record 8, hash `{log.head()['hash']}`" in text  # type: ignore[index]
    assert "2025-12-31 14:00:00 to 2025-12-31 14:00:50 UTC" in text
    for run in ("r-acme", "r-globex", "r-acme2"):
        assert f"## Run `{run}`" in text
    assert "## Outside any run" in text
    assert (
        "14:00:11 the guard escalated `issue_refund` to a human (zone yellow) (decision "
        "`dec-11`) because refund of $110 is within the limit; policies `refunds@3`"
    ) in text
    assert "reviewer `alice` approved `issue_refund` (decision `dec-12`)" in text
    assert "reviewer `bob` rejected `issue_refund` (decision `dec-40`)" in text
    assert "the guard denied `issue_refund` (decision `dec-20`)" in text
    assert "effect: `issue_refund` ran (reversible) for agent `billing` (call `call-12`)" in text
    assert "`carol` (console) KILLED `tenant:acme`: refunds going to the wrong accounts" in text
    assert "`ops` (CLI) loaded policies `support@7`: quarterly review" in text
    assert "## ⚠ GAPS" in text
    assert (
        "GAP: 7 trace step(s) were lost between 2025-12-31 14:00:21 and 2025-12-31 14:00:29 UTC"
    ) in text
    assert "(record 6)" in text


def test_the_report_of_a_tampered_log_lists_every_problem_at_its_record(tmp_path: Path) -> None:
    log = InMemoryAuditLog()
    log.append(ENTRIES)
    log.raw[1]["actor"] = "human:mallory"
    del log.raw[4]
    out = tmp_path / "audit.md"
    result = export_audit(log, out, fmt="report")
    assert not result.ok and "CHAIN BROKEN: 2 problem(s)" in result.text
    text = out.read_text()
    assert "**Verification:** FAILED. 2 problem(s) in 7 records:" in text
    assert "**altered** at record 2: record 2 (decision on 'dec-11')" in text
    assert "**removed** at record 5: record 5 is missing" in text
    assert "(record 2) **⚠ ALTERED:" in text  # flagged on the line itself too


def test_an_empty_log_exports_empty_files(tmp_path: Path) -> None:
    log = InMemoryAuditLog()
    result = export_audit(log, tmp_path / "audit.jsonl")
    assert result.records == 0 and result.ok and (tmp_path / "audit.jsonl").read_text() == ""
    assert verify_jsonl(tmp_path / "audit.jsonl").ok
    export_audit(log, tmp_path / "audit.md", fmt="report")
    text = (tmp_path / "audit.md").read_text()
    assert "**Records:** none" in text and "_No records._" in text


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditConfigError, match="'csv' is unknown; use 'jsonl' or 'report'"):
        export_audit(InMemoryAuditLog(), tmp_path / "audit.csv", fmt="csv")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_a_long_log_is_exported_whole_page_by_page(tmp_path: Path) -> None:
    log = SqliteAuditLog(tmp_path / "a.sqlite")
    for start in range(0, 2500, 500):
        log.append([decision(n, f"r{n % 7}") for n in range(start, start + 500)])
    out = tmp_path / "audit.jsonl"
    result = export_audit(log, out)
    assert result.records == 2500 and result.ok
    assert [r["seq"] for r in lines(out)] == list(range(1, 2501))
    assert verify_jsonl(out).ok
    log.close()


def test_a_log_whose_head_was_deleted_is_still_exported_and_flagged(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "a.sqlite"
    log = SqliteAuditLog(path)
    log.append(ENTRIES)
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM audit_head")
    out = tmp_path / "audit.md"
    result = export_audit(log, out, fmt="report")
    assert result.records == len(ENTRIES) and not result.ok
    text = out.read_text()
    assert (
        "**Head:** none" in text and "**truncated** at record 9: the kept head is missing" in text
    )
    log.close()
