"""The `bastion` CLI: the demo end to end (twice, without repeating side effects), the guard
plane at work in it, and the policy and kill-switch commands."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from console import main
from graphs.support import POLICY_DIR


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
    assert totals["tickets"] == 22 and totals["outcomes"]["resolved"] >= 15
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
    assert "T01" in out and "T22" in out and "22 tickets" in out and "business database" in out


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
    # Whichever backend meets it first (memory opens with the services) names it and the fix.
    assert "Redis at redis://127.0.0.1:1" in error and "unset BASTION_REDIS_URL" in error


def test_the_demo_shows_the_guard_plane_at_work(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tickets = {t["id"]: t for t in demo_json(capsys)["tickets"]}
    over_limit = tickets["T03"]  # $640 refund; tenant demo's limit (Rego data) is $250
    assert any("over tenant demo's limit of $250" in n for n in over_limit["guard_notes"])
    assert over_limit["approvals"] == 1 and over_limit["status"] == "resolved"
    runaway = tickets["T16"]
    assert runaway["status"] == "halted" and "money cap" in runaway["reason"]
    assert runaway["summary"].startswith("Stopped after") and "get_order x1" in runaway["summary"]
    assert "egress: redacted credit_card" in tickets["T21"]["guard_notes"]
    tainted = tickets["T22"]
    assert any(n.startswith("tainted: tool:get_order") for n in tainted["guard_notes"])
    assert tainted["approvals"] >= 1, "the tainted run's side effects waited for a human"
    with sqlite3.connect(home / "support.sqlite") as conn:
        (body,) = conn.execute(
            "SELECT body FROM outbound_emails WHERE to_addr = 'emma@example.com' "
            "AND subject = 'Re: Earbuds tip'"
        ).fetchone()
    assert "4111" not in body.replace("****1111", "") and "[REDACTED:credit_card" in body


def test_policy_check_lists_the_bundle_and_refuses_a_tampered_one(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["policy-check", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {p["id"] for p in listed["policies"]} == {"refund-limits", "outbound-email"}
    tampered = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, tampered)
    rego = tampered / "refunds.rego"
    rego.write_text(rego.read_text().replace("input.args.amount > limit", "false"))
    assert main(["policy-check", str(tampered), "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert "refunds.rego" in error


def test_a_broken_policy_stops_the_cli_with_file_and_line(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, broken)
    rego = broken / "outbound.rego"
    rego.write_text(
        rego.read_text().replace("count(input.args.body) >", "count(input.args.body) >>")
    )
    assert main(["policy-sign", str(broken)]) == 2  # signing compiles first: nothing is signed
    error = capsys.readouterr().out
    assert "outbound.rego" in error and "line" in error


def test_kill_stops_new_runs_and_unkill_lifts_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kill", "tenant:demo", "--reason", "incident 42", "--by", "lee", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["record"]["requester"] == "lee"
    assert main(["kills", "--json"]) == 0
    assert [k["scope"] for k in json.loads(capsys.readouterr().out)["active"]] == ["tenant:demo"]
    ticket = ["run", "Where is ORD-1001?", "--from", "alice@example.com", "--json"]
    assert main(ticket) == 1
    stopped = json.loads(capsys.readouterr().out)
    assert stopped["status"] == "halted" and "incident 42" in stopped["reason"]
    assert main(["unkill", "tenant:demo", "--reason", "resolved", "--json"]) == 0
    capsys.readouterr()
    assert main([*ticket, "--reviewer", "scripted"]) == 0


def test_bad_kill_scope_says_what_is_expected(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kill", "tenant", "--reason", "x", "--json"]) == 2
    assert "`tenant:<id>`" in json.loads(capsys.readouterr().out)["error"]
