"""The `bastion` CLI: the demo end to end, twice, without repeating side effects."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from console import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BASTION_HOME", str(tmp_path))
    monkeypatch.delenv("BASTION_REDIS_URL", raising=False)
    monkeypatch.delenv("BASTION_MODEL", raising=False)
    return tmp_path


def demo_json(capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["demo", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_demo_twice_processes_every_ticket_and_repeats_no_side_effect(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = demo_json(capsys)
    totals = first["totals"]
    assert totals["tickets"] == 20 and totals["outcomes"]["resolved"] >= 15
    assert totals["outcomes"]["halted"] == 1 and totals["outcomes"]["rejected"] == 1
    assert totals["approvals"] >= 3 and totals["cost_usd"] > 0
    after_first = first["database"]["after"]
    assert after_first["refunds"] > 0 and after_first["outbound_emails"] > 0

    second = demo_json(capsys)
    assert second["database"]["after"] == after_first, "second run wrote new rows"
    assert second["totals"]["replayed"] == second["totals"]["effects"] > 0
    with sqlite3.connect(home / "support.sqlite") as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM outbound_emails WHERE status = 'sent'").fetchone()[0]
            == after_first["outbound_emails"]
        )


def test_demo_prints_a_table_and_totals(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "T01" in out and "T20" in out and "20 tickets" in out and "business database" in out


def test_run_one_ticket_with_the_scripted_reviewer(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "My monitor ORD-1007 arrived late, refund $300 for the delay please",
            "--from",
            "alice@example.com",
            "--reviewer",
            "scripted",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["status"] == "resolved" and report["approvals"] == 1


def test_run_exits_non_zero_when_the_ticket_is_rejected(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "hi", "--from", "a@example.com", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "rejected"


def test_run_without_a_sender_says_what_to_pass(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "where is ORD-1001?"]) == 2
    assert "--from" in capsys.readouterr().out


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("BASTION_REDIS_URL", "localhost:6379", "BASTION_REDIS_URL='localhost:6379'"),
        ("BASTION_MODEL", "gpt-4o", "provider:model"),
    ],
)
def test_bad_settings_give_a_clear_error(
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["demo", "--json"]) == 2
    assert expected in json.loads(capsys.readouterr().out)["error"]


def test_dead_redis_is_reported_with_what_to_do(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_REDIS_URL", "redis://127.0.0.1:1")
    assert main(["demo", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert "cannot reach Redis" in error and "unset BASTION_REDIS_URL" in error
