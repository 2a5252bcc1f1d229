"""Support runs in forked workers for the crash test: SIGKILLed at a chosen point, then resumed.

`tests/test_crash_resume.py` preloads this module in a forkserver, so each run forks from a
process that has imported LangGraph and the support graph once. The kill points are injected
by wrapping the backends the worker passes to the graph, never by touching production code:

- `before_call`: the effect ledger's claim was just acquired (the tool has not run);
- `after_write`: the business database committed the effect (the tool has not returned);
- `after_result`: the ledger recorded the outcome (the step has not been checkpointed);
- `before_checkpoint`: the first checkpoint write after the effect (the saver has not written).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from graphs.services import Services
from graphs.support import SupportDB, build_support_graph, format_ticket, scripted_review
from memory import open_checkpointer
from nodes import RunContext
from tools import Claim, EffectIntent, EffectOutcome, SqliteEffectLedger

__all__ = [
    "KILL_POINTS",
    "TICKETS",
    "KillingDB",
    "KillingLedger",
    "KillingSaver",
    "Trial",
    "Tripwire",
    "crash",
    "effect_count",
    "effect_rows",
    "ledger_statuses",
    "resume",
    "run_uncrashed",
]

KILL_POINTS = ("before_call", "after_write", "after_result", "before_checkpoint")
TICKETS = {"T02": "demo", "T04": "acme", "T13": "demo"}
"""Tickets that make three effects each, and the tenant each runs for: T02 a refund, T04 a
cancellation, T13 a refund an approver halves; then every one drafts and sends a reply."""
THREAD = "crash-trial"
EffectRows = dict[str, list[tuple[Any, ...]]]


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One run of a ticket on its own files, and where (if anywhere) its worker dies."""

    folder: Path
    """Holds the checkpoints, the effect ledger, the business database and the outcome."""
    ticket: str
    """Ticket id in `graphs/support/data/tickets.json`."""
    tenant: str
    """Tenant the run is for."""
    durability: str
    """LangGraph durability mode of every invoke (`sync`, `async`, `exit`)."""
    point: str = ""
    """One of `KILL_POINTS`; empty: never killed."""
    k: int = 0
    """Kill at the k-th side-effecting call of the run (1-based)."""

    def path(self, name: str) -> Path:
        """A file of this trial: `checkpoints`, `effects`, `support` (.sqlite) or `outcome`."""
        return self.folder / (f"{name}.json" if name == "outcome" else f"{name}.sqlite")


class Tripwire:
    """Kills this process with SIGKILL at the k-th side-effecting call's `point`."""

    def __init__(self, point: str, k: int) -> None:
        if point not in KILL_POINTS or k < 1:
            raise ValueError(f"no kill point {point!r} at call {k}; points: {KILL_POINTS}")
        self.point, self.k = point, k
        self._seen: Counter[str] = Counter()
        self._armed = False

    def passed(self, point: str) -> None:
        """Note that a side-effecting call reached `point`; die if it is the chosen one."""
        self._seen[point] += 1
        if self._seen[point] != self.k:
            return
        if point == self.point:
            _die()
        if point == "after_result" and self.point == "before_checkpoint":
            self._armed = True  # the next checkpoint write is the one that follows the effect

    def checkpointing(self) -> None:
        """The saver is about to write: die there when armed."""
        if self._armed:
            _die()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingLedger(SqliteEffectLedger):
    """The SQLite effect ledger, reporting acquired claims and recorded outcomes."""

    def __init__(self, path: Path, tripwire: Tripwire) -> None:
        super().__init__(path)
        self.tripwire = tripwire

    def claim(self, intent: EffectIntent, *, owner: str, lease_s: float, now: float) -> Claim:
        """See `EffectLedger.claim`; reports `before_call` when acquired."""
        claim = super().claim(intent, owner=owner, lease_s=lease_s, now=now)
        if claim.kind == "acquired":
            self.tripwire.passed("before_call")
        return claim

    def finish(self, key: str, *, owner: str, outcome: EffectOutcome, now: float) -> bool:
        """See `EffectLedger.finish`; reports `after_result` once recorded."""
        done = super().finish(key, owner=owner, outcome=outcome, now=now)
        self.tripwire.passed("after_result")
        return done


class KillingDB(SupportDB):
    """The business database, reporting `after_write` once a transaction that changed rows
    committed (every effect of the support tools is one such `write()`)."""

    tripwire: Tripwire | None = None  # unset while the constructor seeds the database

    def __init__(self, path: Path, tripwire: Tripwire) -> None:
        super().__init__(path)
        self.tripwire = tripwire

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """See `SupportDB.write`."""
        with super().write() as conn:
            yield conn
            changed = conn.total_changes > 0
        if changed and self.tripwire is not None:  # committed and closed by now
            self.tripwire.passed("after_write")


