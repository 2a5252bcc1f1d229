"""The Redis trace sink: events in Redis Streams, run summaries folded atomically across writers."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis

from observability.base import TraceBackendError
from observability.endpoints import redis_client, redis_hint, safe_url
from observability.events import RunSummary, TraceEvent
from observability.runs import fold_run

__all__ = ["MAX_CONFLICTS", "RedisTraceSink"]

MAX_CONFLICTS = 100
"""Times one `write` may lose the race for its runs' summaries before it gives up (each loss
means another writer's batch of the same runs went in, so writers as a whole progress)."""

_WRITE = """
local maxlen, ttl = ARGV[1], ARGV[2]
local nruns, nevents = tonumber(ARGV[3]), tonumber(ARGV[4])
for r = 0, nruns - 1 do
  local a = 5 + r * 4
  if (redis.call('HGET', KEYS[2], ARGV[a]) or '') ~= ARGV[a + 1] then return -1 end
end
local added = 0
for i = 0, nevents - 1 do
  local k, a = 4 + nruns + i * 3, 5 + nruns * 4 + i * 2
  if redis.call('SET', KEYS[k], '1', 'NX', 'EX', ttl) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'event', ARGV[a])
    redis.call('XADD', KEYS[k + 2], 'MAXLEN', '~', maxlen, '*', 'event', ARGV[a])
    if ARGV[a + 1] == '1' then
      redis.call('RPUSH', KEYS[k + 1], ARGV[a])
      redis.call('LTRIM', KEYS[k + 1], -tonumber(maxlen), -1)
    end
    added = added + 1
  end
end
for r = 0, nruns - 1 do
  local a = 5 + r * 4
  redis.call('HSET', KEYS[2], ARGV[a], ARGV[a + 2])
  redis.call('ZADD', KEYS[3], ARGV[a + 3], ARGV[a])
  redis.call('ZADD', KEYS[3 + r + 1], ARGV[a + 3], ARGV[a])
end
return added
"""
"""Store a batch if its runs' summaries are still those the client read, else return -1.

Why this shape: the fold is `observability.runs.fold_run`, the one every sink uses; copying it
into Lua would make two folds to keep in step. So the client reads the summaries and which
events are already stored (one pipelined round trip), folds in Python, and hands the script
the summaries it read and the folded ones; the script compares and sets. If another process
folded into one of these runs in between, nothing is written and the client reads and folds
again. WATCH + MULTI would do the same in three round trips and, watching the shared summary
hash, would abort on a change to any run, not only this batch's.

KEYS: events stream, runs hash, runs by update (zset), then one per-tenant runs zset per run,
then per event: its `seen` key, its run's list, its tenant's stream.
ARGV: maxlen, seen TTL, run count, event count, then per run: run_id, summary read ('' if
none), folded summary, updated_at; then per event: its JSON, '1' if it has a run.
A `seen` key already set (a retried event another writer stored meanwhile) skips the event;
for an event with a run that cannot happen after the compare (storing it changed the run)."""


