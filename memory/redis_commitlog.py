"""The Redis commit log: each tenant's commit order in a list, appended by one atomic script."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from memory.base import LogEntry
from memory.commitlog import MemoryBackendError, check_seq
from observability.endpoints import redis_client, redis_hint, safe_url

__all__ = ["RedisCommitLog"]

# KEYS: log list, ids hash, tenants set. ARGV: seq, commit id, tenant. The length check and the
# push run in one script, so of two writers racing for a position exactly one gets 1.
_APPEND = """
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) - 1 then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
"""

# KEYS: projected counter. ARGV: seq. Only ever raised, so a slow marker cannot move it back.
_MARK = """
local seq = tonumber(ARGV[1])
if seq > tonumber(redis.call('GET', KEYS[1]) or '0') then redis.call('SET', KEYS[1], seq) end
"""

# KEYS: lease. ARGV: owner, lease ms. Taken when free or already ours; it expires on its own.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lease. ARGV: owner. Deleted only by its holder.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisCommitLog:
    """`CommitLog` on Redis, atomic across processes and hosts; semantics as
    `InMemoryCommitLog` (the conformance suite runs both). Each call is one round trip.

    Layout under `prefix`, per tenant: `log:<tenant>` (list of commit ids, position = index
    + 1), `ids:<tenant>` (hash commit id -> position), `projected:<tenant>` (a number),
    `projector:<tenant>` (the projection lease, expiring); and `tenants` (set of tenants
    with a commit).

    Args:
        url_or_client: a `redis://` URL (the log opens a client; `close()` closes it) or a
            `redis.Redis` client (used as is, left open).
        prefix: namespace of every key the log writes.
        timeout_s: socket timeout of a client opened from a URL.
    """

    def __init__(
        self,
        url_or_client: redis.Redis | str,
        *,
        prefix: str = "bastion:memory",
        timeout_s: float = 5.0,
    ) -> None:
        self._owns = isinstance(url_or_client, str)
        self.url = safe_url(url_or_client)
        """Where the log lives (password hidden), as named in errors."""
        self._client = redis_client(url_or_client, timeout_s)
        self._prefix = prefix
        self._append = self._client.register_script(_APPEND)
        self._mark = self._client.register_script(_MARK)
        self._claim = self._client.register_script(_CLAIM)
        self._release = self._client.register_script(_RELEASE)

    def head(self, tenant: str) -> LogEntry | None:
        """See `CommitLog.head`. Length and last id come from one MULTI, so they agree."""
        with self._backend("read the head of", tenant):
            pipe = self._client.pipeline(transaction=True)
            pipe.llen(self._key("log", tenant))
            pipe.lindex(self._key("log", tenant), -1)
            length, last = pipe.execute()
        return LogEntry(seq=int(length), commit_id=_text(last)) if length else None

    def append(self, tenant: str, seq: int, commit_id: str) -> bool:
        """See `CommitLog.append`. An id already in the tenant's log is refused too."""
        check_seq(seq)
        keys = (self._key("log", tenant), self._key("ids", tenant), f"{self._prefix}:tenants")
        with self._backend("append a commit to", tenant):
            return bool(self._append(keys, (seq, commit_id, tenant)))

    def entries(self, tenant: str, *, after: int = 0, upto: int | None = None) -> list[LogEntry]:
        """See `CommitLog.entries`."""
        start = max(after, 0)
        if upto is not None and upto <= start:
            return []  # LRANGE would read a stop <= 0 as counted from the end
        stop = -1 if upto is None else upto - 1
        with self._backend("read entries of", tenant):
            ids = self._client.lrange(self._key("log", tenant), start, stop)
        return [LogEntry(seq=start + i + 1, commit_id=_text(c)) for i, c in enumerate(ids)]

    def locate(self, tenant: str, commit_id: str) -> int | None:
        """See `CommitLog.locate`."""
        with self._backend("locate a commit in", tenant):
            seq = self._client.hget(self._key("ids", tenant), commit_id)
        return None if seq is None else int(seq)

    def projected(self, tenant: str) -> int:
        """See `CommitLog.projected`."""
        with self._backend("read the projected position of", tenant):
            seq = self._client.get(self._key("projected", tenant))
        return 0 if seq is None else int(seq)

    def mark_projected(self, tenant: str, seq: int) -> None:
        """See `CommitLog.mark_projected`."""
        with self._backend("mark the projected position of", tenant):
            self._mark((self._key("projected", tenant),), (int(seq),))

    def claim_projection(self, tenant: str, owner: str, lease_s: float) -> bool:
        """See `CommitLog.claim_projection`."""
        with self._backend("claim the projection lease of", tenant):
            lease_ms = max(int(lease_s * 1000), 1)
            return bool(self._claim((self._key("projector", tenant),), (owner, lease_ms)))

    def release_projection(self, tenant: str, owner: str) -> None:
        """See `CommitLog.release_projection`."""
        with self._backend("release the projection lease of", tenant):
            self._release((self._key("projector", tenant),), (owner,))

    def tenants(self) -> list[str]:
        """See `CommitLog.tenants`."""
        with self._backend("list the tenants of", None):
            members = self._client.smembers(f"{self._prefix}:tenants")
        return sorted(_text(member) for member in members)

    def close(self) -> None:
        """Close the client if the log opened it from a URL."""
        if self._owns:
            self._client.close()

    def _key(self, kind: str, tenant: str) -> str:
        return f"{self._prefix}:{kind}:{tenant}"

    @contextmanager
    def _backend(self, action: str, tenant: str | None) -> Iterator[None]:
        """Turn any Redis failure into a `MemoryBackendError` naming the server and a fix."""
        whose = f"tenant `{tenant}`'s log" if tenant is not None else "the log"
        try:
            yield
        except redis.exceptions.RedisError as error:
            raise MemoryBackendError(
                f"memory commit log at {self.url} failed: could not {action} {whose} "
                f"({type(error).__name__}: {error}). No memory write is accepted until it "
                f"works. Hint: {redis_hint(error)}."
            ) from error
