"""Escalation deadlines: a pending approval past its deadline takes its default action, on
record."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

from console.control import Approval, NothingPendingError, RunControl
from observability import AuditEntry, AuditLog

__all__ = [
    "DEADLINE_ACTOR",
    "SWEEP_ENV",
    "TimedOut",
    "run_sweeper",
    "sweep_interval",
    "sweep_overdue",
]

logger = logging.getLogger(__name__)

DEADLINE_ACTOR = "system:deadline"
"""Who decides when nobody answered in time (the reviewer and the audit actor)."""
SWEEP_ENV = "BASTION_APPROVAL_SWEEP_S"
"""Seconds between deadline sweeps in the console app (0 disables them)."""
DEFAULT_SWEEP_S = 30.0


@dataclass(frozen=True, kw_only=True)
class TimedOut:
    """A pending approval that passed its deadline and got its default action."""

    thread_id: str
    """The thread that waited."""
    run_id: str
    """Its run."""
    tenant: str
    """Its tenant."""
    action: str
    """The default action taken for every request: `reject` or `approve`."""
    decision_ids: tuple[str, ...]
    """The escalation decisions that were answered."""
    deadline: float
    """The deadline that passed (Unix time)."""
    late_s: float
    """How long past the deadline the sweep found it."""
    status: str
    """The run's status afterwards."""


def sweep_interval(env: Mapping[str, str] | None = None) -> float:
    """The sweep interval from `BASTION_APPROVAL_SWEEP_S` (default 30 s; 0 disables).

    Raises:
        ValueError: the value is not a non-negative number (names it and the expected form).
    """
    raw = (os.environ if env is None else env).get(SWEEP_ENV, "").strip()
    if not raw:
        return DEFAULT_SWEEP_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(
            f"{SWEEP_ENV}={raw!r} is not a number of seconds >= 0. "
            f"Hint: {SWEEP_ENV}=30 sweeps every 30 s; 0 turns the sweep off."
        )
    return value


def _overdue(approval: Approval, now: float) -> bool:
    deadline = approval["deadline"]
    return deadline is not None and deadline < now


async def _take_default(
    control: RunControl, audit: AuditLog, approval: Approval, now: float
) -> TimedOut:
    deadline = float(approval["deadline"] or 0.0)
    late = now - deadline
    action = approval["on_timeout"] or "reject"
    note = (
        f"approval deadline passed {late:.0f}s ago without a reviewer's answer; "
        f"the default action `{action}` was taken"
    )
    decision: dict[str, str] = {"type": action}
    if action == "reject":
        decision["message"] = note
    status = await control.decide(
        approval["thread_id"],
        [dict(decision) for _ in approval["requests"]],
        note=note,
        reviewer=DEADLINE_ACTOR,
    )
    timed_out = TimedOut(
        thread_id=approval["thread_id"],
        run_id=approval["run_id"],
        tenant=approval["tenant"],
        action=action,
        decision_ids=tuple(str(r["decision_id"] or "") for r in approval["requests"]),
        deadline=deadline,
        late_s=round(late, 3),
        status=status,
    )
    entry = AuditEntry(
        kind="approval_timeout",
        ts=time.time(),
        tenant=timed_out.tenant or "*",
        actor=DEADLINE_ACTOR,
        run_id=timed_out.run_id,
        subject=timed_out.thread_id,
        detail={
            "run_id": timed_out.run_id,
            "decision_ids": list(timed_out.decision_ids),
            "call_ids": [r["call_id"] for r in approval["requests"]],
            "action": action,
            "deadline": deadline,
            "late_s": timed_out.late_s,
            "status": status,
            "note": note,
        },
    )
    await asyncio.to_thread(audit.append, [entry])
    return timed_out


async def sweep_overdue(
    control: RunControl, audit: AuditLog, *, now: float | None = None
) -> list[TimedOut]:
    """Give every pending approval past its deadline its `on_timeout` decision, on record.

    Each gets one decision per request, reviewer `system:deadline`, with a note saying how
    late it was, and an `approval_timeout` audit entry. A thread answered meanwhile (by a
    person, or by another sweeper) is skipped; a failure on one thread is logged and does not
    stop the others.

    Args:
        control: where the runs wait.
        audit: where the timeouts go on record.
        now: the time to judge deadlines by (default: the clock).
    """
    now = time.time() if now is None else now
    done: list[TimedOut] = []
    for approval in await control.approvals():
        if not _overdue(approval, now):
            continue
        try:
            done.append(await _take_default(control, audit, approval, now))
        except NothingPendingError:
            continue  # answered between the listing and the decision
        except Exception:
            logger.exception(
                "deadline sweep: could not take the default action on thread %r",
                approval["thread_id"],
            )
    return done


async def run_sweeper(control: RunControl, audit: AuditLog, interval_s: float) -> None:
    """Sweep every `interval_s` seconds until cancelled (the console app's background task)."""
    logger.info("deadline sweep of pending approvals every %gs (%s)", interval_s, SWEEP_ENV)
    while True:
        await asyncio.sleep(interval_s)
        try:
            timed_out = await sweep_overdue(control, audit)
        except Exception:
            logger.exception("deadline sweep failed; retrying in %.0fs", interval_s)
            continue
        for item in timed_out:
            logger.info(
                "approval on thread %s passed its deadline by %.0fs: %s (run %s)",
                item.thread_id,
                item.late_s,
                item.action,
                item.status,
            )
