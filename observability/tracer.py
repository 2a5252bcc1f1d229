"""`Tracer`: takes node steps on the hot path, writes traces and audit records off it.

The graph thread only appends a small raw step to a bounded queue (about a microsecond). A
daemon thread turns steps into trace events and audit entries (the `encode` function, from
`nodes`) and writes them in batches. If the audit log is down, the writer keeps its batch and
retries with backoff while the queue fills; once full, new steps are dropped and counted, and
when writing works again an audit `gap` record says how many were lost and when. If only the
trace sink is down, auditing goes on and trace events are held (bounded) until it is back.
Memory stays bounded either way, and no loss is silent.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from observability.base import AuditLog, TraceSink
from observability.events import AuditEntry, TraceEvent

__all__ = ["Encoder", "Tracer", "TracerStats"]

logger = logging.getLogger(__name__)

Encoder = Callable[[Any], tuple[Sequence[TraceEvent], Sequence[AuditEntry]]]
"""Turns one raw step (whatever the graph recorded) into trace events and audit entries."""


@dataclass(frozen=True, kw_only=True)
class TracerStats:
    """What a tracer has done so far (exported as Prometheus counters)."""

    queued: int
    """Steps waiting to be written."""
    events_written: int
    """Trace events stored."""
    audit_written: int
    """Audit records sealed."""
    dropped: int
    """Steps lost because the queue was full (the audit log was down or too slow); an audit
    `gap` record says how many."""
    events_dropped: int
    """Trace events lost while only the trace sink was down (their audit entries were kept)."""
    encode_errors: int
    """Steps that could not be encoded (a bug; logged with the step)."""
    sink_errors: int
    """Failed writes (each retried)."""
    last_error: str | None
    """The latest write failure, if any."""


_LIVE: weakref.WeakSet[Tracer] = weakref.WeakSet()


class Tracer:
    """Batches trace events and audit entries to their sinks from a background thread."""

    def __init__(
        self,
        *,
        sink: TraceSink | None,
        audit: AuditLog | None,
        encode: Encoder,
        capacity: int = 10_000,
        batch_size: int = 512,
        interval_s: float = 0.05,
        max_backoff_s: float = 2.0,
    ) -> None:
        """Args:
        sink: where trace events go (None: not kept).
        audit: where audit entries go (None: not kept).
        encode: raw step -> (trace events, audit entries); runs on the writer thread.
        capacity: steps queued at most, and trace events held at most while the trace sink is
            down (memory stays bounded whatever is down).
        batch_size: steps encoded and written per write.
        interval_s: how long written steps wait at most for a batch to fill.
        max_backoff_s: the longest pause between retries while a sink is down.
        """
        if capacity < 1 or batch_size < 1 or interval_s <= 0:
            raise ValueError(
                f"Tracer needs capacity >= 1, batch_size >= 1 and interval_s > 0; got "
                f"{capacity!r}, {batch_size!r}, {interval_s!r}"
            )
        self.sink, self.audit = sink, audit
        self._encode = encode
        self._capacity, self._batch_size = capacity, batch_size
        self._interval_s, self._max_backoff_s = interval_s, max_backoff_s
        self._queue: deque[Any] = deque()
        self._events: list[TraceEvent] = []  # encoded, not yet stored
        self._entries: list[AuditEntry] = []
        self._counts = dict.fromkeys(("events", "audit", "dropped", "events_dropped"), 0)
        self._counts |= {"encode": 0, "sink": 0}
        self._trace_retry_at, self._trace_backoff = 0.0, 0.0
        self._lost: tuple[int, float, float] | None = None  # dropped steps not yet on record
        self._last_error: str | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        _LIVE.add(self)

    def record(self, step: Any) -> None:
        """Queue one raw step; never blocks, never raises (the hot path)."""
        if len(self._queue) >= self._capacity:
            self._drop(1)
            return
        self._queue.append(step)
        if self._thread is None:
            self._start()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Write everything queued now; True when it was all stored within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        if self._thread is None and (self._queue or self._events or self._entries):
            self._start()
        with self._idle:
            while self._queue or self._events or self._entries or self._lost:
                self._wake.set()
                remaining = deadline - time.monotonic()
                waited = remaining > 0 and self._idle.wait(min(remaining, 0.05))
                if not waited and time.monotonic() >= deadline:
                    return False
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush, then stop the writer thread (what cannot be written in time is counted as
        dropped)."""
        if not self.flush(timeout_s):
            self._drop(len(self._queue))
            self._counts["events_dropped"] += len(self._events)
            logger.error("tracer closed with unwritten steps: %s", self.stats())
        self._stopping = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self._thread = None

    def stats(self) -> TracerStats:
        """Counters so far."""
        return TracerStats(
            queued=len(self._queue),
            events_written=self._counts["events"],
            audit_written=self._counts["audit"],
            dropped=self._counts["dropped"],
            events_dropped=self._counts["events_dropped"],
            encode_errors=self._counts["encode"],
            sink_errors=self._counts["sink"],
            last_error=self._last_error,
        )

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name="bastion-tracer", daemon=True
                )
                self._thread.start()

    def _drop(self, count: int) -> None:
        now = time.time()
        with self._lock:
            self._counts["dropped"] += count
            lost, since, _ = self._lost or (0, now, now)
            self._lost = (lost + count, since, now)

    def _run(self) -> None:
        backoff = 0.0
        while not self._stopping:
            self._wake.wait(backoff or self._interval_s)
            self._wake.clear()
            audited = self._write_pending()
            while audited and self._queue and not self._stopping:
                self._encode_batch()
                audited = self._write_pending()
            # A down trace sink has its own retry time (`_write_events`): auditing keeps its pace.
            backoff = (
                0.0 if audited else min(self._max_backoff_s, max(self._interval_s, backoff * 2))
            )
            with self._idle:
                self._idle.notify_all()

    def _encode_batch(self) -> None:
        for _ in range(min(self._batch_size, len(self._queue))):
            step = self._queue.popleft()
            try:
                events, entries = self._encode(step)
            except Exception:
                self._counts["encode"] += 1
                logger.exception("could not encode trace step %r", step)
                continue
            self._events.extend(events)
            self._entries.extend(entries)

    def _write_pending(self) -> bool:
        """Store what is encoded; False when the audit log failed.

        Audit entries matter more than trace events, so the two fail apart: while the audit
        log fails, its entries are kept and no more steps are encoded (the queue fills, then
        steps are dropped and a `gap` record follows); while only the trace sink fails, audit
        goes on, trace events are held up to `capacity` (older ones dropped and counted) and
        the sink is retried with backoff.
        """
        self._write_events()
        self._note_gap()
        if self._entries and self.audit is not None:
            try:
                self.audit.append(self._entries)
            except Exception as error:
                self._failed(error)
                return False
        self._counts["audit"] += len(self._entries)
        self._entries = []
        return True

    def _write_events(self) -> None:
        if not self._events:
            return
        if time.monotonic() < self._trace_retry_at:
            self._hold_events()
            return
        try:
            if self.sink is not None:
                self.sink.write(self._events)
        except Exception as error:
            self._failed(error)
            self._trace_backoff = min(
                self._max_backoff_s, max(self._interval_s, self._trace_backoff * 2)
            )
            self._trace_retry_at = time.monotonic() + self._trace_backoff
            self._hold_events()
            return
        self._trace_backoff = 0.0
        self._counts["events"] += len(self._events)
        self._events = []

    def _hold_events(self) -> None:
        """Keep at most `capacity` events for a down trace sink: the newest (counted)."""
        overflow = len(self._events) - self._capacity
        if overflow > 0:
            del self._events[:overflow]
            self._counts["events_dropped"] += overflow

    def _failed(self, error: Exception) -> None:
        self._counts["sink"] += 1
        self._last_error = f"{type(error).__name__}: {error}"
        if self._counts["sink"] == 1 or self._counts["sink"] % 100 == 0:
            failures = self._counts["sink"]
            logger.error("trace/audit write failed (%d so far): %s", failures, error)

    def _note_gap(self) -> None:
        """Put the steps dropped so far on record as one pending `gap` entry (merged into the
        one still pending, so a long outage leaves one record, not one per retry)."""
        with self._lock:
            lost, self._lost = self._lost, None
        if lost is None:
            return
        count, since, until = lost
        pending = self._entries[-1] if self._entries else None
        if pending is not None and pending["kind"] == "gap":
            count += pending["detail"]["dropped_steps"]
            since = pending["detail"]["since"]
            self._entries.pop()
        self._entries.append(
            AuditEntry(
                kind="gap",
                ts=until,
                tenant="*",
                actor="system:tracer",
                run_id="",
                subject=f"{count} step(s)",
                detail={"dropped_steps": count, "since": since, "until": until},
            )
        )


def _after_fork() -> None:
    """A forked child has no writer thread: let the next `record` start one. What the parent
    had queued is the parent's to write, not the child's."""
    for tracer in list(_LIVE):
        tracer._thread = None
        tracer._queue.clear()
        tracer._events, tracer._entries, tracer._lost = [], [], None
        tracer._lock = threading.Lock()
        tracer._idle = threading.Condition(tracer._lock)


def _close_all() -> None:
    for tracer in list(_LIVE):
        if tracer._thread is not None:
            tracer.close(timeout_s=2.0)


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_close_all)
