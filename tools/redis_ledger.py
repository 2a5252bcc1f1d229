"""The Redis effect ledger: one atomic Lua script per change, shared by every process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

import redis

from observability.endpoints import redis_client, redis_hint, safe_url
from tools.base import (
    Claim,
    Compensation,
    EffectIntent,
    EffectLedgerError,
    EffectOutcome,
    EffectRecord,
)
from tools.ledger import in_doubt_outcome, owner_is_dead, pending_record, shadow_record
from tools.sqlite_ledger import dump_json, record_fields, record_from_fields

__all__ = ["RedisEffectLedger"]

# Scripts name index keys they build from the prefix, so the ledger needs a standalone (or
# single-shard) Redis. KEYS: record, seq counter, then the all/run/thread/tenant indexes.
_UNINDEX = """
local function unindex(prefix, rec, member)
  local old = redis.call('HMGET', rec, 'run_id', 'thread_id', 'tenant')
  if not old[1] then return end
  redis.call('ZREM', prefix .. 'all', member)
  redis.call('ZREM', prefix .. 'run:' .. old[1], member)
  redis.call('ZREM', prefix .. 'thread:' .. old[2], member)
  redis.call('ZREM', prefix .. 'tenant:' .. old[3], member)
end
"""

# ARGV: owner, lease_until, now, a dead owner to take over from ('' if none), the key, then the
# intent's field/value pairs. Replies: {'acquired', seq} for a new record, else {kind, HGETALL}.
_CLAIM = """
local st = redis.call('HMGET', KEYS[1], 'status', 'owner', 'lease_until', 'attempts')
if not st[1] then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], 'seq', seq, 'status', 'pending', 'owner', ARGV[1],
             'lease_until', ARGV[2], 'attempts', 1, 'started_at', ARGV[3], unpack(ARGV, 6))
  for i = 3, 6 do redis.call('ZADD', KEYS[i], seq, ARGV[5]) end
  return {'acquired', seq}
end
if st[1] == 'done' or st[1] == 'in_doubt' then
  return {st[1], redis.call('HGETALL', KEYS[1])}
end
if st[1] == 'pending' and tonumber(st[3]) > tonumber(ARGV[3]) and st[2] ~= ARGV[4] then
  return {'busy', redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'status', 'pending', 'owner', ARGV[1], 'lease_until', ARGV[2],
           'attempts', tonumber(st[4]) + 1)
redis.call('HDEL', KEYS[1], 'outcome')
return {st[1] == 'pending' and 'recovered' or 'taken', redis.call('HGETALL', KEYS[1])}
"""

# ARGV: owner, new status, outcome JSON, finished_at. Compare-and-set on (pending, owner).
_SETTLE = """
local st = redis.call('HMGET', KEYS[1], 'status', 'owner')
if st[1] ~= 'pending' or st[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'outcome', ARGV[3], 'finished_at', ARGV[4])
return 1
"""

# ARGV: owner, key, prefix.
_RELEASE = f"""{_UNINDEX}
local st = redis.call('HMGET', KEYS[1], 'status', 'owner')
if st[1] ~= 'pending' or st[2] ~= ARGV[1] then return 0 end
unindex(ARGV[3], KEYS[1], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"""

# ARGV: key, prefix, then the record's field/value pairs. A new seq, as a new record.
_SHADOW = f"""{_UNINDEX}
unindex(ARGV[2], KEYS[1], ARGV[1])
local seq = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'seq', seq, unpack(ARGV, 3))
for i = 3, 6 do redis.call('ZADD', KEYS[i], seq, ARGV[1]) end
"""

# ARGV: compensation JSON, '1' if it succeeded.
_COMPENSATE = """
local st = redis.call('HMGET', KEYS[1], 'status', 'compensated')
if st[1] ~= 'done' or st[2] == '1' then return 0 end
redis.call('HSET', KEYS[1], 'compensation', ARGV[1], 'compensated', ARGV[2])
return 1
"""

# KEYS[1]: the index to walk, newest first. ARGV: prefix, limit, then field/value filters.
_EFFECTS = """
local out, start = {}, 0
while #out < tonumber(ARGV[2]) do
  local batch = redis.call('ZREVRANGE', KEYS[1], start, start + 99)
  if #batch == 0 then break end
  start = start + 100
  for _, member in ipairs(batch) do
    local rec, fits = ARGV[1] .. 'rec:' .. member, true
    for i = 3, #ARGV, 2 do
      if redis.call('HGET', rec, ARGV[i]) ~= ARGV[i + 1] then fits = false end
    end
    if fits and #out < tonumber(ARGV[2]) then
      local found = redis.call('HGETALL', rec)
      if #found > 0 then out[#out + 1] = found end
    end
  end
