"""Undo a run: compensate its recorded effects, newest first, each exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel

from tools.base import Compensation, EffectIntent, EffectOutcome, EffectRecord
from tools.calls import scrub
from tools.deadline import run_attempt
from tools.gateway import ExecutionGateway
from tools.ledger import new_owner
from tools.spec import ToolContext, ToolError, ToolSpec

__all__ = ["UndoEntry", "UndoError", "UndoReport", "UndoStatus", "undo_run"]

UndoStatus = Literal[
    "undone", "already_undone", "not_reversible", "refused", "failed", "would_undo"
]
_Result = Literal["undone", "refused", "failed"]
MAX_EFFECTS = 100_000
"""Effects looked at per run (a run has far fewer; the ledger returns the newest this many)."""
MAX_DETAIL_CHARS = 2000
"""A compensation's output or error is cut to this many characters in the record."""


class UndoError(ValueError):
    """The run cannot be undone as asked (e.g. the ledger has no effects for it)."""


@dataclass(frozen=True, kw_only=True)
class UndoEntry:
    """What undo did (or would do) with one recorded effect."""

    key: str
    """Idempotency key of the effect."""
    tool: str
    """Tool that made it."""
    args: Mapping[str, Any]
    """Its arguments, as recorded."""
    status: UndoStatus
    """`undone` now, `already_undone` earlier, `not_reversible` (see detail), `refused` (the
    rollback declined with a business reason, e.g. the email was already sent: a person must
    decide), `failed` (a crash, a timeout, another undo holding it: worth trying again), or
    `would_undo` in a dry run."""
    detail: str = ""
    """The compensation's output, the error, or why it cannot be undone."""


@dataclass(frozen=True, kw_only=True)
class UndoReport:
    """The outcome of undoing one run, newest effect first."""

    run_id: str
    """The run."""
    entries: tuple[UndoEntry, ...]
    """One per recorded effect, in the order they were (or would be) compensated."""

    @property
    def ok(self) -> bool:
        """No compensation failed (refusals and effects that cannot be undone are not
        failures: running undo again would not change them)."""
        return all(entry.status != "failed" for entry in self.entries)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        entries = [{**asdict(e), "args": dict(e.args)} for e in self.entries]
        return {"run_id": self.run_id, "ok": self.ok, "entries": entries}


def undo_run(
    gateway: ExecutionGateway,
    run_id: str,
    *,
    by: str,
    reason: str,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
) -> UndoReport:
    """Compensate the effects `run_id` recorded in `gateway.effects`, newest first.

    Each rollback runs at most once per effect, across concurrent undos and crashes: it is
    claimed in the same ledger under `undo:<key>` first, and rollbacks are idempotent on their
    `ctx.idempotency_key`. A rollback that fails (crashes, times out) or refuses (raises a
    non-retryable `ToolError`: the business says no) is recorded as an unsuccessful
    compensation and released, so a later undo may try again; the other effects are still
    undone.

    Args:
        gateway: the gateway whose registry and effect ledger the run used.
        run_id: the run to undo.
        by: who asks (recorded with each compensation).
        reason: why (recorded with each compensation).
        dry_run: only report what would be undone.
        clock: wall time for the records.

    Raises:
        UndoError: the ledger holds no effects for `run_id`.
    """
    records = gateway.effects.effects(run_id=run_id, limit=MAX_EFFECTS)
    if not records:
        raise UndoError(
            f"run `{run_id}` has no recorded effects in this effect ledger; check the run id "
            "(`bastion effects` lists runs with effects) and that the ledger is the one it used"
        )
    undo = _Undo(gateway=gateway, by=by, reason=reason, dry_run=dry_run, clock=clock)
    newest_first = sorted(records, key=lambda r: r.seq, reverse=True)
    # Shadow records are simulations: nothing happened, so there is nothing to undo.
    entries = tuple(undo.one(r) for r in newest_first if r.status != "shadow")
    return UndoReport(run_id=run_id, entries=entries)


def _entry(record: EffectRecord, status: UndoStatus, detail: str = "") -> UndoEntry:
    intent = record.intent
    return UndoEntry(
        key=intent.key, tool=intent.tool, args=intent.args, status=status, detail=detail
    )


def _why_not(spec: ToolSpec | None, record: EffectRecord) -> str | None:
    """Why `record` cannot be compensated automatically, or None if it can."""
    if record.status != "done" or record.outcome is None:
        return f"its outcome is {record.status}, not done: a person must check what happened"
    if not record.outcome.ok:
        return f"it ended as {record.outcome.error_kind}; a person must check what happened"
    if spec is None:
        return f"tool `{record.intent.tool}` is not in this gateway's registry"
    if spec.side_effect != "reversible" or spec.rollback is None:
        return f"`{spec.name}` is declared {spec.side_effect}; it has no rollback"
    return None


