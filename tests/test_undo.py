"""`undo_run`: a run's effects compensated newest first, each exactly once, on every ledger."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tools import (
    EffectLedger,
    ExecutionGateway,
    InMemoryEffectLedger,
    SqliteEffectLedger,
    ToolContext,
    ToolError,
    ToolInvocation,
    ToolRegistry,
    ToolSpec,
    tool_contract,
)
from tools.undo import UndoError, UndoReport, undo_run

T0 = 1_700_000_000.0


class Booking(BaseModel):
    booking_id: int
    item: str


@dataclass
class Shop:
    """Test tools over one ledger; each rollback call is recorded in `undone`."""

    ledger: EffectLedger
    undone: list[tuple[str, str]] = field(default_factory=list)
    """(item, ctx.idempotency_key) per rollback call, in call order."""
    seen: list[tuple[Any, Any, ToolContext]] = field(default_factory=list)
    """What each rollback received: (args, output, ctx)."""
    failures: dict[str, BaseException] = field(default_factory=dict)
    """item -> what its next rollback raises (once)."""
    hold: dict[str, threading.Event] = field(default_factory=dict)
    """item -> an event its rollback waits for (after signalling `entered`)."""
    entered: threading.Event = field(default_factory=threading.Event)
    now: float = T0

    def __post_init__(self) -> None:
        self.gateway = ExecutionGateway(ToolRegistry(self.specs()), effects=self.ledger)

    def specs(self) -> list[ToolSpec]:
        def unbook(args: BaseModel, output: Booking, ctx: ToolContext) -> dict[str, Any]:
            self.seen.append((args, output, ctx))
            if output.item in self.hold:
                self.entered.set()
                assert self.hold[output.item].wait(10)
            if output.item in self.failures:
                raise self.failures.pop(output.item)
            self.undone.append((output.item, ctx.idempotency_key))
            return {"cancelled": output.booking_id}

        @tool_contract(side_effect="reversible", idempotent=True, rollback=unbook)
        def book(item: str, *, ctx: ToolContext) -> Booking:
            """Book an item."""
            return Booking(booking_id=len(item), item=item)

        @tool_contract(side_effect="irreversible")
        def notify(message: str) -> dict[str, str]:
            """Tell someone."""
            return {"sent": message}

        @tool_contract()
        def look(item: str) -> dict[str, str]:
            """Read only: records no effect."""
            return {"item": item}

        return [book, notify, look]

    def run(self, run_id: str, *calls: tuple[str, dict[str, Any]]) -> list[str]:
        """Execute `calls` in run `run_id`; their idempotency keys."""
        keys = []
        for index, (tool, args) in enumerate(calls):
            result = self.gateway.execute(
                ToolInvocation(
                    tool=tool,
                    args=args,
                    call_id=f"c{index}",
                    tenant="acme",
                    thread_id=f"thread-{run_id}",
                    agent="agent",
                    run_id=run_id,
                )
            )
            assert result.ok, result.content
            keys.append(result.idempotency_key)
        return keys

    def undo(self, run_id: str, **kwargs: Any) -> UndoReport:
        return undo_run(
            self.gateway, run_id, by="ops", reason="test", clock=lambda: self.now, **kwargs
        )


def _sqlite_ledger(path: Path) -> EffectLedger:
    return SqliteEffectLedger(path / "effects.sqlite")


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shop]:
    if request.param == "memory":
        ledger: Any = InMemoryEffectLedger()
    elif request.param == "sqlite":
        ledger = _sqlite_ledger(tmp_path)
    else:
        from tools.redis_ledger import RedisEffectLedger

        ledger = RedisEffectLedger(request.getfixturevalue("redis_url"))
    yield Shop(ledger=ledger)
    if hasattr(ledger, "close"):
        ledger.close()


BOOK_A, NOTE, BOOK_BB, LOOK, BOOK_CCC = (
    ("book", {"item": "a"}),
    ("notify", {"message": "hi"}),
    ("book", {"item": "bb"}),
    ("look", {"item": "a"}),
    ("book", {"item": "ccc"}),
)


def test_effects_are_undone_newest_first_and_irreversible_ones_reported(shop: Shop) -> None:
    a, note, bb, _, ccc = shop.run("run-1", BOOK_A, NOTE, BOOK_BB, LOOK, BOOK_CCC)
    report = shop.undo("run-1")
    assert report.ok and report.run_id == "run-1"
    assert [(e.key, e.status) for e in report.entries] == [
        (ccc, "undone"),
        (bb, "undone"),
        (note, "not_reversible"),
        (a, "undone"),
    ], "the read-only call records no effect"
    assert "irreversible" in report.entries[2].detail
    assert shop.undone == [("ccc", f"undo:{ccc}"), ("bb", f"undo:{bb}"), ("a", f"undo:{a}")]
    args, output, ctx = shop.seen[0]
    assert dict(args) == {"item": "ccc"} and output == Booking(booking_id=3, item="ccc")
    assert (ctx.run_id, ctx.thread_id, ctx.tenant, ctx.agent) == (
        "run-1",
        "thread-run-1",
        "acme",
        "undo",
    )
    compensation = shop.ledger.get(ccc).compensation  # type: ignore[union-attr]
    assert compensation is not None and compensation.ok
    assert (compensation.by, compensation.reason, compensation.at) == ("ops", "test", T0)
    assert compensation.detail == '{"cancelled": 3}'
    assert shop.ledger.get(note).compensation is None  # type: ignore[union-attr]
    assert report.as_dict()["entries"][0] == {
        "key": ccc,
        "tool": "book",
        "args": {"item": "ccc"},
        "status": "undone",
        "detail": '{"cancelled": 3}',
    }


def test_a_second_undo_compensates_nothing_again(shop: Shop) -> None:
    a, note = shop.run("run-1", BOOK_A, NOTE)
    shop.undo("run-1")
    first = shop.ledger.get(a).compensation  # type: ignore[union-attr]
    shop.now += 60
    again = shop.undo("run-1")
    assert [(e.key, e.status) for e in again.entries] == [
        (note, "not_reversible"),
        (a, "already_undone"),
    ]
    assert again.ok and shop.undone == [("a", f"undo:{a}")]
    assert shop.ledger.get(a).compensation == first, "the first compensation stands"  # type: ignore[union-attr]


def test_a_failing_rollback_is_reported_the_rest_undone_and_a_retry_succeeds(shop: Shop) -> None:
    a, bb, ccc = shop.run("run-1", BOOK_A, BOOK_BB, BOOK_CCC)
    shop.failures["bb"] = ToolError(
        "the booking system is down", code="unavailable", retryable=True
    )
    report = shop.undo("run-1")
    assert not report.ok
    assert [(e.key, e.status) for e in report.entries] == [
        (ccc, "undone"),
        (bb, "failed"),
        (a, "undone"),
    ]
    assert "the booking system is down" in report.entries[1].detail
    failed = shop.ledger.get(bb).compensation  # type: ignore[union-attr]
    assert failed is not None and not failed.ok and "down" in failed.detail

    retry = shop.undo("run-1")
    assert retry.ok
    assert [e.status for e in retry.entries] == ["already_undone", "undone", "already_undone"]
    assert shop.undone == [("ccc", f"undo:{ccc}"), ("a", f"undo:{a}"), ("bb", f"undo:{bb}")]
    assert shop.ledger.get(bb).compensation.ok  # type: ignore[union-attr]


def test_a_refusing_rollback_is_refused_not_failed_and_the_rest_undone(shop: Shop) -> None:
    a, bb = shop.run("run-1", BOOK_A, BOOK_BB)
    shop.failures["bb"] = ToolError("bb was already used; cannot unbook", code="used")
    report = shop.undo("run-1")
    assert report.ok, "a business refusal is not a failure: undo again would not change it"
    assert [(e.key, e.status) for e in report.entries] == [(bb, "refused"), (a, "undone")]
    assert report.entries[0].detail == (
        "rollback of `book` refused (used): bb was already used; cannot unbook"
    )
    refused = shop.ledger.get(bb).compensation  # type: ignore[union-attr]
    assert refused is not None and not refused.ok and "already used" in refused.detail
    assert shop.ledger.get(f"undo:{bb}") is None, "the claim is released"
    # The refusal is recorded, not final: once the business allows it, undo goes through.
    again = shop.undo("run-1")
    assert [e.status for e in again.entries] == ["undone", "already_undone"]
    assert shop.undone == [("a", f"undo:{a}"), ("bb", f"undo:{bb}")]


def test_a_crashing_rollback_is_reported_like_a_failing_one(shop: Shop) -> None:
    [a] = shop.run("run-1", BOOK_A)
    shop.failures["a"] = RuntimeError("boom")
    report = shop.undo("run-1")
    assert report.entries[0].status == "failed" and "RuntimeError: boom" in report.entries[0].detail
    assert shop.undo("run-1").entries[0].status == "undone"
    assert shop.undone == [("a", f"undo:{a}")]


def test_a_dry_run_lists_what_would_be_undone_and_acts_on_nothing(shop: Shop) -> None:
    a, note = shop.run("run-1", BOOK_A, NOTE)
    report = shop.undo("run-1", dry_run=True)
    assert [(e.key, e.status) for e in report.entries] == [
        (note, "not_reversible"),
        (a, "would_undo"),
    ]
    assert shop.undone == [] and shop.seen == []
    assert shop.ledger.get(a).compensation is None  # type: ignore[union-attr]
    assert shop.ledger.get(f"undo:{a}") is None, "a dry run claims nothing"


def test_an_unknown_run_is_an_error_that_says_how_to_find_runs(shop: Shop) -> None:
    shop.run("run-1", BOOK_A)
    with pytest.raises(UndoError, match=r"run `run-9`.*bastion effects"):
        shop.undo("run-9")


def test_a_run_is_undone_without_touching_another_runs_effects(shop: Shop) -> None:
    [a] = shop.run("run-1", BOOK_A)
    [other] = shop.run("run-2", BOOK_BB)
    report = shop.undo("run-1")
    assert [e.key for e in report.entries] == [a]
    assert shop.undone == [("a", f"undo:{a}")]
    assert shop.ledger.get(other).compensation is None  # type: ignore[union-attr]
    assert [r.intent.key for r in shop.ledger.effects(run_id="run-1")] == [a], (
        "the undo's own records are not listed as the run's effects"
    )
    with pytest.raises(UndoError):
        shop.undo("run-3")


def test_concurrent_undos_compensate_each_effect_once(shop: Shop) -> None:
    [a] = shop.run("run-1", BOOK_A)
    shop.hold["a"] = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(shop.undo, "run-1")
        assert shop.entered.wait(10), "the first undo never reached the rollback"
        meanwhile = shop.undo("run-1")  # while the first one is inside the rollback
        shop.hold["a"].set()
        done = first.result(timeout=10)
    assert meanwhile.entries[0].status == "failed" and "run undo again" in (
        meanwhile.entries[0].detail
    )
    assert done.entries[0].status == "undone"
    assert shop.undo("run-1").entries[0].status == "already_undone"
    assert shop.undone == [("a", f"undo:{a}")]


class _CrashOnCompensate:
    """A ledger whose process "dies" (SystemExit) once, just before recording a compensation."""

    def __init__(self, inner: EffectLedger) -> None:
        self.inner, self.armed = inner, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def compensate(self, key: str, compensation: Any) -> bool:
        if self.armed:
            self.armed = False
            raise SystemExit("killed")
        return self.inner.compensate(key, compensation)


def test_a_crash_after_the_rollback_is_recorded_later_without_running_it_again(
    shop: Shop,
) -> None:
    [a] = shop.run("run-1", BOOK_A)
    shop.gateway.effects = _CrashOnCompensate(shop.ledger)  # type: ignore[assignment]
    with pytest.raises(SystemExit):
        shop.undo("run-1")
    assert shop.undone == [("a", f"undo:{a}")]
    assert shop.ledger.get(a).compensation is None  # type: ignore[union-attr]
    report = shop.undo("run-1")
    assert report.entries[0].status == "undone" and report.entries[0].detail == '{"cancelled": 1}'
    assert shop.undone == [("a", f"undo:{a}")], "the rollback ran once"
    assert shop.ledger.get(a).compensation.ok  # type: ignore[union-attr]


def test_a_crash_inside_the_rollback_is_retried_with_the_same_key_after_the_lease(
    shop: Shop,
) -> None:
    [a] = shop.run("run-1", BOOK_A)
    shop.failures["a"] = SystemExit("killed mid-rollback")
    with pytest.raises(SystemExit):
        shop.undo("run-1")
    held = shop.undo("run-1")  # our own (live) claim still holds the key until its lease ends
    assert held.entries[0].status == "failed" and shop.undone == []
    shop.now += 3600
    assert shop.undo("run-1").entries[0].status == "undone"
    assert [ctx.idempotency_key for _, _, ctx in shop.seen] == [f"undo:{a}", f"undo:{a}"]
    assert [ctx.attempt for _, _, ctx in shop.seen] == [1, 2]


def test_an_undone_effect_is_not_silently_replayed_or_repeated(shop: Shop) -> None:
    shop.run("r1", ("book", {"item": "tent"}))
    assert shop.undo("r1").ok and shop.undone == [("tent", shop.undone[0][1])]
    again = shop.gateway.execute(
        ToolInvocation(
            tool="book",
            args={"item": "tent"},
            call_id="c9",
            tenant="acme",
            thread_id="thread-r1",
            agent="agent",
            run_id="r2",
        )
    )
    assert not again.ok and again.error_kind == "refused" and not again.replayed
    assert "undone by ops (test)" in again.content and "Ask a person" in again.content