end
return out
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisEffectLedger:
    """The `EffectLedger` on Redis, atomic across processes and hosts; semantics as
    `InMemoryEffectLedger` (the conformance suite runs both). Each call is one round trip.

    Layout under `prefix`: a hash per key (`rec:<key>`, the fields of `record_fields` plus
    `seq` and `compensated`), the `seq` counter, and sorted sets scored by seq (`all`,
    `run:<id>`, `thread:<id>`, `tenant:<id>`). Records never expire.

    Args:
        url_or_client: a `redis://` URL (the ledger opens a client; `close()` closes it) or a
            `redis.Redis` client (used as is, left open).
        prefix: namespace of every key the ledger writes.
        timeout_s: socket timeout of a client opened from a URL.
    """

    def __init__(
        self,
        url_or_client: redis.Redis | str,
        *,
        prefix: str = "bastion:effects:",
        timeout_s: float = 5.0,
    ) -> None:
        self._owns = isinstance(url_or_client, str)
        self.url = safe_url(url_or_client)
        """Where the ledger lives (password hidden), as named in errors."""
        self._client = redis_client(url_or_client, timeout_s)
        self._prefix = prefix
        scripts = (_CLAIM, _SETTLE, _RELEASE, _SHADOW, _COMPENSATE, _EFFECTS)
        registered = [self._client.register_script(script) for script in scripts]
        self._claim, self._settle, self._release, self._shadow = registered[:4]
        self._compensate, self._effects = registered[4:]

    def claim(self, intent: EffectIntent, *, owner: str, lease_s: float, now: float) -> Claim:
        """See `EffectLedger.claim`. A live owner's lease is judged in the script; an owner
        whose process is provably dead is judged here, then taken over by compare-and-set."""
        fresh = pending_record(intent, owner=owner, lease_s=lease_s, now=now)
        fields = record_fields(fresh)
        pairs = [x for f in ("key", *_INTENT) for x in (f, fields[f])]
        keys = self._keys(intent)
        dead = ""
        with self._backend("claim an effect"):
            for _ in range(8):  # each retry means another worker moved the record on
                args = (owner, repr(now + lease_s), repr(now), dead, intent.key, *pairs)
                reply = self._claim(keys, args)
                kind = _text(reply[0])
                if kind == "acquired":
                    return Claim(kind="acquired", record=replace(fresh, seq=int(reply[1])))
                record = self._record(reply[1])
                if kind != "busy" or record.owner == dead or not owner_is_dead(record.owner):
                    break
                dead = record.owner  # provably dead: take over if it still holds the claim
        if kind in ("recovered", "taken"):
            return Claim(kind="acquired", record=record, recovered=kind == "recovered")
        return Claim(kind=kind, record=record)  # type: ignore[arg-type]

    def finish(self, key: str, *, owner: str, outcome: EffectOutcome, now: float) -> bool:
        """See `EffectLedger.finish`."""
        return self._set_status(key, owner, "done", outcome, now)

    def mark_in_doubt(self, key: str, *, owner: str, detail: str, now: float) -> bool:
        """See `EffectLedger.mark_in_doubt`."""
        return self._set_status(key, owner, "in_doubt", in_doubt_outcome(detail), now)

    def _set_status(
        self, key: str, owner: str, status: str, outcome: EffectOutcome, now: float
    ) -> bool:
        args = (owner, status, dump_json(asdict(outcome)), repr(now))
        with self._backend(f"record an effect as {status}"):
            return bool(self._settle((self._rec(key),), args))

    def release(self, key: str, *, owner: str) -> bool:
        """See `EffectLedger.release`."""
        with self._backend("release an effect claim"):
            return bool(self._release((self._rec(key),), (owner, key, self._prefix)))

    def record_shadow(self, intent: EffectIntent, outcome: EffectOutcome, *, now: float) -> None:
        """See `EffectLedger.record_shadow`."""
        record = shadow_record(intent, outcome, now=now)
        fields = {k: v for k, v in record_fields(record).items() if v is not None}
        pairs = [_field(x) for item in fields.items() for x in item]
        with self._backend("record a shadow effect"):
            self._shadow(self._keys(intent), (intent.key, self._prefix, *pairs))

    def get(self, key: str) -> EffectRecord | None:
        """See `EffectLedger.get`."""
        with self._backend("read an effect"):
            reply = self._client.hgetall(self._rec(key))
            return self._record(reply) if reply else None  # type: ignore[arg-type]

    def effects(
        self,
        *,
        run_id: str | None = None,
        thread_id: str | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> list[EffectRecord]:
        """See `EffectLedger.effects`. Walks the narrowest given index, newest first."""
        if limit <= 0:
            return []
        filters = {"run": run_id, "thread": thread_id, "tenant": tenant}
        given = [(name, value) for name, value in filters.items() if value is not None]
        index = f"{self._prefix}{given[0][0]}:{given[0][1]}" if given else f"{self._prefix}all"
        checks = [x for name, value in given[1:] for x in (_INDEXED[name], value)]
        with self._backend("list effects"):
            replies = self._effects((index,), (self._prefix, limit, *checks))
            return [self._record(reply) for reply in reversed(replies)]

    def compensate(self, key: str, compensation: Compensation) -> bool:
        """See `EffectLedger.compensate`."""
        args = (dump_json(asdict(compensation)), "1" if compensation.ok else "0")
        with self._backend("record a compensation"):
            return bool(self._compensate((self._rec(key),), args))

    def close(self) -> None:
        """Close the client if the ledger opened it from a URL."""
        if self._owns:
            self._client.close()

    def _rec(self, key: str) -> str:
        return f"{self._prefix}rec:{key}"

    def _keys(self, intent: EffectIntent) -> tuple[str, ...]:
        """The record, the seq counter and the four indexes, as the scripts take them."""
        p = self._prefix
        indexes = (f"{p}{name}:{getattr(intent, field)}" for name, field in _INDEXED.items())
        return (self._rec(intent.key), f"{p}seq", f"{p}all", *indexes)

    def _record(self, flat: list[bytes] | dict[bytes, bytes]) -> EffectRecord:
        pairs = flat.items() if isinstance(flat, dict) else zip(flat[::2], flat[1::2], strict=True)
        fields: dict[str, str] = {}
        try:
            fields.update((_text(k), _text(v)) for k, v in pairs)
            return record_from_fields(fields)
        except (KeyError, TypeError, ValueError) as error:
            raise EffectLedgerError(
                f"effect ledger at {self.url}: record `{fields.get('key')}` is unreadable "
                f"({error!r}). Hint: another program wrote under prefix {self._prefix!r}; "
                "give the ledger its own prefix."
            ) from error

    @contextmanager
    def _backend(self, action: str) -> Iterator[None]:
        """Turn any Redis failure into an `EffectLedgerError` with a hint."""
        try:
            yield
        except redis.exceptions.RedisError as error:
            raise EffectLedgerError(
                f"effect ledger at {self.url} failed: could not {action} "
                f"({type(error).__name__}: {error}). No side effect runs until it works. "
                f"Hint: {redis_hint(error)}."
            ) from error


_INDEXED = {"run": "run_id", "thread": "thread_id", "tenant": "tenant"}
_INTENT = ("tool", "tenant", "thread_id", "run_id", "agent", "side_effect", "args")


def _field(value: Any) -> str | int:
    return repr(value) if isinstance(value, float) else value  # repr: exact round trip