@dataclass(frozen=True, kw_only=True)
class _Undo:
    """One undo request, applied to a run's records one at a time."""

    gateway: ExecutionGateway
    """Whose registry and effect ledger the run used."""
    by: str
    """Who asks (recorded with each compensation)."""
    reason: str
    """Why (recorded with each compensation)."""
    dry_run: bool
    """Only report what would be undone."""
    clock: Callable[[], float]
    """Wall time for the records and leases."""

    def one(self, record: EffectRecord) -> UndoEntry:
        """Compensate `record` (at most once across undos) and say what became of it."""
        if record.compensation is not None and record.compensation.ok:
            return _entry(record, "already_undone", record.compensation.detail)
        spec = self.gateway.registry.get(record.intent.tool)
        why_not = _why_not(spec, record)
        if spec is None or why_not is not None:
            return _entry(record, "not_reversible", why_not or "")
        if self.dry_run:
            return _entry(record, "would_undo")
        effects, key, owner = self.gateway.effects, f"undo:{record.intent.key}", new_owner()
        lease_s = (spec.timeout_s or 30.0) + 30.0
        claim = effects.claim(
            _undo_intent(record, key), owner=owner, lease_s=lease_s, now=self.clock()
        )
        if claim.kind == "done" and claim.record.outcome is not None:  # rolled back, unrecorded
            return self._record(record, "undone", claim.record.outcome.content)
        if claim.kind != "acquired":
            return _entry(record, "failed", f"another undo holds `{key}`; run undo again later")
        result, detail = _rollback(self.gateway, spec, record, key, attempt=claim.record.attempts)
        if result == "undone":
            outcome = EffectOutcome(ok=True, content=detail)
            effects.finish(key, owner=owner, outcome=outcome, now=self.clock())
        else:  # it did not compensate: free the claim so a later undo may try again
            effects.release(key, owner=owner)
        return self._record(record, result, detail)

    def _record(self, record: EffectRecord, result: _Result, detail: str) -> UndoEntry:
        ok = result == "undone"
        done = Compensation(ok=ok, by=self.by, reason=self.reason, at=self.clock(), detail=detail)
        if self.gateway.effects.compensate(record.intent.key, done):
            return _entry(record, result, detail)
        now = self.gateway.effects.get(record.intent.key)
        if now is not None and now.compensation is not None and now.compensation.ok:
            return _entry(record, "already_undone", now.compensation.detail)
        return _entry(record, "failed", f"{detail} (the ledger did not record the compensation)")


def _undo_intent(record: EffectRecord, key: str) -> EffectIntent:
    # Its own run id and tool name: a run's effects never list its undos, and undoing an undo
    # finds no tool (so it is reported, not attempted).
    intent = record.intent
    return EffectIntent(
        key=key,
        tool=f"undo:{intent.tool}",
        tenant=intent.tenant,
        thread_id=intent.thread_id,
        run_id=f"undo:{intent.run_id}",
        agent="undo",
        args=intent.args,
        side_effect=intent.side_effect,
    )


def _bounded_rollback(spec: ToolSpec, args: BaseModel, output: Any, ctx: ToolContext) -> Any:
    """The rollback, within the tool's latency budget (a hung compensation must not hang undo)."""
    rollback = spec.rollback
    assert rollback is not None

    def compensate(ctx: ToolContext, **_: Any) -> Any:
        return rollback(args, output, ctx)

    return run_attempt(replace(spec, func=compensate, takes_context=True), args, ctx)


def _rollback(
    gateway: ExecutionGateway, spec: ToolSpec, record: EffectRecord, key: str, *, attempt: int
) -> tuple[_Result, str]:
    """Run `spec.rollback` on `record`: whether it compensated (`undone`), declined for a
    business reason (`refused`: a non-retryable `ToolError`) or broke (`failed`), and its
    result or error as bounded text with secrets scrubbed."""
    assert spec.rollback is not None and record.outcome is not None
    secrets, intent = gateway.secrets_for(spec), record.intent
    if isinstance(secrets, str):
        return "failed", secrets
    ctx = ToolContext(
        tenant=intent.tenant,
        thread_id=intent.thread_id,
        run_id=intent.run_id,
        agent="undo",
        call_id="undo",
        idempotency_key=key,
        attempt=attempt,
        secrets=secrets,
    )
    try:
        # The ledger holds JSON dumps of validated models: validating the JSON restores them.
        args = spec.input_model.model_validate_json(json.dumps(dict(intent.args)))
        output: Any = record.outcome.output
        if spec.output_model is not None:
            output = spec.output_model.model_validate_json(json.dumps(output))
        result: _Result = "undone"
        text = json.dumps(_bounded_rollback(spec, args, output, ctx), default=str)
    except ToolError as error:
        code = f" ({error.code})" if error.code else ""
        # A retryable error is a busy upstream, not the business saying no.
        result = "failed" if error.retryable else "refused"
        text = f"rollback of `{spec.name}` {result}{code}: {error}"
    except Exception as error:  # a broken rollback must not stop the others
        result = "failed"
        text = f"rollback of `{spec.name}` failed: {type(error).__name__}: {error}"
    text = scrub(text, secrets)
    return result, text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "…"
