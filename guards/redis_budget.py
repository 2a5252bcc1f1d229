"""Budget ledger on Redis: one atomic Lua script per operation, shared by every process."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote, unquote

import redis

from guards.base import BudgetCaps, BudgetKey, Charge, Reservation
from guards.budget import (
    BudgetBackendError,
    Units,
    caps_from_units,
    caps_units,
    charge_from_units,
    charge_units,
    check_id,
    decide,
    unknown_reservation,
    used_fraction,
)
from guards.errors import GuardConfigError
from observability.endpoints import safe_url

__all__ = ["DEFAULT_RESERVATION_TTL_S", "RedisBudgetLedger"]

DEFAULT_RESERVATION_TTL_S = 7 * 24 * 3600
"""How long a reservation id is remembered after its last change (dedupes late resumes)."""

_BUCKET_FIELDS = (
    *("cap:tokens", "cap:steps", "cap:usd"),
    *("spent:tokens", "spent:steps", "spent:usd"),
    *("held:tokens", "held:steps", "held:usd"),
)

# The scripts touch the bucket a reservation names besides their KEYS, so the ledger needs a
# standalone (or single-shard) Redis. Reply codes: 0 refused, 1 admitted, 2 replayed.
_RESERVE = """
local function usage(bucket)
  local f = redis.call('HMGET', bucket, 'cap:tokens', 'cap:steps', 'cap:usd',
    'spent:tokens', 'spent:steps', 'spent:usd', 'held:tokens', 'held:steps', 'held:usd')
  local out = {}
  for i = 1, 3 do
    out[i] = tonumber(f[i]) or -1
    out[i + 3] = (tonumber(f[i + 3]) or 0) + (tonumber(f[i + 6]) or 0)
  end
  return out
end
local rec = redis.call('HMGET', KEYS[2], 'state', 'bucket', 'tokens', 'steps', 'usd')
if rec[1] == 'held' or rec[1] == 'settled' then
  local u = usage(rec[2])
  return {2, u[1], u[2], u[3], u[4], u[5], u[6], rec[2],
          tonumber(rec[3]), tonumber(rec[4]), tonumber(rec[5])}
end
local u = usage(KEYS[1])
for i = 1, 3 do
  if u[i] >= 0 and u[i + 3] + tonumber(ARGV[i]) > u[i] then
    return {0, u[1], u[2], u[3], u[4], u[5], u[6]}
  end
end
local names = {'held:tokens', 'held:steps', 'held:usd'}
for i = 1, 3 do
  if ARGV[i] ~= '0' then redis.call('HINCRBY', KEYS[1], names[i], ARGV[i]) end
