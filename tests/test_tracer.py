"""`Tracer`: batches off the hot path, stays bounded while a sink is down, never loses silently."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from observability import (
    AuditEntry,
    InMemoryAuditLog,
    InMemoryTraceSink,
    TraceBackendError,
    TraceEvent,
    Tracer,
)


def _event(step: int) -> TraceEvent:
    return TraceEvent(
        event_id=f"e{step}",
        ts=1000.0 + step,
        duration_ms=0.1,
        run_id="run_1",
        thread_id="t1",
        tenant="acme",
        workflow="support",
        node="guard",
        agent=None,
        goal="",
        context_hash="",
        proposals=[],
        verdicts=[],
        tool_calls=[],
        output="",
        confidence=None,
        flags=[],
        escalation=None,
        memory_reads=[],
        cost={"tokens_in": 0, "tokens_out": 0, "usd": 0.0},
        status="ok",
        error=None,
    )


def _entry(step: int) -> AuditEntry:
    return AuditEntry(
        kind="decision",
        ts=1000.0 + step,
        tenant="acme",
        actor="guard",
        run_id="run_1",
        subject=f"dec_{step}",
        detail={"step": step},
    )


def encode(step: int) -> tuple[list[TraceEvent], list[AuditEntry]]:
    if step < 0:
        raise ValueError(f"cannot encode step {step}")
    return [_event(step)], [_entry(step)]


class SwitchableSink(InMemoryTraceSink):
    """A trace sink that can be taken down and brought back (an outage, not a mock)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()

    def write(self, events: Sequence[TraceEvent]) -> None:
        if self.down.is_set():
            raise TraceBackendError("sink is down", url="test://down")
        super().write(events)


class SwitchableAudit(InMemoryAuditLog):
    """An audit log that can be taken down and brought back."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()

    def append(self, entries: Sequence[AuditEntry]) -> Any:
        if self.down.is_set():
            raise TraceBackendError("audit is down", url="test://down")
        return super().append(entries)


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `condition` until it holds (fails the test after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


def test_steps_are_written_in_order_and_counted() -> None:
    sink, audit = InMemoryTraceSink(), InMemoryAuditLog()
    tracer = Tracer(sink=sink, audit=audit, encode=encode, batch_size=7)
    for step in range(50):
        tracer.record(step)
    assert tracer.flush(timeout_s=10)
    assert [e["event_id"] for e in sink.events()] == [f"e{i}" for i in range(50)]
    assert [r["subject"] for r in audit.records()] == [f"dec_{i}" for i in range(50)]
    stats = tracer.stats()
    assert (stats.events_written, stats.audit_written, stats.dropped) == (50, 50, 0)
    assert audit.verify().ok
    tracer.close()


def test_a_down_audit_log_keeps_memory_bounded_counts_drops_and_records_the_gap() -> None:
    sink, audit = InMemoryTraceSink(), SwitchableAudit()
    audit.down.set()
    tracer = Tracer(sink=sink, audit=audit, encode=encode, capacity=100, batch_size=10)
    for step in range(1000):
        tracer.record(step)
    assert not tracer.flush(timeout_s=0.3)  # cannot drain while the audit log is down
    stats = tracer.stats()
    assert stats.queued <= 100
    assert stats.dropped >= 880  # at most the queue and one encoded batch are held
    assert stats.sink_errors >= 1 and "audit is down" in (stats.last_error or "")

    audit.down.clear()
    assert tracer.flush(timeout_s=10)
    stats = tracer.stats()
    decisions = audit.records(kind="decision", limit=2000)
    assert len(decisions) + stats.dropped == 1000
    gaps = audit.records(kind="gap")
    assert len(gaps) == 1
    assert gaps[0]["detail"]["dropped_steps"] == stats.dropped
    assert gaps[0]["actor"] == "system:tracer"
    assert audit.verify().ok
    tracer.close()


def test_a_down_trace_sink_does_not_stop_the_audit_and_holds_events_bounded() -> None:
    sink, audit = SwitchableSink(), InMemoryAuditLog()
    sink.down.set()
    tracer = Tracer(sink=sink, audit=audit, encode=encode, capacity=100, batch_size=10)
    for chunk in range(20):  # no faster than the writer drains: no step is dropped
        for step in range(chunk * 50, chunk * 50 + 50):
            tracer.record(step)
        written = chunk * 50 + 50
        wait_until(lambda written=written: len(audit.records(limit=2000)) == written)
    assert not tracer.flush(timeout_s=0.3)  # the events are still held for the sink
    stats = tracer.stats()
    assert stats.dropped == 0 and stats.events_dropped >= 900

    sink.down.clear()
    assert tracer.flush(timeout_s=10)
    stats = tracer.stats()
    assert stats.events_written + stats.events_dropped == 1000
    assert len(sink.events()) == stats.events_written <= 100
    assert audit.records(kind="gap") == [] and audit.verify().ok
    tracer.close()


def test_an_audit_outage_neither_duplicates_events_nor_loses_queued_entries() -> None:
    sink, audit = InMemoryTraceSink(), SwitchableAudit()
    audit.down.set()
    tracer = Tracer(sink=sink, audit=audit, encode=encode, capacity=1000)
    for step in range(20):
        tracer.record(step)
    assert not tracer.flush(timeout_s=0.3)
    audit.down.clear()
    assert tracer.flush(timeout_s=10)
    assert len(sink.events()) == 20  # written once, not again on each audit retry
    assert [r["subject"] for r in audit.records()] == [f"dec_{i}" for i in range(20)]
    tracer.close()


def test_a_step_that_cannot_be_encoded_is_counted_and_the_rest_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = InMemoryTraceSink()
    tracer = Tracer(sink=sink, audit=None, encode=encode)
    for step in (1, -1, 2):
        tracer.record(step)
    assert tracer.flush(timeout_s=10)
    assert [e["event_id"] for e in sink.events()] == ["e1", "e2"]
    assert tracer.stats().encode_errors == 1
    assert "cannot encode step -1" in caplog.text
    tracer.close()


def test_close_writes_what_is_queued() -> None:
    sink = InMemoryTraceSink()
    tracer = Tracer(sink=sink, audit=None, encode=encode, interval_s=30.0)
    for step in range(5):
        tracer.record(step)
    tracer.close()
    assert len(sink.events()) == 5


def test_many_threads_record_without_loss() -> None:
    sink = InMemoryTraceSink()
    tracer = Tracer(sink=sink, audit=None, encode=encode, capacity=100_000)

    def work(offset: int) -> None:
        for step in range(offset, offset + 500):
            tracer.record(step)

    threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracer.flush(timeout_s=10)
    assert len({e["event_id"] for e in sink.events()}) == 4000
    tracer.close()


@pytest.mark.parametrize(
    "kwargs", [{"capacity": 0}, {"batch_size": 0}, {"interval_s": 0.0}], ids=str
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Tracer needs"):
        Tracer(sink=None, audit=None, encode=encode, **kwargs)
