"""OpenTelemetry export: each trace event becomes a span in the GenAI semantic conventions."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from observability.base import TraceSink
from observability.events import RunSummary, TraceEvent

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["OTelTraceSink"]

_SCOPE = "bastion.observability"
"""Instrumentation scope of the spans."""


class OTelTraceSink:
    """A `TraceSink` that exports every event as an OpenTelemetry span, then keeps nothing.

    It wraps another sink (`inner`, e.g. `SqliteTraceSink`) that stores the events and
    answers `events()` and `runs()`; without one those return empty lists.

    Spans follow the GenAI semantic conventions: an `agent_<name>` step is an `invoke_agent`
    span (`gen_ai.agent.name`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`);
    each tool call of a step is an `execute_tool` child span (`gen_ai.tool.name`,
    `gen_ai.tool.call.id`); other nodes (intake, guard, approval, ...) are plain spans named
    after the node. Every span carries `gen_ai.conversation.id` (the thread) and `bastion.*`
    attributes (run, tenant, workflow, node, decision ids, verdict kinds, cost, status), starts
    at the event's `ts`, lasts its `duration_ms`, and has status ERROR for an `error` step.

    The run is the trace: every span of one run (in any process) gets the trace id derived
    from the run id and, as parent, a span id derived likewise, so a backend shows the run's
    steps together although no process sees the whole run start and end.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, inner: TraceSink | None = None
    ) -> None:
        """Args:
        tracer_provider: where spans go (an SDK `TracerProvider` with its exporters);
            default the global one (`opentelemetry.trace.get_tracer_provider()`).
        inner: the sink that stores events first (closed by `close()`).

        Raises:
            ImportError: OpenTelemetry is not installed.
        """
        try:
            from opentelemetry import trace
        except ImportError as error:
            raise ImportError(
                f"OTelTraceSink needs OpenTelemetry, which is not installed ({error}). "
                "Hint: pip install opentelemetry-sdk (and an exporter, e.g. "
                "opentelemetry-exporter-otlp), or leave OpenTelemetry export off."
            ) from error
        self._trace = trace
        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer(_SCOPE)
        self.inner = inner
        """The sink that stores the events, if any."""

    def write(self, events: Sequence[TraceEvent]) -> None:
        """Store events in `inner`, then export them as spans.

        Raises:
            TraceBackendError: `inner` failed (nothing is exported, so a retry exports once).
        """
        if self.inner is not None:
            self.inner.write(events)
        for event in events:
            self._export(event)

    def events(
        self, *, run_id: str | None = None, tenant: str | None = None, limit: int = 10_000
    ) -> list[TraceEvent]:
        """`inner`'s events (none without it)."""
        if self.inner is None:
            return []
        return self.inner.events(run_id=run_id, tenant=tenant, limit=limit)

    def runs(self, *, tenant: str | None = None, limit: int = 100) -> list[RunSummary]:
        """`inner`'s run summaries (none without it)."""
        return [] if self.inner is None else self.inner.runs(tenant=tenant, limit=limit)

    def close(self) -> None:
        """Close `inner`; the tracer provider is its owner's to shut down."""
        if self.inner is not None:
            self.inner.close()

    def _export(self, event: TraceEvent) -> None:
        trace = self._trace
        start = _ns(event["ts"])
        end = _ns(event["ts"] + event["duration_ms"] / 1000)
        agent_step = event["node"].startswith("agent_")
        attributes = _node_attributes(event, agent_step)
        name = f"invoke_agent {attributes['gen_ai.agent.name']}" if agent_step else event["node"]
        span = self._tracer.start_span(
            name,
            context=self._run_context(event),
            kind=trace.SpanKind.INTERNAL,
            attributes=attributes,
            start_time=start,
        )
        if event["status"] == "error":
            self._fail(span, event["error"] or "error")
        parent = trace.set_span_in_context(span)
        for call in event["tool_calls"]:
            child = self._tracer.start_span(
                f"execute_tool {call.get('tool', '')}",
                context=parent,
                kind=trace.SpanKind.INTERNAL,
                attributes=_tool_attributes(event, call),
                start_time=start,
            )
            if call.get("status") == "error":
                self._fail(child, str(call.get("error_kind") or "tool error"))
            child.end(end_time=end)
        span.end(end_time=end)

    def _run_context(self, event: TraceEvent) -> Any:
        """A context whose (remote) parent span stands for the event's run, or None."""
        key = event["run_id"] or event["thread_id"]
        if not key:
            return None
        trace = self._trace
        parent = trace.SpanContext(
            trace_id=_id(f"bastion-run:{key}", 16),
            span_id=_id(f"bastion-run-span:{key}", 8),
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(parent))

    def _fail(self, span: Span, description: str) -> None:
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, description))
        span.set_attribute("error.type", description.split(":", 1)[0])


def _node_attributes(event: TraceEvent, agent_step: bool) -> dict[str, Any]:
    """The attributes of a node step's span (OTel takes no None values, so they are left out)."""
    attributes: dict[str, Any] = {
        "gen_ai.conversation.id": event["thread_id"],
        "bastion.event_id": event["event_id"],
        "bastion.run_id": event["run_id"],
        "bastion.tenant": event["tenant"],
        "bastion.workflow": event["workflow"],
        "bastion.node": event["node"],
        "bastion.status": event["status"],
        "bastion.context_hash": event["context_hash"],
        "bastion.cost_usd": float(event["cost"]["usd"]),
        "bastion.decision_ids": [str(v.get("decision_id", "")) for v in event["verdicts"]],
        "bastion.verdict_kinds": [str(v.get("kind", "")) for v in event["verdicts"]],
        "bastion.flags": list(event["flags"]),
    }
    cost = event["cost"]
    if agent_step or cost["tokens_in"] or cost["tokens_out"]:
        attributes["gen_ai.usage.input_tokens"] = int(cost["tokens_in"])
        attributes["gen_ai.usage.output_tokens"] = int(cost["tokens_out"])
    if agent_step:
        attributes["gen_ai.operation.name"] = "invoke_agent"
        attributes["gen_ai.agent.name"] = event["agent"] or event["node"].removeprefix("agent_")
    elif event["agent"]:
        attributes["bastion.agent"] = event["agent"]
    if event["confidence"] is not None:
        attributes["bastion.confidence"] = float(event["confidence"])
    if event["escalation"]:
        attributes["bastion.escalated"] = True
    if event["memory_reads"]:  # the memory records this step's decisions rested on
        attributes["bastion.memory_reads"] = [_memory_read(read) for read in event["memory_reads"]]
    return attributes


def _memory_read(read: dict[str, Any]) -> str:
    """`namespace/key@vN (commit)`, one string per record read (OTel has no nested values)."""
    namespace = "/".join(str(label) for label in read.get("namespace") or ())
    return f"{namespace}/{read.get('key')}@v{read.get('version')} ({read.get('commit_id')})"


def _tool_attributes(event: TraceEvent, call: dict[str, Any]) -> dict[str, Any]:
    """The attributes of a tool call's span."""
    return {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": str(call.get("tool", "")),
        "gen_ai.tool.call.id": str(call.get("call_id", "")),
        "gen_ai.tool.type": "function",
        "gen_ai.conversation.id": event["thread_id"],
        "bastion.run_id": event["run_id"],
        "bastion.tenant": event["tenant"],
        "bastion.workflow": event["workflow"],
        "bastion.node": event["node"],
        "bastion.status": str(call.get("status", "")),
        "bastion.side_effect": str(call.get("side_effect", "")),
        "bastion.replayed": bool(call.get("replayed")),
        "bastion.shadow": bool(call.get("shadow")),
    }


def _ns(seconds: float) -> int:
    """Unix seconds as the nanoseconds OpenTelemetry counts in (whole seconds apart: their
    product with 1e9 is past a float's exact integers, and would be off by up to 128 ns)."""
    whole, fraction = divmod(seconds, 1.0)
    return int(whole) * 1_000_000_000 + round(fraction * 1_000_000_000)


def _id(text: str, size: int) -> int:
    """A non-zero id of `size` bytes derived from `text` (OTel rejects zero ids)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=size).digest()) or 1
