"""`bastion memory ...`, run as the real CLI over a real BASTION_HOME whose memory was filled
through `open_memory`: the log, a commit, a diff, a revert (and its refusal), sources switched
off and on, an escalated conflict settled, retention purge, promotion, and the error exits."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from console import main
from memory import MemoryScope, VersionedMemory, open_memory

ENV = (
    "BASTION_REDIS_URL",
    "BASTION_WEAVIATE_URL",
    "BASTION_EMBEDDINGS",
    "BASTION_TENANT",
    "BASTION_MODEL",
    "BASTION_POLICY_KEY",
)
ALICE = ("customers", "alice")
PROFILE = {"purpose": "support", "retention": "profile", "sensitivity": "internal"}


def cli(*argv: str) -> tuple[int, str]:
    """Run `bastion memory argv...`; its exit code and standard output."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["memory", *argv])
    return code, out.getvalue()


def cli_json(*argv: str, code: int = 0) -> Any:
    got, out = cli(*argv, "--json")
    assert got == code, out
    return json.loads(out)


def agent(name: str, run_id: str, tenant: str = "acme") -> MemoryScope:
    return MemoryScope(
        tenant=tenant,
        agent=name,
        purposes=frozenset({"support", "billing"}),
        clearance="restricted",
        run_id=run_id,
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty BASTION_HOME, tenant `acme`, embedded backends, and `$USER` = tester."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BASTION_TENANT", "acme")
    monkeypatch.setenv("USER", "tester")
    return tmp_path / "home"


@contextmanager
def memory_at(home: Path, **options: Any) -> Iterator[VersionedMemory]:
    """The memory `bastion memory` opens for this home (`Settings.memory_path`)."""
    with open_memory(home=home / "memory", **options) as memory:
        yield memory


@pytest.fixture
def filled(home: Path) -> dict[str, str]:
    """Three commits of tenant acme: what support learned, a wrong episode, a billing fact."""
    with memory_at(home) as memory:
        with memory.session(agent("agent:support", "run-1"), "learned from T01") as first:
            first.remember(ALICE, "contact", {"text": "by email"}, source="crm", **PROFILE)
            first.remember(ALICE, "language", {"text": "French"}, source="crm", **PROFILE)
        with memory.session(agent("agent:triage", "run-2"), "learned from T07") as bad:
            bad.remember(ALICE, "contact", {"text": "phone only"}, source="ticket:T07", **PROFILE)
            bad.remember(ALICE, "vip", {"text": "refund freely"}, source="ticket:T07", **PROFILE)
        card = memory.remember(
            agent("agent:billing", "run-3"), ALICE, "card", {"last4": "4242"},
            purpose="billing", retention="profile", sensitivity="confidential", source="billing",
            message="card on file",
        )  # fmt: skip
        memory.remember(
            agent("agent:support", "run-9", tenant="globex"), ALICE, "contact", {"text": "fax"},
            source="crm", **PROFILE,
        )  # fmt: skip
    assert first.result and bad.result and first.result.commit and bad.result.commit
    assert card.commit is not None
    return {"first": first.result.commit.id, "bad": bad.result.commit.id, "card": card.commit.id}


def texts(records: list[dict[str, Any]]) -> list[Any]:
    return [r["value"]["text"] if r["value"] else None for r in records]


def test_log_lists_the_tenants_commits_oldest_first(filled: dict[str, str]) -> None:
    log = cli_json("log")
    assert log["tenant"] == "acme" and log["head"] == 3
    commits = log["commits"]
    assert [c["id"] for c in commits] == [filled["first"], filled["bad"], filled["card"]]
    assert [c["seq"] for c in commits] == [1, 2, 3]
    assert [c["author"] for c in commits] == ["agent:support", "agent:triage", "agent:billing"]
    assert [c["run_id"] for c in commits] == ["run-1", "run-2", "run-3"]
    assert [c["changes"] for c in commits] == [2, 2, 1]
    assert commits[1]["message"] == "learned from T07" and commits[1]["parent"] == filled["first"]
    assert [c["seq"] for c in cli_json("log", "--limit", "2")["commits"]] == [2, 3], "newest 2"
    assert [c["seq"] for c in cli_json("log", "--after", "0", "--limit", "1")["commits"]] == [1]
    assert cli_json("log", "--tenant", "globex")["head"] == 1, "another tenant, its own log"
    code, table = cli("log")
    assert code == 0 and filled["bad"] in table and "agent:triage" in table
    assert "bastion memory show" in table


