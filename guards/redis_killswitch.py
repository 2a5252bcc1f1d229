"""The Redis kill switch: a key per kill, checked in one MGET; pub/sub events; capped history."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.client import PubSub, PubSubWorkerThread
from redis.retry import Retry

from guards.base import KillRecord, KillScope, KillTarget
from guards.errors import GuardConfigError
from guards.killswitch import (
    DEFAULT_HISTORY_SIZE,
    KillEvent,
    KillSwitchBackendError,
    KillWatcher,
    broadest_first,
    check_history_limit,
    check_kill_args,
    kill_event,
    target_keys,
)
from observability.endpoints import safe_url

__all__ = ["RedisKillSwitch"]

logger = logging.getLogger(__name__)

_APPLY = """
local old = redis.call('GET', KEYS[1])
if ARGV[1] == 'kill' then
  if old then return old end
  redis.call('SET', KEYS[1], ARGV[2])
else
  if not old then return false end
  redis.call('DEL', KEYS[1])
end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('PUBLISH', ARGV[5], ARGV[3])
return old
"""
"""Kill or lift atomically, in one round trip: change the key only if that changes the state
(a second kill keeps the first record), and only then append the capped history and publish.
A script rather than WATCH + MULTI: under 20 dispatching threads each extra round trip costs a
GIL hand-off, and WATCH needs a retry loop. Returns the record that was there before, or nil."""

WATCH_POLL_S = 0.1
"""How often a watcher thread looks at its stop flag; bounds how long `stop()` waits."""


class RedisKillSwitch:
    """A kill switch shared by every process that talks to one Redis; thread-safe.

    Layout: each kill is a JSON string at `<prefix>:scope:<scope>` (e.g. `bastion:kill:scope:
    tenant:acme`); `<prefix>:history` is a capped list of kill and lift events, newest first;
    every event is also published on `channel` for watchers.

    Semantics are those of `InMemoryKillSwitch` (the conformance suite runs both):

    - `kill` returns after Redis has applied the SET, so every later `check` (one MGET, no
      local cache) sees it. Point every process at the same primary: a replica may lag.
    - Killing a killed scope keeps and returns the first record; nothing is recorded.
    - Lifting does not resume anything; lifting a scope that is not killed returns None.
    - Any failure to reach Redis raises `KillSwitchBackendError`, which guards treat as killed.
    """

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        *,
        prefix: str = "bastion:kill",
        channel: str | None = None,
        history_size: int = DEFAULT_HISTORY_SIZE,
        timeout_s: float = 2.0,
    ) -> None:
        """Connect (lazily) to Redis.

        Args:
            client_or_url: a `redis.Redis` client (not closed by `close()`), or a
                `redis://host:port/db` URL (this switch then owns its client).
            prefix: namespace of every key, so several deployments can share a Redis.
            channel: pub/sub channel for events; default `<prefix>:events`.
            history_size: kill and lift events kept (oldest dropped first).
            timeout_s: connect and read timeout of a client built from a URL; on a hung
                server a `check` fails closed (raises) after about three times this (2 retries).
        """
        if not prefix:
            raise GuardConfigError("RedisKillSwitch prefix must not be empty, got ''")
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise GuardConfigError(f"history_size must be a positive integer, got {history_size!r}")
        if isinstance(client_or_url, str):
            self._client: redis.Redis = redis.Redis.from_url(
                client_or_url,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                # Few, fast retries: a guard waiting on a dead Redis holds up a run.
                retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), 2),
            )
            self._owned = True
        else:
            self._client = client_or_url
            self._owned = False
        self.url = safe_url(self._client)
        """Where the kills live (password never shown)."""
        self.channel = channel or f"{prefix}:events"
        """Pub/sub channel that carries kill and lift events."""
        self._scope_prefix = f"{prefix}:scope:"
        self._history_key = f"{prefix}:history"
        self._history_size = history_size
        self._script = self._client.register_script(_APPLY)

    def kill(self, scope: KillScope, *, requester: str, reason: str) -> KillRecord:
        """Stop everything in `scope`; returns the record in force (the first one, if any).

        Raises:
            GuardConfigError: blank requester or reason, or a scope that names nothing.
            KillSwitchBackendError: Redis did not answer; the kill is NOT known to be in force.
        """
        scope = check_kill_args(scope, requester, reason, action="kill")
        record = KillRecord(
            scope=scope, requester=requester.strip(), reason=reason.strip(), at=time.time()
        )
        event = kill_event("kill", scope, record.requester, record.reason, record.at)
        key = self._scope_prefix + str(scope)
        with self._backend("kill"):
            existing = self._apply(key, "kill", event, record=_encode(record))
        return record if existing is None else self._decode(key, existing)

    def lift(self, scope: KillScope, *, requester: str, reason: str) -> KillRecord | None:
        """End a kill; returns the lifted record, or None if `scope` was not killed.

        Raises:
            GuardConfigError: blank requester or reason, or a scope that names nothing.
            KillSwitchBackendError: Redis did not answer; the kill may still be in force.
        """
        scope = check_kill_args(scope, requester, reason, action="lift")
        event = kill_event("lift", scope, requester.strip(), reason.strip(), time.time())
        key = self._scope_prefix + str(scope)
        with self._backend("lift a kill"):
            lifted = self._apply(key, "lift", event)
        return None if lifted is None else self._decode(key, lifted)

    def check(self, target: KillTarget) -> KillRecord | None:
        """The kill that stops `target` (broadest first), or None. One round trip.

        Raises:
            KillSwitchBackendError: Redis did not answer; treat the target as killed.
        """
        keys = [self._scope_prefix + k for k in target_keys(target)]
        with self._backend("check"):
            values = self._client.mget(keys)
        for key, raw in zip(keys, values, strict=True):
            if raw is not None:
                return self._decode(key, raw)
        return None

    def active(self) -> list[KillRecord]:
        """Every kill in force, broadest first."""
        with self._backend("list the active kills"):
            keys = list(self._client.scan_iter(match=_glob_escape(self._scope_prefix) + "*"))
            values = self._client.mget(keys) if keys else []
        return broadest_first(
            self._decode(k, v) for k, v in zip(keys, values, strict=True) if v is not None
        )

    def history(self, limit: int = 100) -> list[KillEvent]:
        """The latest kill and lift events, newest first (at most `limit`)."""
        if not check_history_limit(limit):
            return []
        with self._backend("read the kill history"):
            raws = self._client.lrange(self._history_key, 0, limit - 1)
        return [json.loads(raw) for raw in raws]

    def watch(self, callback: KillWatcher, *, ready_timeout_s: float = 5.0) -> Callable[[], None]:
        """Call `callback` with every later kill and lift event, from any client; returns `stop()`.

        Returns once the subscription is confirmed, so no event published afterwards is
        missed. The callback runs on a daemon thread; an exception in it is logged. If the
        connection fails, the watcher logs the error and stops (`check` stays authoritative).

        Raises:
            KillSwitchBackendError: the subscription was not confirmed in `ready_timeout_s`.
        """
        stopped = threading.Event()

        def handle(message: dict[str, Any]) -> None:
            if stopped.is_set():
                return
            try:
                callback(json.loads(message["data"]))
            except Exception:
                logger.exception("kill switch watcher %r failed on %r", callback, message)

        pubsub = self._client.pubsub()
        try:
            with self._backend("subscribe to kill events"):
                pubsub.subscribe(**{self.channel: handle})
                self._await_subscribed(pubsub, ready_timeout_s)
        except KillSwitchBackendError:
            pubsub.close()
            raise
        thread = pubsub.run_in_thread(
            sleep_time=WATCH_POLL_S, daemon=True, exception_handler=self._watch_failed
        )

        def stop() -> None:
            stopped.set()
            thread.stop()
            thread.join(timeout=WATCH_POLL_S * 10)

        return stop

    def close(self) -> None:
        """Release the connections of a client this switch created from a URL."""
        if self._owned:
            self._client.close()

    def __enter__(self) -> RedisKillSwitch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _apply(
        self, key: str, action: str, event: KillEvent, *, record: str = ""
    ) -> str | bytes | None:
        """Run `_APPLY` (one round trip); returns the record that was at `key` before."""
        result: str | bytes | None = self._script(
            keys=[key, self._history_key],
            args=[action, record, json.dumps(event), self._history_size, self.channel],
        )
        return result

    def _decode(self, key: str | bytes, raw: str | bytes) -> KillRecord:
        try:
            data = json.loads(raw)
            return KillRecord(
                scope=KillScope(kind=data["kind"], value=data["value"]),
                requester=data["requester"],
                reason=data["reason"],
                at=float(data["at"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            # Fail closed: an unreadable kill is still a kill as far as `check` is concerned.
            raise KillSwitchBackendError(
                f"kill record at key {key!r} on {self.url} is not valid ({error!r}): {raw!r}. "
                "Hint: something other than Bastion wrote under this prefix; lift the scope "
                "with `RedisKillSwitch.lift` after deleting the key, or use another prefix.",
                url=self.url,
            ) from error

    def _await_subscribed(self, pubsub: PubSub, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=remaining)
            if message is not None and message["type"] in ("subscribe", b"subscribe"):
                return
        raise KillSwitchBackendError(
            f"{self.url} did not confirm the subscription to {self.channel!r} within "
            f"{timeout_s}s. Hint: check that Redis is up and not overloaded.",
            url=self.url,
        )

    def _watch_failed(
        self, error: BaseException, pubsub: PubSub, thread: PubSubWorkerThread
    ) -> None:
        logger.error("kill switch watcher on %s stopped: %r", self.url, error)
        thread.stop()

    @contextmanager
    def _backend(self, action: str) -> Iterator[None]:
        """Turn any Redis failure into a `KillSwitchBackendError` that names the URL and the fix."""
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise KillSwitchBackendError(
                f"kill switch backend {self.url} is unreachable, could not {action} "
                f"({type(error).__name__}: {error}). Guarded actions are refused until it "
                f"answers (fail closed). Hint: start Redis at {self.url}, or unset "
                "BASTION_REDIS_URL to use the in-process kill switch.",
                url=self.url,
            ) from error
        except redis.exceptions.RedisError as error:
            raise KillSwitchBackendError(
                f"kill switch backend {self.url} failed to {action} "
                f"({type(error).__name__}: {error}). Hint: check the Redis log at {self.url}.",
                url=self.url,
            ) from error


def _encode(record: KillRecord) -> str:
    return json.dumps(
        {
            "kind": record.scope.kind,
            "value": record.scope.value,
            "requester": record.requester,
            "reason": record.reason,
            "at": record.at,
        }
    )


def _glob_escape(text: str) -> str:
    """Escape SCAN MATCH wildcards so a prefix matches only itself."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
