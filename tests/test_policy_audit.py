"""Policy changes go on the audit record: a bundle is recorded once, a changed one again."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphs import Services, Settings
from graphs.audit import policy_subject, record_policy_bundle
from graphs.support.governance import POLICY_DIR
from graphs.support.workflow import support_builder
from guards import PythonRulesEngine, RegoPolicyEngine, rule
from guards.bundle import sign_bundle
from observability import AuditLog, InMemoryAuditLog
from observability.redis_audit import RedisAuditLog
from observability.sqlite_audit import SqliteAuditLog

ORIGINAL = ["refund-limits@1.0.0", "outbound-email@1.0.0"]


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def audit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditLog]:
    """Each audit log backend: in memory, the embedded SQLite file, Redis."""
    log: AuditLog
    if request.param == "memory":
        log = InMemoryAuditLog()
    elif request.param == "sqlite":
        log = SqliteAuditLog(tmp_path / "audit.sqlite")
    else:
        log = RedisAuditLog(request.getfixturevalue("redis_url"))
    yield log
    log.close()


def _changed_bundle(tmp_path: Path, version: str = "1.1.0") -> Path:
    """A copy of the support bundle whose `refund-limits` policy is at `version`, re-signed."""
    copy = tmp_path / f"bundle-{version}"
    shutil.copytree(POLICY_DIR, copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    [refunds] = [p for p in manifest["policies"] if p["id"] == "refund-limits"]
    refunds["version"] = version
    (copy / "bundle.json").write_text(json.dumps(manifest, indent=2))
    sign_bundle(copy)
    return copy


def test_the_same_bundle_twice_is_one_record(audit: AuditLog) -> None:
    engine = RegoPolicyEngine.from_directory(POLICY_DIR)
    first = record_policy_bundle(audit, engine, actor="system:startup")
    again = record_policy_bundle(
        audit, RegoPolicyEngine.from_directory(POLICY_DIR), actor="system:startup"
    )

    assert first is not None and again is None
    assert audit.records(kind="policy") == [first]
    assert first["tenant"] == "*" and first["actor"] == "system:startup"
    assert first["subject"] == engine.bundle.digest == policy_subject(engine)
    detail = first["detail"]
    assert detail["policies"] == ORIGINAL and detail["added"] == ORIGINAL
    assert detail["owners"] == {"refund-limits": "support-leads", "outbound-email": "support-leads"}
    assert detail["bundle"] == "support" and detail["revision"] == engine.revision
    assert detail["path"] == str(POLICY_DIR) and detail["previous"] is None
    assert audit.verify().ok


def test_a_changed_bundle_is_a_second_record_naming_the_new_versions(
    audit: AuditLog, tmp_path: Path
) -> None:
    first = record_policy_bundle(
        audit, RegoPolicyEngine.from_directory(POLICY_DIR), actor="system:startup"
    )
    changed = RegoPolicyEngine.from_directory(_changed_bundle(tmp_path))
    second = record_policy_bundle(audit, changed, actor="cli:alice")

    assert first is not None and second is not None
    assert second["subject"] == changed.bundle.digest != first["subject"]
    assert second["actor"] == "cli:alice"
    assert second["detail"]["policies"] == ["refund-limits@1.1.0", "outbound-email@1.0.0"]
    assert second["detail"]["added"] == ["refund-limits@1.1.0"]
    assert second["detail"]["removed"] == ["refund-limits@1.0.0"]
    assert second["detail"]["previous"] == first["subject"]
    assert record_policy_bundle(audit, changed, actor="system:startup") is None
    # Going back to the original bundle is a change too.
    back = record_policy_bundle(
        audit, RegoPolicyEngine.from_directory(POLICY_DIR), actor="system:startup"
    )
    assert back is not None and back["subject"] == first["subject"]
    assert [r["seq"] for r in audit.records(kind="policy")] == [
        first["seq"],
        second["seq"],
        back["seq"],
    ]


def test_python_rules_are_recorded_by_revision(audit: AuditLog) -> None:
    @rule(id="no-deletes", version="2", owner="ops", tools="delete_order")
    def no_deletes(request: object) -> None:
        return None

    engine = PythonRulesEngine([no_deletes])
    record = record_policy_bundle(audit, engine, actor="system:startup")

    assert record is not None and record["subject"] == engine.revision
    assert record["detail"]["policies"] == ["no-deletes@2"]
    assert record_policy_bundle(audit, engine, actor="system:startup") is None


def test_support_builder_records_the_bundle_once_across_restarts(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    for _ in range(2):  # two starts of the embedded deployment, same bundle
        with Services.from_settings(settings) as services:
            support_builder(settings, services=services)
    with Services.from_settings(settings) as services:
        support_builder(settings, services=services, policy_dir=_changed_bundle(tmp_path))
        records = services.audit.records(kind="policy")

    assert [r["actor"] for r in records] == ["system:startup", "system:startup"]
    assert records[0]["detail"]["policies"] == ORIGINAL
    assert records[1]["detail"]["added"] == ["refund-limits@1.1.0"]