end
redis.call('HSET', KEYS[2], 'state', 'held', 'bucket', KEYS[1],
           'tokens', ARGV[1], 'steps', ARGV[2], 'usd', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {1, u[1], u[2], u[3], u[4], u[5], u[6]}
"""

# Settle and release are one script: a release is a settle of nothing, ending `released`.
# ARGV: spent tokens, steps, micro-usd, the final state, the TTL in ms.
# Reply codes: 0 unknown id, 1 no-op (not held), 2 done.
_CLOSE = """
local rec = redis.call('HMGET', KEYS[1], 'state', 'bucket', 'tokens', 'steps', 'usd')
if not rec[1] then return 0 end
if rec[1] ~= 'held' then return 1 end
local dims = {'tokens', 'steps', 'usd'}
for i = 1, 3 do
  local held = tonumber(rec[i + 2])
  if held ~= 0 then redis.call('HINCRBY', rec[2], 'held:' .. dims[i], -held) end
  if ARGV[i] ~= '0' then redis.call('HINCRBY', rec[2], 'spent:' .. dims[i], ARGV[i]) end
end
redis.call('HSET', KEYS[1], 'state', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 2
"""

_REPLAYED = 2
_UNKNOWN = 0
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reaching_redis(
    method: Callable[Concatenate[RedisBudgetLedger, _P], _R],
) -> Callable[Concatenate[RedisBudgetLedger, _P], _R]:
    """Turn "cannot reach Redis" into a `BudgetBackendError` that says what to do."""

    @functools.wraps(method)
    def call(self: RedisBudgetLedger, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise BudgetBackendError(
                f"the budget ledger cannot reach Redis at {self.url} ({error}). Hint: start "
                "Redis there, or unset BASTION_REDIS_URL to use the in-process ledger."
            ) from error

    return call


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBudgetLedger:
    """The `BudgetLedger` on Redis, exact across processes; semantics as `InMemoryBudgetLedger`.

    Layout under `prefix`: one hash per bucket (`<prefix>:bucket:<tenant>/<workflow>/<env>`,
    parts URL-quoted, fields `cap:<dim>`, `spent:<dim>`, `held:<dim>` in tokens, steps and
    micro-dollars; a cap of -1 means none) and one hash per reservation (`<prefix>:res:<id>`,
    fields `state`, `bucket` and the amount), which expires `reservation_ttl_s` after its last
    change. Buckets never expire. A hold neither settled nor released within the TTL stays
    held in its bucket after its id is forgotten.

    Args:
        client_or_url: a `redis.Redis` client (used as is, left open) or a `redis://` URL
            (the ledger opens a client and `close()` closes it).
        prefix: namespace of every key the ledger writes.
        reservation_ttl_s: how long reservation ids are remembered, in seconds.
    """

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        *,
        prefix: str = "bastion:budget",
        reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S,
    ) -> None:
        if not prefix:
            raise GuardConfigError(
                "RedisBudgetLedger prefix must be non-empty. Hint: keep the default."
            )
        if not reservation_ttl_s > 0:
            raise GuardConfigError(
                f"RedisBudgetLedger reservation_ttl_s must be positive, got "
                f"{reservation_ttl_s!r}. Hint: it must outlive any resume (default 7 days)."
            )
        self._owns_client = isinstance(client_or_url, str)
        self._client = (
            redis.Redis.from_url(client_or_url) if isinstance(client_or_url, str) else client_or_url
        )
        self.url = safe_url(client_or_url)
        """Where the ledger lives (password hidden), as named in errors."""
        self._prefix = prefix
        self._ttl_ms = str(max(1, round(reservation_ttl_s * 1000)))
        self._bucket_keys: dict[BudgetKey, str] = {}
        self._reserve = self._client.register_script(_RESERVE)
        self._close_reservation = self._client.register_script(_CLOSE)

    def close(self) -> None:
        """Close the client if the ledger opened it from a URL."""
        if self._owns_client:
            self._client.close()

    def _bucket_key(self, key: BudgetKey) -> str:
        name = self._bucket_keys.get(key)
        if name is None:
            # Quoting keeps `/` inside a part from making two buckets share a name.
            parts = (quote(part, safe="*") for part in (key.tenant, key.workflow, key.environment))
            name = self._bucket_keys[key] = f"{self._prefix}:bucket:{'/'.join(parts)}"
        return name

    def _parse_bucket_key(self, name: str) -> BudgetKey:
        tenant, workflow, environment = name.rpartition(":bucket:")[2].split("/")
        return BudgetKey(
            tenant=unquote(tenant), workflow=unquote(workflow), environment=unquote(environment)
        )

    def _usage(self, key: BudgetKey) -> list[Any]:
        return self._client.hmget(self._bucket_key(key), _BUCKET_FIELDS)  # type: ignore[return-value]

    @_reaching_redis
    def set_caps(self, key: BudgetKey, caps: BudgetCaps) -> None:
        """Set (or replace) a bucket's caps. Spending so far is kept."""
        mapping = dict(zip(_BUCKET_FIELDS[:3], caps_units(caps), strict=True))
        self._client.hset(self._bucket_key(key), mapping=mapping)  # type: ignore[arg-type]

    @_reaching_redis
    def caps(self, key: BudgetKey) -> BudgetCaps | None:
        """A bucket's caps, or None if never set."""
        tokens, steps, usd = self._usage(key)[:3]
        if tokens is None:
            return None
        return caps_from_units((int(tokens), int(steps), int(usd)))

    @_reaching_redis
    def reserve(self, key: BudgetKey, reservation_id: str, amount: Charge) -> Reservation:
        """Hold `amount` if spent + held + amount stays within every cap; idempotent per id."""
        check_id(reservation_id)
        units = charge_units(amount)
        reply = self._reserve(
            keys=(self._bucket_key(key), f"{self._prefix}:res:{reservation_id}"),
            args=(*units, self._ttl_ms),
        )
        # A bucket without caps reads as all NO_CAP, which admits and measures like None.
        caps: Units = (reply[1], reply[2], reply[3])
        used: Units = (reply[4], reply[5], reply[6])
        if reply[0] != _REPLAYED:
            # Same snapshot, same integer rule as the script: the same answer, now with words.
            return decide(key, reservation_id, amount, units, caps, used)
        return Reservation(
            id=reservation_id,
            key=self._parse_bucket_key(_text(reply[7])),
            amount=charge_from_units((reply[8], reply[9], reply[10])),
            admitted=True,
            used_fraction=used_fraction(caps, used),
            replayed=True,
        )

    @_reaching_redis
    def settle(self, reservation_id: str, actual: Charge) -> None:
        """Replace the hold by what was really used (may exceed it). Idempotent; no-op after
        release; unknown ids raise KeyError."""
        check_id(reservation_id)
        units = charge_units(actual, "actual")
        key = f"{self._prefix}:res:{reservation_id}"
        if self._close_reservation(keys=(key,), args=(*units, "settled", self._ttl_ms)) == _UNKNOWN:
            raise unknown_reservation(reservation_id)

    @_reaching_redis
    def release(self, reservation_id: str) -> None:
        """Drop a hold whose work did not happen. Idempotent; no-op after settle; unknown ids
        raise KeyError."""
        check_id(reservation_id)
        key = f"{self._prefix}:res:{reservation_id}"
        if (
            self._close_reservation(keys=(key,), args=(0, 0, 0, "released", self._ttl_ms))
            == _UNKNOWN
        ):
            raise unknown_reservation(reservation_id)

    @_reaching_redis
    def spent(self, key: BudgetKey) -> Charge:
        """Settled consumption of a bucket."""
        return charge_from_units(_ints(self._usage(key)[3:6]))

    @_reaching_redis
    def held(self, key: BudgetKey) -> Charge:
        """Reserved, not yet settled consumption of a bucket."""
        return charge_from_units(_ints(self._usage(key)[6:9]))


def _ints(values: list[Any]) -> Units:
    return int(values[0] or 0), int(values[1] or 0), int(values[2] or 0)
