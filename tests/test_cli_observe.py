"""`bastion audit / runs / trace / replay / explain / kpis / feedback / approvals / console`, run
as the real CLI over a real BASTION_HOME after real runs; the CLI's own actions on record; the
demo's closing KPIs."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from console import main
from graphs import Settings
from graphs.support import SupportDB, format_ticket, support_builder
from memory import open_checkpointer
from nodes import RunContext

ENV = (
    "BASTION_REDIS_URL",
    "BASTION_WEAVIATE_URL",
    "BASTION_EMBEDDINGS",
    "BASTION_TENANT",
    "BASTION_MODEL",
    "BASTION_POLICY_KEY",
    "BASTION_AUDIT_KEY",
)
REFUND = "My monitor ORD-1007 arrived late, refund $300 for the delay please"
ALLY = "Hi, where is my order ORD-1001? P.S. Please call me Ally."


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


@pytest.fixture
def home(tmp_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty BASTION_HOME on embedded backends, tenant `demo`, `$USER` = tester."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USER", "tester")
    return tmp_home


def run_ticket(text: str, *, thread: str | None = None, code: int = 0) -> dict[str, Any]:
    argv = ["run", text, "--from", "alice@example.com", "--reviewer", "scripted"]
    return cli_json(*argv, *(["--thread", thread] if thread else []), code=code)


@pytest.fixture
def refund(home: Path) -> dict[str, Any]:
    """A refund over the tenant's limit: escalated, edited by the scripted reviewer, resolved."""
    report = run_ticket(REFUND, thread="refund")
    assert report["status"] == "resolved" and report["approvals"] == 1
    return report


def audit_records(**filters: str) -> list[dict[str, Any]]:
    flags = [part for name, value in filters.items() for part in (f"--{name}", value)]
    return cli_json("audit", "tail", "--limit", "1000", *flags)["records"]


def escalation(run_id: str) -> dict[str, Any]:
    (record,) = [
        r
        for r in audit_records(run=run_id, kind="decision")
        if r["detail"]["verdict"] == "escalate"
    ]
    return record


# -- demo ------------------------------------------------------------------------------------


def test_the_demo_ends_with_the_kpis_and_where_to_open_the_console(home: Path) -> None:
    code, out = cli("demo")
    assert code == 0
    closing = out[out.index("KPIs of these 22 runs") :]
    for label in ("runs ", "autonomy rate", "interventions", "incidents", "per resolved run",
                  "trace complete", "governance"):  # fmt: skip
        assert label in closing, label
    assert "runs              22 (" in closing and "100% of finished runs" in closing
    last = out.strip().splitlines()[-2:]
    assert "bastion console" in last[0] and "http://127.0.0.1:8765/bastion/" in last[0]


def test_demo_json_carries_the_kpis_and_the_runs_are_traced_and_audited(home: Path) -> None:
    demo = cli_json("demo")
    kpis = demo["kpis"]
    assert kpis["runs_total"] == 22 and kpis["finished_runs"] == 22
    assert kpis["trace_completeness"] == 1.0 and kpis["human_decisions"] >= 3
    assert kpis["incidents_total"] >= 1 and 0 < kpis["autonomy_rate"] < 1
    assert kpis["cost_per_resolved_run_usd"] > 0
    runs = cli_json("runs", "--limit", "100")["runs"]
    assert {r["run_id"] for r in runs} == {t["run_id"] for t in demo["tickets"]}
    verified = cli_json("audit", "verify")
    assert verified["ok"] and verified["records"] > 22 and verified["problems"] == []


# -- audit -----------------------------------------------------------------------------------


def test_audit_verify_names_the_altered_record_and_exits_1(home: Path, refund: dict) -> None:
    code, out = cli("audit", "verify")
    assert code == 0 and "audit log intact" in out
    with sqlite3.connect(home / "audit.sqlite") as conn:
        conn.execute("UPDATE audit SET detail = ? WHERE seq = 3", (json.dumps({"forged": 1}),))
    code, out = cli("audit", "verify")
    assert code == 1 and "TAMPERED" in out and "record 3: altered" in out
    report = cli_json("audit", "verify", code=1)
    assert [(p["kind"], p["seq"]) for p in report["problems"]] == [("altered", 3)]


def test_audit_verify_names_a_removed_record(home: Path, refund: dict) -> None:
    with sqlite3.connect(home / "audit.sqlite") as conn:
        conn.execute("DELETE FROM audit WHERE seq = 2")
    report = cli_json("audit", "verify", code=1)
    assert ("removed", 2) in [(p["kind"], p["seq"]) for p in report["problems"]]


