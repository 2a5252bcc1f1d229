"""`OTelTraceSink`: trace events exported as GenAI spans through the SDK's in-memory exporter."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from observability.base import TraceBackendError, TraceSink
from observability.events import CostRecord, TraceEvent
from observability.memory_sinks import InMemoryTraceSink
from observability.otel import OTelTraceSink
from observability.redis_trace import RedisTraceSink
from observability.sqlite_trace import SqliteTraceSink

T0 = 1_700_000_000.25


def event(node: str, n: int, **fields: Any) -> TraceEvent:
    """A trace event of run `run-1` (override any field by keyword)."""
    base = TraceEvent(
        event_id=f"ev-{node}-{n}",
        ts=T0 + n,
        duration_ms=250.0,
        run_id="run-1",
        thread_id="thread-7",
        tenant="acme",
        workflow="refunds",
        node=node,
        agent="billing" if node.startswith("agent_") else None,
        goal="refund #42",
        context_hash="c0ffee",
        proposals=[],
        verdicts=[],
        tool_calls=[],
        output="",
        confidence=None,
        flags=[],
        escalation=None,
        memory_reads=[],
        cost=CostRecord(tokens_in=0, tokens_out=0, usd=0.0),
        status="ok",
        error=None,
    )
    base.update(fields)  # type: ignore[typeddict-item]
    return base


def tool_call(call_id: str, tool: str, status: str) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "tool": tool,
        "status": status,
        "replayed": False,
        "shadow": False,
        "side_effect": "irreversible",
        "error_kind": "timeout",
    }


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    yield exported
    exported.clear()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider
    tracer_provider.shutdown()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_an_agent_step_is_an_invoke_agent_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    sink = OTelTraceSink(provider)
    assert isinstance(sink, TraceSink)
    agent = event(
        "agent_billing",
        1,
        cost=CostRecord(tokens_in=120, tokens_out=30, usd=0.0042),
        confidence=0.7,
        flags=["taint: email"],
    )
    sink.write([agent])
    (span,) = exporter.get_finished_spans()
    assert span.name == "invoke_agent billing" and span.kind is SpanKind.INTERNAL
    assert span.start_time == 1_700_000_001_250_000_000
    assert span.end_time == 1_700_000_001_500_000_000
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "billing",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.conversation.id": "thread-7",
        "bastion.event_id": "ev-agent_billing-1",
        "bastion.run_id": "run-1",
        "bastion.tenant": "acme",
        "bastion.workflow": "refunds",
        "bastion.node": "agent_billing",
        "bastion.status": "ok",
        "bastion.context_hash": "c0ffee",
        "bastion.cost_usd": 0.0042,
        "bastion.decision_ids": (),
        "bastion.verdict_kinds": (),
        "bastion.flags": ("taint: email",),
        "bastion.confidence": 0.7,
    }


def test_tool_calls_are_execute_tool_child_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    calls = [tool_call("c1", "refund", "success"), tool_call("c2", "notify", "error")]
    OTelTraceSink(provider).write([event("execute", 2, tool_calls=calls)])
    spans = by_name(exporter)
    assert set(spans) == {"execute", "execute_tool refund", "execute_tool notify"}
    parent = spans["execute"]
    assert "gen_ai.operation.name" not in (parent.attributes or {})
    for name, call_id in (("execute_tool refund", "c1"), ("execute_tool notify", "c2")):
        child = spans[name]
        assert child.parent is not None and child.parent.span_id == parent.context.span_id
        assert child.context.trace_id == parent.context.trace_id
        attributes = child.attributes or {}
        assert attributes["gen_ai.operation.name"] == "execute_tool"
        assert attributes["gen_ai.tool.name"] == name.split()[1]
        assert attributes["gen_ai.tool.call.id"] == call_id
        assert attributes["bastion.side_effect"] == "irreversible"
        assert (child.start_time, child.end_time) == (parent.start_time, parent.end_time)
    assert spans["execute_tool refund"].status.status_code is StatusCode.UNSET
    failed = spans["execute_tool notify"]
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "timeout"


def test_decisions_and_errors_are_on_the_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    verdicts = [
        {"decision_id": "d-1", "call_id": "c1", "kind": "deny", "decided_by": "guard"},
        {"decision_id": "d-2", "call_id": "c2", "kind": "escalate", "decided_by": "guard"},
    ]
    read = {"namespace": ["customers", "alice"], "key": "tone", "version": 2, "commit_id": "c9"}
    guard = event("guard", 3, verdicts=verdicts, agent="billing", memory_reads=[read])
    broken = event("approval", 4, status="error", error="KeyError: 'decision'")
    OTelTraceSink(provider).write([guard, broken])
    spans = by_name(exporter)
    attributes = spans["guard"].attributes or {}
    assert attributes["bastion.decision_ids"] == ("d-1", "d-2")
    assert attributes["bastion.verdict_kinds"] == ("deny", "escalate")
    assert attributes["bastion.agent"] == "billing"
    assert attributes["bastion.memory_reads"] == ("customers/alice/tone@v2 (c9)",)
    assert "gen_ai.usage.input_tokens" not in attributes  # no model was called
    assert "bastion.memory_reads" not in (spans["approval"].attributes or {})
    failed = spans["approval"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "KeyError: 'decision'"
    assert (failed.attributes or {})["error.type"] == "KeyError"
    assert (failed.attributes or {})["bastion.status"] == "error"


def test_the_steps_of_a_run_share_one_trace_in_any_process(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    OTelTraceSink(provider).write([event("intake", 1), event("agent_billing", 2)])
    OTelTraceSink(provider).write([event("finalize", 3)])  # another sink: another process
    OTelTraceSink(provider).write([event("intake", 4, run_id="run-2")])
    runs: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        runs.setdefault(str((span.attributes or {})["bastion.run_id"]), []).append(span)
    assert {run: len(spans) for run, spans in runs.items()} == {"run-1": 3, "run-2": 1}
    traces = {run: {s.context.trace_id for s in spans} for run, spans in runs.items()}
    assert len(traces["run-1"]) == 1 and traces["run-1"] != traces["run-2"]
    parents = [s.parent for s in runs["run-1"]]  # the run's stand-in span, remote
    assert all(p is not None and p.is_remote for p in parents)
    assert len({p.span_id for p in parents if p is not None}) == 1


def test_it_wraps_a_sqlite_sink_and_reads_through_it(
    provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    events = [event("intake", 1), event("finalize", 2, output="resolved: exit condition met")]
    sink = OTelTraceSink(provider, inner=SqliteTraceSink(tmp_path / "traces.sqlite"))
    sink.write(events)
    assert sink.events() == events and sink.events(run_id="run-1", limit=1) == events[1:]
    (summary,) = sink.runs(tenant="acme")
    assert (summary["status"], summary["steps"]) == ("resolved", 2)
    assert len(exporter.get_finished_spans()) == 2
    sink.close()
    with SqliteTraceSink(tmp_path / "traces.sqlite") as stored:
        assert stored.events() == events


def test_without_an_inner_sink_it_only_exports(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    sink = OTelTraceSink(provider)
    sink.write([event("intake", 1)])
    assert sink.events() == [] and sink.runs() == []
    assert len(exporter.get_finished_spans()) == 1
    sink.close()


def test_nothing_is_exported_when_the_inner_sink_fails(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = RedisTraceSink(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    sink = OTelTraceSink(provider, inner=dead)
    with pytest.raises(TraceBackendError, match=f"127.0.0.1:{port}"):
        sink.write([event("intake", 1)])
    assert exporter.get_finished_spans() == ()  # the tracer's retry will export it once
    working = OTelTraceSink(provider, inner=InMemoryTraceSink())
    working.write([event("intake", 1)])
    assert len(exporter.get_finished_spans()) == 1
    sink.close()


def test_without_opentelemetry_the_sink_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install opentelemetry-sdk"):
        OTelTraceSink(inner=InMemoryTraceSink())


def test_importing_the_module_does_not_need_opentelemetry() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import observability, observability.otel\n"
        "assert 'opentelemetry.trace' not in sys.modules\n"
    )
    root = Path(__file__).parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False
    )
    assert done.returncode == 0, done.stderr