def test_show_lists_a_commits_changes_and_the_versions_it_wrote(filled: dict[str, str]) -> None:
    commit = cli_json("show", filled["bad"])["commit"]
    assert commit["id"] == filled["bad"] and commit["author"] == "agent:triage"
    changes = {c["key"]: c for c in commit["changes"]}
    assert (changes["contact"]["previous_version"], changes["contact"]["version"]) == (1, 2)
    assert (changes["vip"]["previous_version"], changes["vip"]["version"]) == (0, 1)
    assert changes["contact"]["record"]["value"] == {"text": "phone only"}
    assert changes["contact"]["record"]["tags"]["lineage"]["source"] == "ticket:T07"
    code, out = cli("show", filled["bad"])
    assert code == 0 and "1 → 2" in out and "phone only" in out and "learned from T07" in out


def test_reads_see_every_purpose_by_default_and_narrow_with_flags(filled: dict[str, str]) -> None:
    card = cli_json("get", "customers/alice", "card")["record"]
    assert card["value"] == {"last4": "4242"} and card["tags"]["sensitivity"] == "confidential"
    assert cli_json("get", "customers/alice", "card", "--purpose", "support", code=1) == {
        "record": None
    }
    assert cli_json("get", "customers/alice", "card", "--clearance", "internal", code=1) == {
        "record": None
    }
    code, out = cli("get", "customers/alice", "nothing")
    assert code == 1 and "no record 'nothing'" in out

    hits = cli_json("recall", "phone", "--purpose", "support")["hits"]
    assert hits[0]["record"]["key"] == "contact" and hits[0]["score"] is not None
    assert "card" not in {hit["record"]["key"] for hit in hits}
    assert cli_json("recall", "--namespace", "customers/bob")["hits"] == []
    newest = cli_json("recall", "--limit", "1")["hits"]
    assert [hit["record"]["key"] for hit in newest] == ["card"] and newest[0]["score"] is None
    fax = cli_json("recall", "contact", "--tenant", "globex")["hits"]
    assert [hit["record"]["value"] for hit in fax] == [{"text": "fax"}], "the tenant wall"


def test_history_diff_and_as_of_show_how_knowledge_changed(filled: dict[str, str]) -> None:
    versions = cli_json("history", "customers/alice", "contact")["versions"]
    assert texts(versions) == ["by email", "phone only"]
    assert [v["author"] for v in versions] == ["agent:support", "agent:triage"]

    diff = cli_json("diff", filled["first"], filled["bad"])
    assert diff["commits"] == [filled["bad"]]
    entries = {e["key"]: e for e in diff["entries"]}
    assert entries["contact"]["status"] == "changed" and entries["vip"]["status"] == "added"
    assert entries["contact"]["before"]["value"] == {"text": "by email"}
    assert entries["contact"]["after"]["value"] == {"text": "phone only"}
    from_empty = cli_json("diff", "-", filled["first"])["entries"]
    assert {(e["key"], e["status"]) for e in from_empty} == {
        ("contact", "added"),
        ("language", "added"),
    }
    code, out = cli("diff", filled["first"], filled["bad"])
    assert (
        code == 0
        and '"by email"} → {"text": "phone only"' in out
        and "+ customers/alice vip" in out
    )

    then = cli_json("as-of", filled["first"])
    assert then["seq"] == 1
    assert {r["key"]: r["value"]["text"] for r in then["records"]} == {
        "contact": "by email",
        "language": "French",
    }
    assert cli_json("as-of", filled["bad"], "--namespace", "customers/bob")["records"] == []
    code, out = cli("as-of", filled["first"])
    assert code == 0 and "by email" in out and "phone only" not in out


def test_revert_undoes_the_bad_commit_by_a_new_one(filled: dict[str, str]) -> None:
    result = cli_json("revert", filled["bad"], "--reason", "T07 was Bob's", "--by", "lee")
    assert result["ok"] and result["status"] == "committed"
    commit = result["commit"]
    assert commit["author"] == "human:lee" and commit["seq"] == 4
    assert commit["message"] == f"revert {filled['bad']}: T07 was Bob's"
    assert {(c["key"], c["op"]) for c in commit["changes"]} == {
        ("contact", "put"),
        ("vip", "delete"),
    }

    assert cli_json("get", "customers/alice", "contact")["record"]["value"] == {"text": "by email"}
    assert cli_json("get", "customers/alice", "vip", code=1)["record"] is None
    versions = cli_json("history", "customers/alice", "vip")["versions"]
    assert [(v["version"], v["deleted"]) for v in versions] == [(1, False), (2, True)]
    assert cli_json("log")["head"] == 4, "history is kept: the revert is a new commit"
    code, out = cli("revert", filled["card"], "--reason", "not ours")
    assert code == 0 and f"reverted {filled['card']}: commit " in out and "(#5, 1 change)" in out
    assert cli_json("log", "--limit", "1")["commits"][0]["author"] == "human:tester", "$USER"