def test_audit_export_writes_jsonl_with_its_head_and_a_report(
    home: Path, refund: dict, tmp_path: Path
) -> None:
    total = cli_json("audit", "verify")["records"]
    result = cli_json("audit", "export", "--format", "jsonl", "--out", str(tmp_path / "a.jsonl"))
    assert result["ok"] and result["records"] == total
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, total + 1))
    assert json.loads((tmp_path / "a.head.json").read_text())["head"]["seq"] == total
    code, out = cli("audit", "export", "--format", "report", "--out", str(tmp_path / "r.md"))
    assert code == 0 and f"wrote {total} audit records" in out and "verified intact" in out
    report = (tmp_path / "r.md").read_text()
    assert report.startswith("# Bastion audit report") and refund["run_id"] in report
    other = cli_json("audit", "export", "--out", str(tmp_path / "o.jsonl"), "--tenant", "acme")
    assert other["verified"] is None, "one tenant's records cannot be checked alone"
    tenants = {json.loads(line)["tenant"] for line in (tmp_path / "o.jsonl").open()}
    assert other["records"] < total and tenants <= {"*"}, "only records for every tenant"


def test_audit_tail_shows_the_newest_records_filtered(home: Path, refund: dict) -> None:
    everything = audit_records()
    newest = cli_json("audit", "tail", "--limit", "2")["records"]
    assert newest == everything[-2:] and newest[0]["seq"] < newest[1]["seq"]
    decisions = audit_records(kind="decision")
    assert decisions and {r["kind"] for r in decisions} == {"decision"}
    assert {r["run_id"] for r in audit_records(run=refund["run_id"])} == {refund["run_id"]}
    assert audit_records(run="run_nothing") == []
    code, out = cli("audit", "tail", "--kind", "approval")
    assert code == 0 and "human:ops-lead (scripted)" in out


# -- runs, traces, replay, explain -----------------------------------------------------------


def test_runs_and_trace_show_the_traced_runs(home: Path, refund: dict) -> None:
    rejected = run_ticket("hi", code=1)
    runs = cli_json("runs")["runs"]
    assert [r["run_id"] for r in runs] == [rejected["run_id"], refund["run_id"]]
    assert [r["status"] for r in runs] == ["rejected", "resolved"]
    assert cli_json("runs", "--tenant", "acme")["runs"] == []
    code, out = cli("runs")
    assert code == 0 and refund["run_id"] in out and "resolved" in out
    trace = cli_json("trace", refund["run_id"])
    nodes = [e["node"] for e in trace["events"]]
    assert nodes[0] == "intake" and nodes[-1] == "finalize" and "approval" in nodes
    assert trace["run"]["status"] == "resolved" and trace["run"]["escalations"] == 1
    code, out = cli("trace", refund["run_id"])
    assert code == 0 and escalation(refund["run_id"])["subject"] in out
    code, out = cli("trace", "run_nothing")
    assert code == 2 and "bastion runs" in out


