"""Budget ledger: the in-process reference implementation and the rules shared with Redis."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from guards.base import BudgetCaps, BudgetKey, Charge, Reservation
from guards.errors import GuardConfigError

__all__ = ["BudgetBackendError", "InMemoryBudgetLedger"]

# Every implementation counts in integers (tokens, steps, micro-dollars) so that Lua in Redis
# and Python here do the same exact arithmetic: a float sum of cents drifts, an integer one not.
USD_MICROS = 1_000_000
NO_CAP = -1
"""Stored in place of a cap on a dimension that has none."""
DIMENSIONS = ("tokens", "steps", "usd")
_MAX_USD = 1e9  # far above any real charge, far below 2**53 micro-dollars (exact in Lua)

Units = tuple[int, int, int]
"""(tokens, steps, micro-dollars): an amount, a set of caps or what a bucket uses."""


class BudgetBackendError(RuntimeError):
    """The ledger's backing store cannot be reached; the message names it and what to do."""


def check_id(reservation_id: str) -> None:
    """Refuse an empty or non-string reservation id (it could not dedupe retries)."""
    if not reservation_id or not isinstance(reservation_id, str):
        raise GuardConfigError(
            f"budget reservation id must be a non-empty string, got {reservation_id!r}. "
            "Hint: derive it from something stable across retries, e.g. the run id and step."
        )


def charge_units(charge: Charge, what: str = "amount") -> Units:
    """`charge` as integer units, refusing negative, non-integral or non-finite parts."""
    tokens, steps, usd = charge.tokens, charge.steps, charge.usd
    if (
        type(tokens) is int
        and type(steps) is int
        and type(usd) in (float, int)
        and tokens >= 0
        and steps >= 0
        and 0 <= usd <= _MAX_USD  # also false for NaN
    ):
        return tokens, steps, round(usd * USD_MICROS)
    raise GuardConfigError(
        f"budget {what} {charge!r} is not valid: tokens and steps must be non-negative "
        f"integers and usd a non-negative number up to {_MAX_USD:g}. "
        "Hint: a charge records consumption; it cannot be negative (release a hold instead)."
    )


def caps_units(caps: BudgetCaps) -> Units:
    """`caps` as integer units, `NO_CAP` where a dimension has none (fractional counts floor)."""
    return (
        NO_CAP if caps.tokens is None else int(caps.tokens),
        NO_CAP if caps.steps is None else int(caps.steps),
        NO_CAP if caps.usd is None else round(caps.usd * USD_MICROS),
    )


def caps_from_units(units: Units) -> BudgetCaps:
    """The `BudgetCaps` that `caps_units` turned into `units`."""
    tokens, steps, usd = units
    return BudgetCaps(
        tokens=None if tokens < 0 else tokens,
        steps=None if steps < 0 else steps,
        usd=None if usd < 0 else usd / USD_MICROS,
    )


def charge_from_units(units: Units) -> Charge:
    """The `Charge` that `charge_units` turned into `units`."""
    return Charge(tokens=units[0], steps=units[1], usd=units[2] / USD_MICROS)


def unknown_reservation(reservation_id: str) -> KeyError:
    """The error for settling or releasing an id the ledger does not know."""
    return KeyError(
        f"unknown budget reservation {reservation_id!r}: it was never admitted (a refused "
        "reservation records nothing) or it expired. Hint: settle or release only ids whose "
        "reserve() returned admitted=True."
    )


def _show(dimension: int, value: int) -> str:
    if dimension != 2:
        return str(value)
    dollars, micros = divmod(value, USD_MICROS)
    return f"${dollars}.{f'{micros:06d}'.rstrip('0'):0<2}"


def used_fraction(caps: Units | None, used: Units) -> float:
    """Highest `used / cap` over the capped dimensions (a zero cap counts as full)."""
    fraction = 0.0
    if caps is not None:
        for dimension in range(3):
            cap = caps[dimension]
            if cap > 0:
                share = used[dimension] / cap
                if share > fraction:
                    fraction = share
            elif cap == 0 and fraction < 1.0:
                fraction = 1.0
    return fraction


def decide(
    key: BudgetKey,
    reservation_id: str,
    amount: Charge,
    units: Units,
    caps: Units | None,
    used: Units,
) -> Reservation:
    """The answer to a fresh reservation, given the bucket's caps and use before it.

    Both ledgers call this on the snapshot their atomic check saw, so they agree on the
    outcome, the reason and the fraction to the last digit.
    """
    if caps is not None:
        for dimension in range(3):
            cap = caps[dimension]
            if cap >= 0 and used[dimension] + units[dimension] > cap:
                return Reservation(
                    id=reservation_id,
                    key=key,
                    amount=amount,
                    admitted=False,
                    reason=_refusal(key, dimension, cap, used[dimension], units[dimension]),
                    used_fraction=used_fraction(caps, used),
                )
    after = (used[0] + units[0], used[1] + units[1], used[2] + units[2])
    return Reservation(
        id=reservation_id,
        key=key,
        amount=amount,
        admitted=True,
        used_fraction=used_fraction(caps, after),
    )