def test_revert_refuses_when_a_later_commit_changed_the_same_keys(filled: dict[str, str]) -> None:
    result = cli_json("revert", filled["first"], "--reason", "try", code=1)
    assert result["status"] == "conflict" and not result["ok"] and result["commit"] is None
    [conflict] = result["conflicts"]
    assert conflict["key"] == "contact" and conflict["actual_author"] == "agent:triage"
    assert (conflict["expected_version"], conflict["actual_version"]) == (1, 2)
    code, out = cli("revert", filled["first"], "--reason", "try")
    assert code == 1 and "nothing was written" in out
    assert "customers/alice contact: expected version 1, now 2 by agent:triage (cas)" in out
    assert cli_json("log")["head"] == 3, "a refused revert writes nothing"


def test_disabling_a_source_hides_its_records_until_enabled(filled: dict[str, str]) -> None:
    sources = {s["source"]: s for s in cli_json("sources")["sources"]}
    assert set(sources) == {"billing", "crm", "ticket:T07"}
    assert all(s["enabled"] for s in sources.values())

    status = cli_json("disable", "ticket:T07", "--reason", "feed drifted")["source"]
    assert status == {**status, "enabled": False, "changed_by": "human:tester"}
    assert status["reason"] == "feed drifted"
    assert cli_json("get", "customers/alice", "vip", code=1)["record"] is None
    code, table = cli("sources")
    assert code == 0 and "DISABLED" in table and "feed drifted" in table

    code, out = cli("enable", "ticket:T07", "--reason", "checked")
    assert code == 0 and "enabled ticket:T07 for reads (by human:tester: checked)" in out
    assert cli_json("get", "customers/alice", "vip")["record"]["value"] == {"text": "refund freely"}

    error = cli_json("disable", "ticket:T7", "--reason", "typo", code=2)
    assert "no source 'ticket:T7'" in error["error"] and "ticket:T07" in error["error"]


def test_escalated_conflicts_are_listed_and_settled(home: Path) -> None:
    plan = ("accounts", "acme")
    with memory_at(home, conflicts={"accounts": "escalate"}) as memory:
        first = memory.remember(
            agent("agent:a", "r0"), plan, "plan", {"text": "basic"}, source="crm", **PROFILE
        )
        assert first.ok
        ids = []
        for n, value in enumerate(("gold", "silver")):
            reader = memory.session(agent("agent:slow", f"r{n}"))
            current = reader.get(plan, "plan")
            assert current is not None
            memory.remember(agent("agent:fast", f"f{n}"), plan, "plan", {"text": f"fast-{n}"},
                            source="crm", **PROFILE)  # fmt: skip
            reader.remember(plan, "plan", {"text": value}, source="crm", **PROFILE)
            result = reader.commit()
            assert result.status == "escalated"
            ids.append(result.conflicts[0].conflict_id)

    conflicts = cli_json("conflicts")["conflicts"]
    assert sorted(c["conflict_id"] for c in conflicts) == sorted(ids)
    assert {c["actual_author"] for c in conflicts} == {"agent:fast"}
    code, table = cli("conflicts")
    assert code == 0 and ids[0] in table and "bastion memory settle" in table

    kept = cli_json("settle", ids[1], "--keep", "theirs", "--reason", "fast was right")
    assert kept == {**kept, "ok": True, "status": "empty"}
    code, out = cli("settle", ids[0], "--keep", "mine", "--reason", "slow was right")
    assert code == 1 and "nothing was written" in out, "the record moved on since conflict 0"
    assert cli_json("get", "accounts/acme", "plan")["record"]["value"] == {"text": "fast-1"}
    assert [c["conflict_id"] for c in cli_json("conflicts")["conflicts"]] == [ids[0]]
    settled = cli_json("settle", ids[0], "--keep", "theirs", "--reason", "moot")
    assert settled["ok"] and cli_json("conflicts")["conflicts"] == []
    error = cli_json("settle", ids[0], "--keep", "mine", "--reason", "again", code=2)
    assert f"no open memory conflict {ids[0]!r}" in error["error"]


def test_settle_keep_mine_writes_the_refused_value(home: Path) -> None:
    plan = ("accounts", "acme")
    with memory_at(home, conflicts={"accounts": "escalate"}) as memory:
        for who, value in (("agent:a", "basic"), ("agent:fast", "fast")):
            if who == "agent:fast":  # the slow writer read version 1 before this write
                reader = memory.session(agent("agent:slow", "r1"))
                assert reader.get(plan, "plan") is not None
            memory.remember(
                agent(who, "r0"), plan, "plan", {"text": value}, source="crm", **PROFILE
            )
        reader.remember(plan, "plan", {"text": "slow"}, source="crm", **PROFILE)
        [conflict] = reader.commit().conflicts
    result = cli_json("settle", str(conflict.conflict_id), "--keep", "mine", "--reason", "ok")
    assert result["ok"] and result["commit"]["author"] == "human:tester"
    assert cli_json("get", "accounts/acme", "plan")["record"]["value"] == {"text": "slow"}


