"""With `BASTION_REDIS_URL` set, the demo's side effects go through the Redis effect ledger:
recorded there, replayed from there on a second run, visible to another process's ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console import main
from console.demo import load_tickets
from graphs import Services, Settings
from tools import RedisEffectLedger, RedisRateLimiter

pytestmark = pytest.mark.redis


@pytest.fixture
def tickets(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BASTION_REDIS_URL", redis_url)
    monkeypatch.delenv("BASTION_MODEL", raising=False)
    chosen = [t for t in load_tickets() if t["id"] in ("T02", "T04")]  # a refund, a cancel
    path = tmp_path / "tickets.json"
    path.write_text(json.dumps(chosen))
    return path


def test_services_from_redis_settings_use_redis_for_effects_and_rate_limits(
    redis_url: str,
) -> None:
    services = Services.from_settings(Settings(redis_url=redis_url))
    assert isinstance(services.effects, RedisEffectLedger)
    assert isinstance(services.rate_limiter, RedisRateLimiter)


def test_the_demo_records_effects_in_redis_and_replays_them(
    tickets: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--json", "--tickets", str(tickets)]) == 0
    first = json.loads(capsys.readouterr().out)
    ledger = RedisEffectLedger(redis_url)  # a fresh client: what any other worker would see
    done = [r for r in ledger.effects() if r.status == "done"]
    tools_done = sorted(r.intent.tool for r in done)
    assert tools_done == sorted(
        ["issue_refund", "draft_email", "send_email", "cancel_order", "draft_email", "send_email"]
    )
    assert {r.intent.run_id for r in done} == {t["run_id"] for t in first["tickets"]}

    assert main(["demo", "--json", "--tickets", str(tickets)]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["database"]["after"] == first["database"]["after"], "a side effect repeated"
    assert second["totals"]["replayed"] == second["totals"]["effects"] == len(done)
    assert len([r for r in ledger.effects() if r.status == "done"]) == len(done)