def _refusal(key: BudgetKey, dimension: int, cap: int, used: int, asked: int) -> str:
    return (
        f"tenant {key}: {DIMENSIONS[dimension]} cap {_show(dimension, cap)} would be crossed: "
        f"{_show(dimension, used)} spent or held + {_show(dimension, asked)} requested"
    )


@dataclass(kw_only=True, slots=True)
class _Bucket:
    caps: Units | None = None
    """None until `set_caps`."""
    spent: list[int]
    """Settled units."""
    held: list[int]
    """Reserved, unsettled units."""

    def used(self) -> Units:
        spent, held = self.spent, self.held
        return spent[0] + held[0], spent[1] + held[1], spent[2] + held[2]


@dataclass(kw_only=True, slots=True)
class _Hold:
    key: BudgetKey
    """Bucket it was reserved against."""
    units: Units
    """Amount reserved."""
    state: str = "held"
    """`held`, then `settled` or `released`."""


class InMemoryBudgetLedger:
    """The in-process `BudgetLedger`: one lock makes every operation atomic across threads.

    Semantics (the conformance suite holds the Redis ledger to the same):

    - `reserve` admits iff `spent + held + amount <= cap` on every capped dimension. A refusal
      records nothing, so a later reserve with the same id is evaluated afresh.
    - A reserve with an id that is held or settled is a replay: it returns the original
      reservation with `replayed=True` (its `used_fraction` is the bucket's current one) and
      charges nothing. A released id is free again: reserving it is evaluated afresh.
    - `settle` and `release` act on held ids only; on settled or released ids (settle after
      release, release after settle, or a repeat) they are no-ops. Unknown ids raise KeyError.

    Reservations are remembered for the life of the ledger (Redis expires them after a TTL).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[BudgetKey, _Bucket] = {}
        self._holds: dict[str, _Hold] = {}

    def _bucket(self, key: BudgetKey) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(spent=[0, 0, 0], held=[0, 0, 0])
        return bucket

    def set_caps(self, key: BudgetKey, caps: BudgetCaps) -> None:
        """Set (or replace) a bucket's caps. Spending so far is kept."""
        units = caps_units(caps)
        with self._lock:
            self._bucket(key).caps = units

    def caps(self, key: BudgetKey) -> BudgetCaps | None:
        """A bucket's caps, or None if never set."""
        with self._lock:
            bucket = self._buckets.get(key)
            units = None if bucket is None else bucket.caps
        return None if units is None else caps_from_units(units)

    def reserve(self, key: BudgetKey, reservation_id: str, amount: Charge) -> Reservation:
        """Hold `amount` if spent + held + amount stays within every cap; idempotent per id."""
        check_id(reservation_id)
        units = charge_units(amount)
        with self._lock:
            hold = self._holds.get(reservation_id)
            if hold is not None and hold.state != "released":
                original = self._buckets[hold.key]
                caps, used = original.caps, original.used()
            else:
                bucket = self._bucket(key)
                caps, used = bucket.caps, bucket.used()
                answer = decide(key, reservation_id, amount, units, caps, used)
                if answer.admitted:
                    held = bucket.held
                    held[0] += units[0]
                    held[1] += units[1]
                    held[2] += units[2]
                    self._holds[reservation_id] = _Hold(key=key, units=units)
                return answer
        return Reservation(
            id=reservation_id,
            key=hold.key,
            amount=charge_from_units(hold.units),
            admitted=True,
            used_fraction=used_fraction(caps, used),
            replayed=True,
        )

    def settle(self, reservation_id: str, actual: Charge) -> None:
        """Replace the hold by what was really used (may exceed it). Idempotent; no-op after
        release; unknown ids raise KeyError."""
        check_id(reservation_id)
        units = charge_units(actual, "actual")
        with self._lock:
            self._close(reservation_id, "settled", units)

    def release(self, reservation_id: str) -> None:
        """Drop a hold whose work did not happen. Idempotent; no-op after settle; unknown ids
        raise KeyError."""
        check_id(reservation_id)
        with self._lock:
            self._close(reservation_id, "released", (0, 0, 0))

    def _close(self, reservation_id: str, state: str, spent: Units) -> None:
        """End a held reservation as `state`, its hold replaced by `spent` (caller holds the lock).

        Settled or released ids are left alone; unknown ids raise KeyError.
        """
        hold = self._holds.get(reservation_id)
        if hold is None:
            raise unknown_reservation(reservation_id)
        if hold.state != "held":
            return
        bucket = self._buckets[hold.key]
        for dimension in range(3):
            bucket.held[dimension] -= hold.units[dimension]
            bucket.spent[dimension] += spent[dimension]
        hold.state = state

    def spent(self, key: BudgetKey) -> Charge:
        """Settled consumption of a bucket."""
        with self._lock:
            bucket = self._buckets.get(key)
            spent = (0, 0, 0) if bucket is None else bucket.spent
            units = (spent[0], spent[1], spent[2])
        return charge_from_units(units)

    def held(self, key: BudgetKey) -> Charge:
        """Reserved, not yet settled consumption of a bucket."""
        with self._lock:
            bucket = self._buckets.get(key)
            held = (0, 0, 0) if bucket is None else bucket.held
            units = (held[0], held[1], held[2])
        return charge_from_units(units)
