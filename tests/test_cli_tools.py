"""`bastion effects`, `bastion undo`, `bastion demo --shadow` and `bastion shadow`, run as the
real CLI over a real BASTION_HOME: a demo refund undone once, shadow runs that change nothing,
and a candidate policy's changed verdicts."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from console import main
from graphs.support import POLICY_DIR
from guards import sign_bundle

ENV = ("BASTION_REDIS_URL", "BASTION_MODEL", "BASTION_TENANT", "BASTION_POLICY_KEY")
FEW = ["T01", "T02", "T03", "T10", "T19"]
"""Tickets for the shadow reports: refunds of $45 and $29 (under demo's $250 limit), $640
(over it) and $20, and one without a refund."""


def cli(*argv: str) -> tuple[int, str]:
    """Run `bastion argv...`; its exit code and standard output."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def cli_json(*argv: str, code: int = 0) -> Any:
    got, out = cli(*argv, "--json")
    assert got == code, out
    return json.loads(out)


@pytest.fixture(scope="module")
def env() -> Iterator[pytest.MonkeyPatch]:
    """The default configuration (embedded state, scripted model) for the whole module."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ENV:
            patch.delenv(name, raising=False)
        yield patch


@pytest.fixture(scope="module")
def demo(env: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real demo run in a module-wide BASTION_HOME; its `--json` output plus `home`."""
    home = tmp_path_factory.mktemp("bastion-home")
    env.setenv("BASTION_HOME", str(home))
    return {**cli_json("demo"), "home": home}


@pytest.fixture
def few(tmp_path: Path) -> Path:
    """A tickets file with the `FEW` sample tickets."""
    tickets = json.loads((POLICY_DIR.parent / "data" / "tickets.json").read_text())
    path = tmp_path / "tickets.json"
    path.write_text(json.dumps([t for t in tickets if t["id"] in FEW]))
    return path


@pytest.fixture
def fresh_home(env: pytest.MonkeyPatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty BASTION_HOME for this test (not created: commands that write state do)."""
    home = tmp_path / "home"
    monkeypatch.setenv("BASTION_HOME", str(home))
    return home


def runs(demo: dict[str, Any]) -> dict[str, str]:
    return {t["id"]: t["run_id"] for t in demo["tickets"]}


def refund_rows(home: Path, order_id: str) -> list[tuple[str, str | None]]:
    with sqlite3.connect(home / "support.sqlite") as conn:
        return conn.execute(
            "SELECT status, reversal_key FROM refunds WHERE order_id = ?", (order_id,)
        ).fetchall()


def test_effects_lists_the_demo_side_effects_with_their_runs(demo: dict[str, Any]) -> None:
    effects = cli_json("effects")["effects"]
    # (An undo's own records, `undo:<tool>` in run `undo:<run>`, are listed too.)
    done = [e for e in effects if e["status"] == "done" and not e["run_id"].startswith("undo:")]
    assert len(done) == demo["totals"]["effects"], "one record per side effect of the demo"
    assert [e["seq"] for e in effects] == sorted(e["seq"] for e in effects), "newest last"
    refunds = [e for e in done if e["tool"] == "issue_refund"]
    assert len(refunds) == demo["database"]["after"]["refunds"] > 0
    assert {e["run_id"] for e in refunds} <= set(runs(demo).values())
    t02 = cli_json("effects", "--run", runs(demo)["T02"])["effects"]
    assert [e["tool"] for e in t02] == ["issue_refund", "draft_email", "send_email"]
    assert t02[0]["args"]["order_id"] == "ORD-1002" and t02[0]["thread_id"] == "support-T02"
    newest = cli_json("effects", "--limit", "2")["effects"]
    assert [e["seq"] for e in newest] == [e["seq"] for e in effects[-2:]]
    code, table = cli("effects", "--thread", "support-T02")
    assert code == 0 and runs(demo)["T02"] in table and "bastion undo" in table


def test_undo_reverses_a_demo_refund_once(demo: dict[str, Any]) -> None:
    run, home = runs(demo)["T02"], demo["home"]
    dry = cli_json("undo", run, "--dry-run")
    assert [e["status"] for e in dry["entries"]] == ["not_reversible", "would_undo", "would_undo"]
    assert refund_rows(home, "ORD-1002") == [("issued", None)], "a dry run changes nothing"

    report = cli_json("undo", run, "--by", "lee", "--reason", "customer kept the grinder")
    assert report["ok"] and report["run_id"] == run
    by_tool = {e["tool"]: e for e in report["entries"]}
    assert [e["tool"] for e in report["entries"]] == ["send_email", "draft_email", "issue_refund"]
    assert by_tool["issue_refund"]["status"] == "undone"
    assert by_tool["send_email"]["status"] == "not_reversible"
    assert by_tool["draft_email"]["status"] == "refused"
    assert "already sent" in by_tool["draft_email"]["detail"]
    [(status, reversal_key)] = refund_rows(home, "ORD-1002")
    assert status == "reversed" and reversal_key is not None

    again = cli_json("undo", run)
    assert {e["tool"]: e["status"] for e in again["entries"]}["issue_refund"] == "already_undone"
    assert refund_rows(home, "ORD-1002") == [("reversed", reversal_key)], "reversed once"
    [refund] = [e for e in cli_json("effects", "--run", run)["effects"] if e["undone"]]
    assert refund["tool"] == "issue_refund"
    assert (refund["compensation"]["by"], refund["compensation"]["reason"]) == (
        "lee",
        "customer kept the grinder",
    )


def test_undo_prints_each_entry_in_the_order_applied(demo: dict[str, Any]) -> None:
    code, out = cli("undo", runs(demo)["T10"], "--dry-run")
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith(("would", "not"))]
    assert [line.split("  ")[0] for line in lines] == ["not reversible", "would undo", "would undo"]
    assert "issue_refund(order_id=ORD-1009" in lines[2] and "dry run, nothing changed" in out


def test_undo_of_an_unknown_run_exits_2_naming_it(demo: dict[str, Any]) -> None:
    error = cli_json("undo", "run_nope", code=2)
    assert error["type"] == "UndoError"
    assert "`run_nope`" in error["error"] and "bastion effects" in error["error"]


def test_demo_shadow_simulates_every_side_effect_and_performs_none(demo: dict[str, Any]) -> None:
    shadow = cli_json("demo", "--shadow")
    assert shadow["shadow"] and shadow["database"]["before"] == shadow["database"]["after"]
    totals = shadow["totals"]
    # (Fewer than the demo's effects: simulating against the same database, the cancelled
    # orders can no longer be cancelled.)
    assert totals["simulated"] > 0 and totals["effects"] == totals["replayed"] == 0
    t01 = next(t for t in shadow["tickets"] if t["id"] == "T01")  # a reply: draft and send
    assert t01["thread_id"] == "shadow-T01" and t01["simulated"] == 2
    recorded = cli_json("effects", "--run", t01["run_id"])["effects"]
    assert [(e["tool"], e["status"]) for e in recorded] == [
        ("draft_email", "shadow"),
        ("send_email", "shadow"),
    ]
    assert cli_json("undo", t01["run_id"])["entries"] == [], "a simulation has nothing to undo"


def test_demo_text_says_how_to_undo_and_what_shadow_mode_did(fresh_home: Path, few: Path) -> None:
    code, out = cli("demo", "--tickets", str(few))
    assert code == 0 and "bastion undo <run>" in out
    code, out = cli("demo", "--shadow", "--tickets", str(few))
    assert code == 0 and "side effects simulated, none performed" in out and " sim " in out


def test_effects_in_an_empty_home_and_on_a_dead_backend(
    fresh_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("effects") == (0, "no side effects recorded\n")
    monkeypatch.setenv("BASTION_REDIS_URL", "redis://127.0.0.1:1")
    error = cli_json("effects", code=2)
    assert "Redis" in error["error"]


@pytest.fixture
def stricter_policy(tmp_path: Path) -> Path:
    """The shipped bundle with tenant demo's refund limit cut from $250 to $20, re-hashed."""
    bundle = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, bundle)
    data = json.loads((bundle / "data.json").read_text())
    data["tenants"]["demo"]["refund_limit"] = 20
    (bundle / "data.json").write_text(json.dumps(data))
    sign_bundle(bundle)
    return bundle


def test_shadow_shows_the_verdicts_a_candidate_policy_changes(
    fresh_home: Path, few: Path, stricter_policy: Path
) -> None:
    report = cli_json("shadow", "--tickets", str(few), "--candidate-policy", str(stricter_policy))
    assert not report["self_check"] and (report["changed"], report["total"]) == (2, 5)
    changed = {t["id"]: t["changes"] for t in report["tickets"] if t["changes"]}
    assert set(changed) == {"T02", "T10"}, "$640 escalates under both; $20 is not over $20"
    for [change] in changed.values():
        before, after = change["baseline"], change["candidate"]
        assert change["kind"] == "changed" and before["tool"] == after["tool"] == "issue_refund"
        assert (before["verdict"], after["verdict"]) == ("allow", "escalate")
        assert before["args"] == after["args"] and after["outcome"] == "simulated"
    assert not fresh_home.exists(), "the shadow runs used a scratch home, not BASTION_HOME"
    code, out = cli("shadow", "--tickets", str(few), "--candidate-policy", str(stricter_policy))
    assert code == 0 and "2 of 5 tickets would change" in out
    assert "allow → escalate" in out and "ORD-1009" in out


def test_shadow_without_a_candidate_is_a_determinism_check(fresh_home: Path, few: Path) -> None:
    code, out = cli("shadow", "--tickets", str(few))
    assert code == 0 and "compared with itself" in out and "0 of 5 tickets would change" in out
    assert not fresh_home.exists()


def test_shadow_with_a_broken_candidate_exits_2(fresh_home: Path, tmp_path: Path) -> None:
    error = cli_json("shadow", "--candidate-policy", str(tmp_path / "missing"), code=2)
    assert "bundle.json" in error["error"]
    tenants = tmp_path / "tenants.json"
    tenants.write_text("[]")
    error = cli_json("shadow", "--candidate-tenants", str(tenants), code=2)
    assert "tenants.json" in error["error"]


@pytest.mark.redis
def test_undo_reverses_a_refund_recorded_in_the_redis_ledger(
    fresh_home: Path, few: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_REDIS_URL", redis_url)
    t10 = next(t for t in cli_json("demo", "--tickets", str(few))["tickets"] if t["id"] == "T10")
    refund = cli_json("effects", "--run", t10["run_id"])["effects"][0]
    assert refund["tool"] == "issue_refund" and refund["args"]["order_id"] == "ORD-1009"
    report = cli_json("undo", t10["run_id"])
    assert [e["status"] for e in report["entries"]] == ["not_reversible", "refused", "undone"]
    assert [status for status, _ in refund_rows(fresh_home, "ORD-1009")] == ["reversed"]
    assert cli_json("undo", t10["run_id"])["entries"][2]["status"] == "already_undone"
    assert [status for status, _ in refund_rows(fresh_home, "ORD-1009")] == ["reversed"]
