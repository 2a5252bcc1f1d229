"""Backend protocols of the tool layer (effect ledger, rate limiter, secrets) and their values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from tools.spec import RateLimit, SideEffect

__all__ = [
    "Claim",
    "ClaimKind",
    "Compensation",
    "EffectIntent",
    "EffectLedger",
    "EffectLedgerError",
    "EffectOutcome",
    "EffectRecord",
    "EffectStatus",
    "RateLimiter",
    "RateLimiterError",
    "SecretSource",
]

EffectStatus = Literal["pending", "done", "in_doubt", "shadow"]
"""`pending`: claimed, the call may be running (write-ahead). `done`: the result is recorded and
every later call with the key replays it. `in_doubt`: a non-idempotent call died mid-flight, so
nobody knows whether it acted; it is never re-run automatically. `shadow`: what a shadow-mode
call would have done (never replayed into a real call)."""
ClaimKind = Literal["acquired", "done", "busy", "in_doubt"]


class EffectLedgerError(RuntimeError):
    """The effect ledger's backend failed (unreachable, corrupt): no side effect may run."""


class RateLimiterError(RuntimeError):
    """The rate limiter's backend failed: calls are refused rather than let through unlimited."""


@dataclass(frozen=True, kw_only=True)
class EffectIntent:
    """One logical side-effecting call, identified by its idempotency key."""

    key: str
    """Idempotency key: tenant, thread, tool and canonical (or declared) arguments."""
    tool: str
    """Tool name."""
    tenant: str
    """Tenant the call runs for."""
    thread_id: str
    """Thread of the run."""
    run_id: str
    """Run that first proposed the call (what `undo` groups by)."""
    agent: str
    """Specialist that proposed it."""
    args: Mapping[str, Any]
    """Validated arguments, as JSON (secrets are never arguments)."""
    side_effect: SideEffect
    """The contract's side-effect class."""


@dataclass(frozen=True, kw_only=True)
class EffectOutcome:
    """What one call returned, as recorded and replayed."""

    ok: bool
    """False for a recorded failure (e.g. a broken output contract after the tool acted)."""
    content: str
    """Text the model read."""
    output: Any = None
    """The JSON output (what rollback receives)."""
    error_kind: str | None = None
    """The gateway's error kind when not ok."""


@dataclass(frozen=True, kw_only=True)
class Compensation:
    """A rollback applied (or tried) on a recorded effect."""

    ok: bool
    """True when the compensation ran; False when it failed (it may be tried again)."""
    by: str
    """Who asked for it."""
    reason: str
    """Why."""
    at: float
    """Unix time."""
    detail: str = ""
    """The compensation's output, or its error."""


@dataclass(frozen=True, kw_only=True)
class EffectRecord:
    """The ledger's entry for one idempotency key."""

    intent: EffectIntent
    """The call."""
    status: EffectStatus
    """Where the call stands."""
    seq: int
    """Order of first claim in this ledger (undo runs in reverse)."""
    owner: str
    """Who holds (or last held) the claim."""
    lease_until: float
    """Unix time after which a `pending` claim may be taken over."""
    attempts: int
    """Claims made on the key (1 + takeovers after a crash or an expired lease)."""
    started_at: float
    """Unix time of the first claim."""
    finished_at: float | None = None
    """Unix time the outcome was recorded."""
    outcome: EffectOutcome | None = None
    """The recorded result (`done`, `shadow`)."""
    compensation: Compensation | None = None
    """The latest rollback of this effect, if any."""


@dataclass(frozen=True, kw_only=True)
class Claim:
    """The answer to `EffectLedger.claim`."""

    kind: ClaimKind
    """`acquired`: act now. `done`: replay `record.outcome`. `busy`: another live worker holds
    the claim; wait for its outcome. `in_doubt`: a human must settle whether it acted."""
    record: EffectRecord
    """The record as it stands after the claim."""
    recovered: bool = False
    """Acquired from a dead or expired earlier claim: the effect may already have happened."""


@runtime_checkable
class EffectLedger(Protocol):
    """Write-ahead record of side effects: at most one live attempt per key, results replayed.

    Every method is atomic with respect to the others, across threads and (for shared
    backends) processes. Times are passed in, so leases are testable without sleeping.
    """

    def claim(self, intent: EffectIntent, *, owner: str, lease_s: float, now: float) -> Claim:
        """Claim `intent.key` for `owner` before acting.

        No record: create it `pending` (acquired). `done`: return it (replay). `in_doubt`:
        return it. `pending` held by a live owner whose lease runs: `busy`. `pending` whose
        lease expired, or whose owner process is provably dead: take it over (acquired,
        recovered). Shadow records live under their own keys and are never claimed.
        """
        ...

    def finish(self, key: str, *, owner: str, outcome: EffectOutcome, now: float) -> bool:
        """Record the outcome of `owner`'s claim (`pending` -> `done`). False if `owner` no
        longer holds the claim (its lease was taken over); the record is then left alone."""
        ...

    def mark_in_doubt(self, key: str, *, owner: str, detail: str, now: float) -> bool:
        """`pending` -> `in_doubt`: the call may have acted and cannot safely be repeated."""
        ...

    def release(self, key: str, *, owner: str) -> bool:
        """Forget `owner`'s claim: the call did not act, so a later call may try again."""
        ...

    def record_shadow(self, intent: EffectIntent, outcome: EffectOutcome, *, now: float) -> None:
        """Record what a shadow-mode call would have done (status `shadow`, replaces any
        earlier shadow record with the same key)."""
        ...

    def get(self, key: str) -> EffectRecord | None:
        """The record for `key`, if any."""
        ...

    def effects(
        self,
        *,
        run_id: str | None = None,
        thread_id: str | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> list[EffectRecord]:
        """Records matching every given filter, oldest first (by `seq`); the newest `limit`."""
        ...

    def compensate(self, key: str, compensation: Compensation) -> bool:
        """Attach `compensation` to a `done` record. False (and nothing changes) if the record
        is missing, not done, or already successfully compensated."""
        ...


@runtime_checkable
class RateLimiter(Protocol):
    """Token buckets shared by every caller of the same backend."""

    def acquire(self, key: str, limit: RateLimit, *, now: float) -> float:
        """Take one token from bucket `key`: 0.0 when taken, else the seconds until one will be
        free (nothing is taken)."""
        ...


class SecretSource(Protocol):
    """Where secret values come from (environment, vault). Asked at execution time only."""

    def __call__(self, name: str, /) -> str | None:
        """The value of secret `name`, or None when it is not configured."""
        ...