class RedisTraceSink:
    """A `TraceSink` in Redis, shared by every process that talks to one Redis; thread-safe.

    Layout under `prefix`:

    - `<prefix>:events`: a stream of every event (`XADD ... MAXLEN ~ maxlen`), for tailing
      (`XREAD`) and export; field `event` holds the JSON.
    - `<prefix>:tenant:<tenant>`: the same, per tenant (for `events(tenant=)`).
    - `<prefix>:run:<run_id>`: a list of the run's events, in storage order (`events(run_id=)`).
    - `<prefix>:runs`: a hash run_id -> summary JSON; `<prefix>:runs:updated` and
      `<prefix>:runs:tenant:<tenant>`: sorted sets of run ids by `updated_at` (`runs()`).
    - `<prefix>:seen:<event_id>`: set when an event is stored, for `dedupe_ttl_s`, so a batch
      retried within that time is stored (and folded) once.

    Streams and lists keep about the newest `maxlen` entries each; summaries are kept.
    Values that are not JSON are stored as their `str()`. Point every process at the same
    primary: a replica may lag.
    """

    def __init__(
        self,
        url_or_client: redis.Redis | str,
        *,
        prefix: str = "bastion:trace",
        maxlen: int = 100_000,
        timeout_s: float = 5.0,
        dedupe_ttl_s: int = 86_400,
    ) -> None:
        """Connect (lazily) to Redis.

        Args:
            url_or_client: a `redis://` URL (the sink opens a client; `close()` closes it) or
                a `redis.Redis` client (used as is, left open; it may decode responses).
            prefix: namespace of every key, so several deployments can share a Redis.
            maxlen: events kept (about) in each stream and run list.
            timeout_s: connect and read timeout of a client opened from a URL.
            dedupe_ttl_s: how long a stored event id is remembered against retries.

        Raises:
            ValueError: an empty prefix or a `maxlen` or `dedupe_ttl_s` below 1.
        """
        if not prefix or maxlen < 1 or dedupe_ttl_s < 1:
            raise ValueError(
                "RedisTraceSink needs a non-empty prefix, maxlen >= 1 and dedupe_ttl_s >= 1; "
                f"got {prefix!r}, {maxlen!r}, {dedupe_ttl_s!r}"
            )
        self._owns = isinstance(url_or_client, str)
        self.url = safe_url(url_or_client)
        """Where the traces live (password hidden), as named in errors."""
        self._client = redis_client(url_or_client, timeout_s)
        self._prefix, self._maxlen, self._ttl = prefix, maxlen, dedupe_ttl_s
        self._events_key, self._runs_key = f"{prefix}:events", f"{prefix}:runs"
        self._updated_key = f"{prefix}:runs:updated"
        self._write = self._client.register_script(_WRITE)

    def write(self, events: Sequence[TraceEvent]) -> None:
        """Store events (new `event_id`s only) and fold them into their runs, atomically.

        Raises:
            TraceBackendError: Redis failed, or the batch lost `MAX_CONFLICTS` races in a row;
                nothing of the batch is stored.
        """
        unique: dict[str, TraceEvent] = {}
        for event in events:  # a batch that holds an event twice stores it once
            unique.setdefault(event["event_id"], event)
        batch = list(unique.values())
        if not batch:
            return
        encoded = {e["event_id"]: json.dumps(e, default=str) for e in batch}
        run_ids = list(dict.fromkeys(e["run_id"] for e in batch if e["run_id"]))
        with self._backend("write trace events"):
            for _ in range(MAX_CONFLICTS):
                read, seen = self._read_for_write(run_ids, batch)
                fresh = [e for e, stored in zip(batch, seen, strict=True) if stored is None]
                if not fresh:
                    return
                keys, args = self._script_input(read, fresh, encoded)
                if int(self._write(keys, args)) >= 0:
                    return
        raise TraceBackendError(
            f"trace sink at {self.url} could not write {len(batch)} events: their runs' "
            f"summaries changed under it {MAX_CONFLICTS} times in a row. Hint: many processes "
            "are writing the same runs; retry the batch (the tracer does).",
            url=self.url,
        )

    def events(
        self, *, run_id: str | None = None, tenant: str | None = None, limit: int = 10_000
    ) -> list[TraceEvent]:
        """Stored events of one run and/or one tenant, oldest first (the newest `limit`)."""
        if limit <= 0:
            return []
        with self._backend("read trace events"):
            if run_id is not None:
                raws = self._client.lrange(f"{self._prefix}:run:{run_id}", -limit, -1)
            else:
                key = self._events_key if tenant is None else f"{self._prefix}:tenant:{tenant}"
                entries: Any = self._client.xrevrange(key, count=limit)
                raws = [_field(fields) for _, fields in reversed(entries)]
        chosen = [json.loads(raw) for raw in raws]
        return [e for e in chosen if tenant is None or e["tenant"] == tenant]

    def runs(self, *, tenant: str | None = None, limit: int = 100) -> list[RunSummary]:
        """Run summaries, most recently updated first (ties in any order)."""
        if limit <= 0:
            return []
        key = self._updated_key if tenant is None else f"{self._prefix}:runs:tenant:{tenant}"
        with self._backend("read run summaries"):
            run_ids: Any = self._client.zrevrange(key, 0, limit - 1)
            raws = self._client.hmget(self._runs_key, run_ids) if run_ids else []
        return [json.loads(raw) for raw in raws if raw is not None]

    def close(self) -> None:
        """Close the client if the sink opened it from a URL."""
        if self._owns:
            self._client.close()

    def __enter__(self) -> RedisTraceSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read_for_write(
        self, run_ids: list[str], batch: list[TraceEvent]
    ) -> tuple[dict[str, Any], list[Any]]:
        """The stored summary of each run (raw, or None) and whether each event's id is
        already stored (None if not): one pipelined round trip, no transaction."""
        pipe = self._client.pipeline(transaction=False)
        pipe.mget([self._seen_key(e["event_id"]) for e in batch])
        if run_ids:  # HMGET needs at least one field
            pipe.hmget(self._runs_key, run_ids)
        seen, *summaries = pipe.execute()
        return dict(zip(run_ids, summaries[0] if run_ids else [], strict=True)), seen

    def _script_input(
        self, read: dict[str, Any], fresh: list[TraceEvent], encoded: dict[str, str]
    ) -> tuple[list[str], list[Any]]:
        """`_WRITE`'s keys and arguments for storing `fresh`, folded into the `read` runs."""
        folded: dict[str, RunSummary] = {}
        for event in fresh:
            if run_id := event["run_id"]:
                raw = read[run_id]
                before = folded.get(run_id) or (json.loads(raw) if raw is not None else None)
                folded[run_id] = fold_run(before, event)
        keys = [self._events_key, self._runs_key, self._updated_key]
        keys += [f"{self._prefix}:runs:tenant:{s['tenant']}" for s in folded.values()]
        args: list[Any] = [self._maxlen, self._ttl, len(folded), len(fresh)]
        for run_id, summary in folded.items():
            raw = read[run_id]
            args += [run_id, "" if raw is None else raw, json.dumps(summary)]
            args.append(repr(summary["updated_at"]))
        for event in fresh:
            keys += [
                self._seen_key(event["event_id"]),
                f"{self._prefix}:run:{event['run_id']}",
                f"{self._prefix}:tenant:{event['tenant']}",
            ]
            args += [encoded[event["event_id"]], "1" if event["run_id"] else "0"]
        return keys, args

    def _seen_key(self, event_id: str) -> str:
        return f"{self._prefix}:seen:{event_id}"

    @contextmanager
    def _backend(self, action: str) -> Iterator[None]:
        """Turn any Redis failure into a `TraceBackendError` that names the URL and the fix."""
        try:
            yield
        except redis.exceptions.RedisError as error:
            raise TraceBackendError(
                f"trace sink at {self.url} failed: could not {action} "
                f"({type(error).__name__}: {error}). Hint: {redis_hint(error)}.",
                url=self.url,
            ) from error


def _field(fields: dict[Any, Any]) -> Any:
    """The `event` field of a stream entry, whether the client decodes responses or not."""
    return fields[b"event"] if b"event" in fields else fields["event"]
