"""Redis audit log: one hash chain in a Redis Stream, extended by compare-and-set of its head."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis

from observability.base import TraceBackendError
from observability.chain import GENESIS, VerifyReport, canonical, check_entry, seal, verify_chain
from observability.endpoints import redis_client, redis_hint, safe_url
from observability.events import AuditEntry, AuditHead, AuditRecord
from observability.sqlite_audit import check_key, kept_head_problems

__all__ = ["MAX_ATTEMPTS", "RedisAuditLog"]

MAX_ATTEMPTS = 100
"""Times one `append` may lose the head to other appenders before it gives up."""

_CHUNK = 1000
"""Stream entries read per call."""

# KEYS: stream, head. ARGV: the head the batch was sealed after (seq, hash), the new head
# (seq, hash), then one JSON record per entry. Appends only if the head is still the one the
# client read; otherwise returns the current head so the client can re-seal at once. Ids are
# `<seq>-1`; only the first XADD can be refused (ids below the stream's top), before any write.
_APPEND = """
local head = redis.call('HMGET', KEYS[2], 'seq', 'hash')
local seq, hash = head[1] or '0', head[2] or ''
if seq ~= ARGV[1] or hash ~= ARGV[2] then return {0, seq, hash} end
for i = 5, #ARGV do
  redis.call('XADD', KEYS[1], string.format('%d-1', tonumber(seq) + i - 4), 'r', ARGV[i])