class KillingSaver(SqliteSaver):
    """The SQLite checkpointer, asking the tripwire before each write."""

    def __init__(self, conn: sqlite3.Connection, tripwire: Tripwire) -> None:
        super().__init__(conn)
        self.tripwire = tripwire

    def put(
        self,
        config: Any,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Any:
        """See `SqliteSaver.put`."""
        self.tripwire.checkpointing()
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """See `SqliteSaver.put_writes`."""
        self.tripwire.checkpointing()
        super().put_writes(config, writes, task_id, task_path)


def _ticket_text(ticket_id: str) -> str:
    tickets = json.loads(
        resources.files("graphs.support").joinpath("data/tickets.json").read_text()
    )
    ticket = next(t for t in tickets if t["id"] == ticket_id)
    return format_ticket(ticket["from"], ticket["subject"], ticket["body"])


def _drive(graph: Any, trial: Trial, first: Any) -> str:
    """Invoke from `first` to the end, answering approvals as the demo's reviewer does."""
    config: Any = {"configurable": {"thread_id": THREAD}}
    context = RunContext(tenant=trial.tenant)
    result = graph.invoke(first, config, context=context, durability=trial.durability)
    while result.get("__interrupt__"):
        review = scripted_review(result["__interrupt__"][0].value)
        result = graph.invoke(
            Command(resume=review), config, context=context, durability=trial.durability
        )
    return str((result.get("outcome") or {}).get("status", ""))


def _services(ledger: SqliteEffectLedger) -> Services:
    return replace(Services.in_process(), effects=ledger)


def crash(trial: Trial) -> None:
    """Run the trial's ticket from the start; the tripwire kills the process at its point.

    Returning at all means the point was never reached (the caller sees exit code 0).
    """
    tripwire = Tripwire(trial.point, trial.k)
    ledger = KillingLedger(trial.path("effects"), tripwire)
    db = KillingDB(trial.path("support"), tripwire)
    with open_checkpointer(sqlite_path=trial.path("checkpoints")) as opened:
        saver = KillingSaver(opened.conn, tripwire)  # type: ignore[attr-defined]
        graph = build_support_graph(db, services=_services(ledger)).compile(checkpointer=saver)
        _drive(graph, trial, {"messages": [("user", _ticket_text(trial.ticket))]})


def _finish(trial: Trial, *, fresh: bool) -> None:
    ledger = SqliteEffectLedger(trial.path("effects"))
    db = SupportDB(trial.path("support"))
    try:
        with open_checkpointer(sqlite_path=trial.path("checkpoints")) as saver:
            graph = build_support_graph(db, services=_services(ledger))
            compiled = graph.compile(checkpointer=saver)
            config: Any = {"configurable": {"thread_id": THREAD}}
            # A crash under `async` durability may come before the first checkpoint is written.
            saved = not fresh and bool(compiled.get_state(config).values)
            first = None if saved else {"messages": [("user", _ticket_text(trial.ticket))]}
            status = _drive(compiled, trial, first)
    finally:
        ledger.close()
    trial.path("outcome").write_text(json.dumps({"status": status, "resumed": saved}))


def resume(trial: Trial) -> None:
    """Continue the trial's thread from its last checkpoint to the end (with the plain
    backends) and write the outcome to the trial's `outcome.json`."""
    _finish(trial, fresh=False)


def run_uncrashed(trial: Trial) -> None:
    """Run the trial's ticket from the start to the end; write its outcome like `resume`."""
    _finish(trial, fresh=True)


def effect_rows(db_path: Path) -> EffectRows:
    """The effects in the business database, without ids, timestamps or keys, sorted."""
    queries = {
        "refunds": "SELECT order_id, amount, reason, status FROM refunds",
        "order_events": "SELECT order_id, event, detail, previous_status FROM order_events",
        "outbound_emails": "SELECT to_addr, subject, body, status FROM outbound_emails",
        "orders": "SELECT id, status FROM orders WHERE status = 'cancelled'",
    }
    conn = sqlite3.connect(db_path)
    try:
        return {name: sorted(conn.execute(sql).fetchall()) for name, sql in queries.items()}
    finally:
        conn.close()


def effect_count(rows: EffectRows) -> int:
    """How many effect writes `rows` show: a refund, a cancellation, a draft and a send each
    count one."""
    sent = sum(row[-1] == "sent" for row in rows["outbound_emails"])
    return len(rows["refunds"]) + len(rows["order_events"]) + len(rows["outbound_emails"]) + sent


def ledger_statuses(path: Path) -> list[str]:
    """The status of each record in the effect ledger at `path`, in claim order."""
    ledger = SqliteEffectLedger(path)
    try:
        return [record.status for record in ledger.effects()]
    finally:
        ledger.close()