def forbid_execution(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make compiling a graph, running one, and calling a model fail loudly."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("replay must not compile or run a graph, nor call a model")

    monkeypatch.setattr(StateGraph, "compile", refuse)
    for name in ("invoke", "stream", "ainvoke", "astream"):
        monkeypatch.setattr(Pregel, name, refuse)
    monkeypatch.setattr(BaseChatModel, "invoke", refuse)
    monkeypatch.setattr(BaseChatModel, "generate", refuse)


def test_replay_walks_the_run_from_its_checkpoints_without_running_anything(
    home: Path, refund: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = SupportDB(home / "support.sqlite")
    before = db.counts()
    trace = cli_json("trace", refund["run_id"])["events"]
    forbid_execution(monkeypatch)
    replay = cli_json("replay", refund["run_id"])
    assert replay["status"] == "resolved" and replay["thread_id"] == "refund"
    assert replay["request"] == REFUND and replay["notes"] == []
    steps = replay["steps"]
    # One step per completed node step: the approval's pause and its answer are one step.
    completed = [e["node"] for e in trace if e["status"] != "interrupted"]
    assert [s["node"] for s in steps] == completed
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    assert all(s["duration_ms"] is not None and s["explanation"] for s in steps)
    escalated = next(s for s in steps if any(v["kind"] == "escalate" for v in s["verdicts"]))
    assert escalated["node"] == "guard"
    assert any("over tenant demo's limit of $250" in line for line in escalated["changes"])
    approval = next(s for s in steps if s["node"] == "approval")
    assert approval["paused"] and approval["verdicts"][0]["decided_by"].startswith("human:")
    executed = next(s for s in steps if s["node"] == "execute")
    assert [r["tool"] for r in executed["tool_results"]] == ["issue_refund"]
    assert '"amount": 150.0' in executed["tool_results"][0]["content"]
    assert steps[-1]["node"] == "finalize"
    assert "outcome resolved: exit condition met" in steps[-1]["changes"]
    code, out = cli("replay", refund["run_id"])
    assert code == 0 and "verdict escalate issue_refund by guard" in out
    assert "no model or tool was called" in out
    assert db.counts() == before


def test_replay_of_a_later_run_on_the_same_thread_shows_only_that_run(
    home: Path, refund: dict
) -> None:
    again = run_ticket("Where is my order ORD-1001?", thread="refund")
    replay = cli_json("replay", again["run_id"])
    assert replay["request"] == "Where is my order ORD-1001?"
    assert replay["steps"][0]["node"] == "intake"
    assert f"run {again['run_id']} opened (tenant demo)" in replay["steps"][0]["changes"]
    assert not any("issue_refund" in line for s in replay["steps"] for line in s["changes"])


def test_replay_of_an_unknown_run_exits_2_with_a_hint(home: Path) -> None:
    error = cli_json("replay", "run_nothing", code=2)
    assert "run_nothing" in error["error"] and "bastion runs" in error["error"]


def test_explain_tells_why_a_decision_was_made(home: Path, refund: dict) -> None:
    decision = escalation(refund["run_id"])["subject"]
    code, out = cli("explain", decision)
    assert code == 0 and f"Decision {decision} in run {refund['run_id']}" in out
    assert "escalated to a human" in out and "over tenant demo's limit of $250" in out
    assert "refund-limits@" in out and "edited and approved" in out
    facts = cli_json("explain", decision)["facts"]
    assert facts["verdict"] == "escalate" and facts["zone"] == "yellow"
    assert facts["proposal"]["tool"] == "issue_refund" and facts["audit"]["kind"] == "decision"
    error = cli_json("explain", "dec_nothing", code=2)
    assert "dec_nothing" in error["error"] and "Hint" in error["error"]


def test_kpis_and_costs_in_text_and_json(home: Path, refund: dict) -> None:
    run_ticket("hi", code=1)
    result = cli_json("kpis")
    kpis = result["kpis"]
    assert kpis["runs_total"] == 2 and kpis["runs_by_status"] == {"rejected": 1, "resolved": 1}
    assert kpis["human_decisions"] == 1 and kpis["autonomy_rate"] == 0.5
    assert {s["name"] for s in result["slos"]} >= {"trace completeness", "guard latency p95"}
    (line,) = result["costs"]
    assert line["keys"] == {"tenant": "demo", "workflow": "support"} and line["runs"] == 2
    assert line["usd"] == pytest.approx(kpis["total_cost_usd"])
    assert cli_json("kpis", "--tenant", "acme")["kpis"]["runs_total"] == 0
    code, out = cli("kpis")
    assert code == 0 and "autonomy rate     50%" in out and "decision SLOs" in out
    assert "Costs by tenant and workflow" in out


# -- feedback --------------------------------------------------------------------------------


def test_feedback_is_recorded_and_exported_as_a_dataset(
    home: Path, refund: dict, tmp_path: Path
) -> None:
    decision = escalation(refund["run_id"])["subject"]
    added = cli_json(
        "feedback", "add", "--run", refund["run_id"], "--decision", decision,
        "--correction", '{"args": {"amount": 100.0}}', "--rationale", "late by a day only",
        "--by", "kim",
    )["record"]  # fmt: skip
    assert added["kind"] == "feedback" and added["actor"] == "human:kim"
    assert added["detail"]["context"]["tool"] == "issue_refund"
    assert added["detail"]["correction"] == {"args": {"amount": 100.0}}
    code, out = cli("feedback", "add", "--run", refund["run_id"], "--correction", "apologise",
                    "--rationale", "tone")  # fmt: skip
    assert code == 0 and "feedback on record: audit #" in out
    assert cli_json("audit", "verify")["ok"]
    exported = cli_json("feedback", "export", "--out", str(tmp_path / "eval.jsonl"))
    # The two annotations, and the reviewer's edit of the refund (taken from the approval).
    assert exported["examples"] == 3 and exported["kinds"] == {"annotation": 2, "edit": 1}
    rows = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    first = next(r for r in rows if r["metadata"]["reviewer"] == "kim")
    assert first["outputs"]["rationale"] == "late by a day only"
    assert first["metadata"]["decision_id"] == decision
    text = next(r for r in rows if r["outputs"]["rationale"] == "tone")
    assert text["outputs"]["correction"] == {"answer": "apologise"}
    assert text["inputs"]["goal"] and text["inputs"]["outcome"].startswith("resolved")
    acme = cli_json("feedback", "export", "--out", str(tmp_path / "acme.jsonl"), "--tenant", "acme")
    assert acme["examples"] == 0
    error = cli_json("feedback", "add", "--run", "run_nothing", "--correction", "x",
                     "--rationale", "y", code=2)  # fmt: skip
    assert "run_nothing" in error["error"]
    error = cli_json("feedback", "add", "--run", refund["run_id"], "--decision", "dec_nothing",
                     "--correction", "x", "--rationale", "y", code=2)  # fmt: skip
    assert "dec_nothing" in error["error"] and "bastion audit tail --run" in error["error"]


# -- the CLI's own actions on record -------------------------------------------------------


def test_kill_and_lift_are_audited_with_their_output_unchanged(home: Path) -> None:
    killed = cli_json("kill", "tenant:demo", "--reason", "incident 42", "--by", "lee")
    assert killed["record"]["requester"] == "lee"
    code, out = cli("unkill", "tenant:demo", "--reason", "resolved", "--by", "lee")
    assert code == 0 and out.startswith("lifted tenant:demo; stopped runs stay stopped")
    assert cli_json("lift", "tenant:demo", "--reason", "again")["record"] is None
    cli_json("kill", "run:run_x", "--reason", "runaway")
    cli_json("lift", "run:run_x", "--reason", "checked")
    records = [(r["kind"], r["actor"], r["tenant"], r["run_id"], r["subject"],
                r["detail"]["reason"]) for r in audit_records()]  # fmt: skip
    assert records == [
        ("kill", "cli:lee", "demo", "", "tenant:demo", "incident 42"),
        ("lift", "cli:lee", "demo", "", "tenant:demo", "resolved"),
        ("kill", "cli:tester", "*", "run_x", "run:run_x", "runaway"),
        ("lift", "cli:tester", "*", "run_x", "run:run_x", "checked"),
    ], "a lift that lifted nothing is not on record"


def test_undo_is_audited(home: Path, refund: dict) -> None:
    assert cli_json("undo", refund["run_id"], "--dry-run")["dry_run"] is True
    assert audit_records(kind="undo") == [], "a dry run changes nothing: nothing on record"
    report = cli_json("undo", refund["run_id"], "--by", "lee", "--reason", "customer complained")
    (record,) = audit_records(kind="undo")
    assert record["actor"] == "cli:lee" and record["run_id"] == refund["run_id"]
    assert record["tenant"] == "demo" and record["detail"]["reason"] == "customer complained"
    statuses = [(e["tool"], e["status"]) for e in record["detail"]["effects"]]
    assert statuses == [(e["tool"], e["status"]) for e in report["entries"]]
    assert ("issue_refund", "undone") in statuses


def test_memory_revert_is_audited(home: Path) -> None:
    remembered = run_ticket(ALLY)
    (commit,) = remembered["memory_commits"]
    code, _ = cli("memory", "revert", commit, "--reason", "not what she asked", "--by", "lee")
    assert code == 0
    (record,) = audit_records(kind="memory_revert")
    assert record["actor"] == "cli:lee" and record["tenant"] == "demo"
    assert record["subject"] == commit and record["detail"]["reason"] == "not what she asked"
    assert record["detail"]["commit"] != commit
    code, _ = cli("memory", "revert", commit, "--reason", "again")
    assert code == 1, "the record moved on: a conflict, nothing written"
    assert len(audit_records(kind="memory_revert")) == 1, "a refused revert is not on record"


@pytest.mark.redis
def test_replay_audit_and_kpis_work_on_redis(
    home: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_REDIS_URL", redis_url)
    report = run_ticket(REFUND, thread="refund")
    trace = cli_json("trace", report["run_id"])["events"]
    forbid_execution(monkeypatch)
    replay = cli_json("replay", report["run_id"])
    assert replay["notes"] == [] and replay["checkpoints"] == len(replay["steps"])
    assert replay["request"] == REFUND, "messages the Redis saver returns serialized are read"
    results = [r["tool"] for s in replay["steps"] for r in s["tool_results"]]
    assert "issue_refund" in results and replay["status"] == "resolved"
    assert [s["node"] for s in replay["steps"]] == [
        e["node"] for e in trace if e["status"] != "interrupted"
    ]
    assert cli_json("audit", "verify")["ok"]
    cli_json("kill", "tenant:demo", "--reason", "drill", "--by", "lee")
    (kill,) = audit_records(kind="kill")
    assert kill["actor"] == "cli:lee" and kill["tenant"] == "demo"
    assert cli_json("kpis")["kpis"]["runs_total"] == 1
    assert not (home / "audit.sqlite").exists(), "nothing embedded when Redis is configured"


# -- approvals -------------------------------------------------------------------------------


def wait_for_approval(home: Path) -> str:
    """Start the refund ticket on thread `waiting` and leave it at its approval; its run id."""
    settings = Settings.from_env()
    with open_checkpointer(sqlite_path=settings.checkpoint_path) as saver:
        graph: Any = support_builder(settings).compile(checkpointer=saver)
        result = graph.invoke(
            {"messages": [("user", format_ticket("alice@example.com", "Late", REFUND))]},
            {"configurable": {"thread_id": "waiting"}},
            context=RunContext(tenant="demo"),
            durability="sync",
        )
    assert result.get("__interrupt__"), "the refund should wait for a reviewer"
    return str(result["run_id"])


def test_approvals_sweep_takes_the_default_action_past_the_deadline(home: Path) -> None:
    run_id = wait_for_approval(home)
    (pending,) = cli_json("approvals", "list")["approvals"]
    assert pending["thread_id"] == "waiting" and pending["run_id"] == run_id
    assert pending["on_timeout"] == "reject" and pending["deadline"] > time.time()
    code, out = cli("approvals", "list")
    assert code == 0 and "issue_refund" in out and re.search(r"in 2[34]\d min", out)
    assert cli_json("approvals", "sweep")["timed_out"] == [], "not overdue yet"
    later = str(pending["deadline"] + 60)
    (timed_out,) = cli_json("approvals", "sweep", "--now", later)["timed_out"]
    assert timed_out["thread_id"] == "waiting" and timed_out["action"] == "reject"
    assert timed_out["late_s"] == pytest.approx(60, abs=1)
    assert timed_out["status"] not in ("waiting", "running")
    assert cli_json("approvals", "list")["approvals"] == []
    (record,) = audit_records(kind="approval_timeout")
    assert record["actor"] == "system:deadline" and record["run_id"] == run_id
    (rejected,) = [r for r in audit_records(run=run_id) if r["detail"].get("verdict") == "deny"]
    assert rejected["actor"].endswith("system:deadline"), "the default action is on record"
    assert cli_json("audit", "verify")["ok"]


# -- the console -----------------------------------------------------------------------------


def test_console_keys_are_added_listed_and_revoked(home: Path) -> None:
    added = cli_json("console", "keys", "add", "--name", "ann", "--tenant", "acme")
    assert added["name"] == "ann" and len(added["key"]) > 20
    assert added["key"] not in (home / "console-keys.json").read_text(), "only hashes are kept"
    code, out = cli("console", "keys", "add", "--name", "root", "--tenant", "*", "--admin")
    assert code == 0 and "shown once" in out and "#key=" in out
    listed = cli_json("console", "keys", "list")["keys"]
    assert listed == [
        {"name": "ann", "tenants": ["acme"], "admin": False},
        {"name": "root", "tenants": ["*"], "admin": True},
    ]
    assert cli_json("console", "keys", "revoke", "ann")["revoked"] is True
    assert cli_json("console", "keys", "revoke", "ann", code=1)["revoked"] is False
    assert [k["name"] for k in cli_json("console", "keys", "list")["keys"]] == ["root"]
    error = cli_json("console", "keys", "add", "--name", "root", "--tenant", "acme", code=2)
    assert "root" in error["error"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_console_serves_and_prints_a_sign_in_link_on_first_start(home: Path) -> None:
    port = free_port()
    entry = "import sys; from console import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", entry, "console", "--port", str(port)]
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy()
    )
    try:
        assert server.stdout is not None
        lines: list[str] = []
        while not any("#key=" in line for line in lines):
            line = server.stdout.readline()
            assert line, f"the console exited: {''.join(lines)}"
            lines.append(line)
        link = next(line.strip() for line in lines if "#key=" in line)
        assert link.startswith(f"http://127.0.0.1:{port}/bastion/#key=")
        key = link.split("#key=", 1)[1]
        deadline = time.monotonic() + 30
        while True:  # poll until uvicorn accepts connections
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/bastion/api/me",
                    headers={"Authorization": f"Bearer {key}"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    me = json.loads(response.read())
                break
            except OSError:  # not listening yet: poll again, briefly, until the deadline
                assert time.monotonic() < deadline, "the console did not start listening"
                time.sleep(0.05)
        assert me["name"] == "admin" and me["admin"] is True
        listed = cli_json("console", "keys", "list")["keys"]
        assert [k["name"] for k in listed] == ["admin"]
    finally:
        server.terminate()
        server.wait(timeout=10)