end
redis.call('HSET', KEYS[2], 'seq', ARGV[3], 'hash', ARGV[4])
return {1}
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisAuditLog:
    """`AuditLog` on Redis, one chain across processes and hosts; semantics as
    `InMemoryAuditLog` (the conformance suite runs both).

    Layout under `prefix`: `log` (a Stream; entry `<seq>-1` holds field `r`, the record as
    canonical JSON, so Redis itself keeps the order and XRANGE pages by seq) and `head` (a
    hash: `seq`, `hash`). The client seals a batch after the head it read; a script appends
    it and moves the head only if the head is unchanged, else the client re-seals after the
    new head (at most `MAX_ATTEMPTS` times).

    Args:
        url_or_client: a `redis://` URL (the log opens a client; `close()` closes it) or a
            `redis.Redis` client (used as is, left open; it may decode responses).
        key: HMAC key of the chain (None: plain SHA-256); every handle needs the same.
        prefix: namespace of the log's two keys.
        timeout_s: socket timeout of a client opened from a URL.
    """

    def __init__(
        self,
        url_or_client: redis.Redis | str,
        *,
        key: bytes | None = None,
        prefix: str = "bastion:audit",
        timeout_s: float = 5.0,
    ) -> None:
        self._key = check_key(key)
        self._owns = isinstance(url_or_client, str)
        self.url = safe_url(url_or_client)
        """Where the log lives (password hidden), as named in errors."""
        self._client = redis_client(url_or_client, timeout_s)
        self._log, self._head = f"{prefix}:log", f"{prefix}:head"
        self._append = self._client.register_script(_APPEND)

    def append(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Seal entries after the head, all or none (see `AuditLog.append`).

        Raises:
            AuditConfigError: an entry is malformed (nothing is appended).
            TraceBackendError: Redis failed, or other appenders won the head `MAX_ATTEMPTS`
                times in a row (nothing is appended).
        """
        clean = [check_entry(entry) for entry in entries]
        if not clean:
            return []
        with self._backend("append to"):
            head = self._read_head()
            seq, prev = (head["seq"], head["hash"]) if head else (0, "")  # "": no head yet
            for attempt in range(1, MAX_ATTEMPTS + 1):
                sealed = _seal_after(clean, seq, prev or GENESIS, self._key)
                args: list[Any] = [seq, prev, seq + len(sealed), sealed[-1]["hash"]]
                args += [canonical(record) for record in sealed]
                reply = self._append((self._log, self._head), args)
                if int(reply[0]) == 1:
                    return sealed
                seq, prev = int(reply[1]), _text(reply[2])
                # Lost to another appender: back off a little, growing, so a crowd spreads out.
                time.sleep(random.uniform(0, 0.0005 * min(attempt, 20)))
        raise TraceBackendError(
            f"audit log at {self.url} ({self._log}): an append of {len(clean)} entries lost the "
            f"head to other appenders {MAX_ATTEMPTS} times in a row; nothing was appended. "
            "Hint: too many processes append at once; send entries through one Tracer per "
            "process, which batches them.",
            url=self.url,
        )

    def records(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        tenant: str | None = None,
        kind: str | None = None,
        run_id: str | None = None,
    ) -> list[AuditRecord]:
        """Records with `seq > after`, in order, filtered (`*` records match every tenant).

        A Stream has no secondary index: filters are applied while reading from `after` on.
        """
        chosen: list[AuditRecord] = []
        if limit <= 0:
            return chosen
        with self._backend("read the records of"):
            for record in self._scan(f"{max(after, 0) + 1}-0", "+"):
                if (
                    (tenant is None or record["tenant"] in (tenant, "*"))
                    and (kind is None or record["kind"] == kind)
                    and (run_id is None or record["run_id"] == run_id)
                ):
                    chosen.append(record)
                    if len(chosen) >= limit:
                        break
        return chosen

    def head(self) -> AuditHead | None:
        """The kept head."""
        with self._backend("read the head of"):
            return self._read_head()

    def verify(self) -> VerifyReport:
        """Check every record up to the kept head, and that nothing follows it."""
        with self._backend("verify"):
            pipe = self._client.pipeline(transaction=True)  # the head and the top agree
            pipe.hmget(self._head, ["seq", "hash"])
            pipe.xrevrange(self._log, count=1)
            (seq, hash_), top = pipe.execute()
            head = None if seq is None else AuditHead(seq=int(seq), hash=_text(hash_ or ""))
            last = _seq(top[0][0]) if top else 0
            # Read up to this head only: later appends are not checked against it. Entries
            # after it in the same snapshot were written around the log (see `last`).
            upto = "+" if head is None else f"{head['seq']}-1"
            records = list(self._scan("-", upto))
        report = verify_chain(records, head=head, key=self._key)
        extra = kept_head_problems(head, last)
        if not extra:
            return report
        return VerifyReport(records=report.records, head=head, problems=report.problems + extra)

    def close(self) -> None:
        """Close the client if the log opened it from a URL."""
        if self._owns:
            self._client.close()

    def _read_head(self) -> AuditHead | None:
        seq, hash_ = self._client.hmget(self._head, ["seq", "hash"])
        return None if seq is None else AuditHead(seq=int(seq), hash=_text(hash_ or ""))

    def _scan(self, start: str, end: str) -> Iterator[AuditRecord]:
        """Stream entries from `start` to `end` (inclusive), `_CHUNK` per call."""
        while True:
            entries: list[Any] = self._client.xrange(self._log, start, end, count=_CHUNK)  # type: ignore[assignment]
            yield from (_record(entry_id, fields) for entry_id, fields in entries)
            if len(entries) < _CHUNK:
                return
            start = f"({_text(entries[-1][0])}"

    @contextmanager
    def _backend(self, action: str) -> Iterator[None]:
        """Turn any Redis failure into a `TraceBackendError` naming the server and a fix."""
        try:
            yield
        except redis.exceptions.RedisError as error:
            outcome = " Nothing was appended." if action == "append to" else ""
            raise TraceBackendError(
                f"audit log at {self.url} failed: could not {action} {self._log} "
                f"({type(error).__name__}: {error}).{outcome} Hint: {redis_hint(error)}.",
                url=self.url,
            ) from error


def _seal_after(
    entries: Sequence[AuditEntry], seq: int, prev: str, key: bytes | None
) -> list[AuditRecord]:
    sealed: list[AuditRecord] = []
    for entry in entries:
        seq += 1
        sealed.append(seal(entry, seq=seq, prev=prev, key=key))
        prev = sealed[-1]["hash"]
    return sealed


def _seq(entry_id: bytes | str) -> int:
    return int(_text(entry_id).split("-", 1)[0])


def _record(entry_id: bytes | str, fields: dict[Any, Any]) -> AuditRecord:
    raw: Any = fields.get(b"r", fields.get("r"))
    try:
        record = json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError("not an object")
    except (TypeError, ValueError):  # a forged entry: verify reports it as altered
        record = {"kind": "", "ts": 0, "tenant": "", "actor": "", "run_id": "", "subject": ""}
        record.update(detail={"unreadable": _text(raw or b"")}, prev="", hash="")
    # The position is the entry id, which Redis orders; a `seq` inside is checked by the hash.
    record["seq"] = _seq(entry_id)
    return record  # type: ignore[return-value]