def test_purge_deletes_expired_records_and_counts_them(home: Path) -> None:
    two_hours_ago = time.time() - 7200
    with memory_at(home, clock=lambda: two_hours_ago) as memory:
        scope = agent("agent:support", "run-1")
        memory.remember(scope, ALICE, "mood", {"text": "in a hurry"}, purpose="support",
                        retention="turn", sensitivity="internal", source="chat")  # fmt: skip
        memory.remember(scope, ALICE, "contact", {"text": "by email"}, source="crm", **PROFILE)
    assert cli_json("get", "customers/alice", "mood", code=1)["record"] is None, "expired"
    assert cli_json("purge") == {"purged": 1}
    assert cli_json("purge") == {"purged": 0}
    [version] = cli_json("history", "customers/alice", "contact")["versions"]
    assert version["value"] == {"text": "by email"}, "unexpired records stay"
    assert cli_json("log")["head"] == 2, "commits stay in the log"
    code, out = cli("purge")
    assert code == 0 and "purged 0 expired records" in out


def test_promote_moves_candidates_to_the_long_term_tier(home: Path) -> None:
    with memory_at(home) as memory:
        memory.remember(agent("agent:support", "run-1"), ALICE, "likes", {"text": "dark roast"},
                        purpose="support", retention="candidate", sensitivity="internal",
                        source="ticket:T03")  # fmt: skip
    assert cli_json("get", "customers/alice", "likes")["record"]["tier"] == "short"
    result = cli_json("promote")
    assert result["status"] == "committed" and result["commit"]["author"] == "human:tester"
    assert [(c["key"], c["tier"]) for c in result["commit"]["changes"]] == [("likes", "long")]
    record = cli_json("get", "customers/alice", "likes")["record"]
    assert record["tier"] == "long" and record["tags"]["retention"] == "profile"
    code, out = cli("promote")
    assert code == 0 and "nothing to write" in out


def test_empty_memory_says_so(home: Path) -> None:
    assert cli_json("log") == {"tenant": "acme", "head": 0, "commits": []}
    for command, message in [
        ("log", "no memory commits of tenant 'acme'"),
        ("sources", "no source has written"),
        ("conflicts", "no open memory conflicts"),
    ]:
        code, out = cli(command)
        assert code == 0 and message in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("show", "c_nope"), "no commit 'c_nope' in the memory of tenant 'acme'"),
        (("revert", "c_nope", "--reason", "x"), "no commit 'c_nope'"),
        (("as-of", "c_nope"), "no commit 'c_nope'"),
        (("diff", "-", "c_nope"), "no commit 'c_nope' in tenant 'acme'"),
        (("get", "customers//alice", "contact"), "bad namespace label ''"),
        (("history", "customers/alice", "a@b"), "bad memory key 'a@b'"),
        (("log", "--tenant", "no/pe"), "bad tenant 'no/pe'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_offender(
    filled: dict[str, str], argv: tuple[str, ...], message: str
) -> None:
    error = cli_json(*argv, code=2)
    assert message in error["error"] and error["type"] == "MemoryContractError"
    assert cli(*argv)[0] == 2


def test_a_diff_backwards_and_a_missing_reason_are_refused(filled: dict[str, str]) -> None:
    error = cli_json("diff", filled["bad"], filled["first"], code=2)
    assert "comes after target" in error["error"]
    with pytest.raises(SystemExit) as exit_info, redirect_stdout(io.StringIO()):
        main(["memory", "revert", filled["bad"]])
    assert exit_info.value.code == 2, "--reason is required"


def test_an_unusable_backend_exits_1_with_the_reason(home: Path) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("a file where the memory folder should be")
    error = cli_json("log", code=1)
    assert (
        error["type"] == "MemoryBackendError" and "cannot open the memory store" in error["error"]
    )
    assert "BASTION_HOME" in error["error"]


@pytest.mark.redis
def test_memory_commands_work_on_redis(
    home: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_memory(redis_url=redis_url) as memory:
        scope = agent("agent:support", "run-1")
        memory.remember(scope, ALICE, "contact", {"text": "by email"}, source="crm", **PROFILE)
        bad = memory.remember(scope, ALICE, "contact", {"text": "phone"}, source="crm", **PROFILE)
    assert bad.commit is not None
    monkeypatch.setenv("BASTION_REDIS_URL", redis_url)
    assert [c["seq"] for c in cli_json("log")["commits"]] == [1, 2]
    assert cli_json("revert", bad.commit.id, "--reason", "wrong")["ok"]
    assert cli_json("get", "customers/alice", "contact")["record"]["value"] == {"text": "by email"}
    assert not (home / "memory").exists(), "nothing embedded when Redis is configured"
