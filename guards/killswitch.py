"""The in-process kill switch, and what every kill switch shares: argument rules, events, errors."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from guards.base import KillRecord, KillScope, KillTarget
from guards.errors import GuardConfigError

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "InMemoryKillSwitch",
    "KillEvent",
    "KillSwitchBackendError",
    "KillWatcher",
    "broadest_first",
    "check_history_limit",
    "check_kill_args",
    "kill_event",
    "target_keys",
]

logger = logging.getLogger(__name__)

DEFAULT_HISTORY_SIZE = 1000
"""Kill and lift events kept per switch; older ones are dropped (the audit log keeps them all)."""

KillEvent = dict[str, Any]
"""A history entry and a watched event: `event` (`kill` or `lift`), `scope`, `requester`,
`reason`, `at` (Unix time)."""

KillWatcher = Callable[[KillEvent], None]
"""Called with each kill or lift event once it is in force."""

_KIND_ORDER = {"global": 0, "tenant": 1, "workflow": 2, "run": 3}


class KillSwitchBackendError(RuntimeError):
    """The kill switch's backend cannot answer. Guards treat this as killed (fail closed).

    The message names the backend's address and what to do about it.
    """

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url
        """Address of the backend that failed (password removed)."""


def check_kill_args(scope: KillScope, requester: str, reason: str, *, action: str) -> KillScope:
    """Validate the arguments of `kill` or `lift`; return the scope in canonical form.

    Args:
        scope: what to kill or lift.
        requester: who asks; must not be blank.
        reason: why; must not be blank.
        action: `kill` or `lift`, for the error message.

    Raises:
        GuardConfigError: a blank requester or reason, or a scope that names nothing.
    """
    if not isinstance(scope, KillScope):
        raise GuardConfigError(
            f"{action} needs a KillScope, got {scope!r}. "
            "Hint: KillScope.parse('tenant:acme') or KillScope(kind='global')."
        )
    for name, value in (("requester", requester), ("reason", reason)):
        if not isinstance(value, str) or not value.strip():
            raise GuardConfigError(
                f"{action} of `{scope}` needs a non-blank `{name}`, got {value!r}. "
                f"Hint: say who asks and why, e.g. requester='ops:alice', "
                f"reason='refunds going to the wrong accounts'; both go into the audit trail."
            )
    if scope.kind == "global":
        return scope if scope.value == "*" else KillScope(kind="global")
    if scope.kind not in _KIND_ORDER:
        raise GuardConfigError(
            f"kill scope kind {scope.kind!r} is not valid; expected one of {sorted(_KIND_ORDER)}"
        )
    if not scope.value.strip() or scope.value == "*":
        raise GuardConfigError(
            f"a `{scope.kind}` kill needs the {scope.kind} it stops, got {scope.value!r}. "
            "Hint: to stop everything use KillScope(kind='global')."
        )
    return scope


def check_history_limit(limit: int) -> int:
    """Validate `history(limit=...)`: a non-negative integer."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise GuardConfigError(f"history limit must be a non-negative integer, got {limit!r}")
    return limit


def target_keys(target: KillTarget) -> tuple[str, str, str, str]:
    """`str()` of each of `target.scopes()`, broadest first, without building the scopes."""
    return (
        "global",
        f"tenant:{target.tenant}",
        f"workflow:{target.workflow}",
        f"run:{target.run_id}",
    )


def kill_event(event: str, scope: KillScope, requester: str, reason: str, at: float) -> KillEvent:
    """A history entry / watched event for a kill or a lift."""
    return {"event": event, "scope": str(scope), "requester": requester, "reason": reason, "at": at}


def broadest_first(records: Iterable[KillRecord]) -> list[KillRecord]:
    """Kills ordered global, tenant, workflow, run; oldest first within a kind."""
    return sorted(records, key=lambda r: (_KIND_ORDER[r.scope.kind], r.at, r.scope.value))


class InMemoryKillSwitch:
    """A kill switch inside one process; thread-safe. Share the object to share the kills.

    Semantics (the same for every implementation, proven by `tests/conformance`):

    - `kill` returns once every later `check`, in any thread, sees the kill.
    - Killing a scope that is already killed keeps (and returns) the first record: the first
      requester and reason stay on file; nothing is added to the history.
    - Lifting a kill does not resume anything: runs that were halted stay halted; callers decide
      whether to start them again. Lifting a scope that is not killed returns None and records
      nothing.
    - Watchers run on the thread that called `kill` / `lift`, after the change is in force.
    """

    def __init__(self, *, history_size: int = DEFAULT_HISTORY_SIZE) -> None:
        """Create an empty switch.

        Args:
            history_size: kill and lift events kept (oldest dropped first).
        """
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise GuardConfigError(f"history_size must be a positive integer, got {history_size!r}")
        self._kills: dict[str, KillRecord] = {}
        self._history: deque[KillEvent] = deque(maxlen=history_size)
        self._watchers: dict[int, KillWatcher] = {}
        self._next_watcher = 0
        # Writers serialise on the lock; `check` reads without it because a single dict lookup
        # is atomic and an assignment made before `kill` returns is visible to every later read.
        self._lock = threading.Lock()

    def kill(self, scope: KillScope, *, requester: str, reason: str) -> KillRecord:
        """Stop everything in `scope`; returns the record in force (the first one, if any).

        Raises:
            GuardConfigError: blank requester or reason, or a scope that names nothing.
        """
        scope = check_kill_args(scope, requester, reason, action="kill")
        key = str(scope)
        with self._lock:
            existing = self._kills.get(key)
            if existing is not None:
                return existing
            record = KillRecord(
                scope=scope, requester=requester.strip(), reason=reason.strip(), at=time.time()
            )
            self._kills[key] = record
            event = kill_event("kill", scope, record.requester, record.reason, record.at)
            self._history.append(event)
        self._notify(event)
        return record

    def lift(self, scope: KillScope, *, requester: str, reason: str) -> KillRecord | None:
        """End a kill; returns the lifted record, or None if `scope` was not killed.

        Raises:
            GuardConfigError: blank requester or reason, or a scope that names nothing.
        """
        scope = check_kill_args(scope, requester, reason, action="lift")
        with self._lock:
            record = self._kills.pop(str(scope), None)
            if record is None:
                return None
            event = kill_event("lift", scope, requester.strip(), reason.strip(), time.time())
            self._history.append(event)
        self._notify(event)
        return record

    def check(self, target: KillTarget) -> KillRecord | None:
        """The kill that stops `target` (broadest first), or None."""
        kills = self._kills
        if not kills:
            return None
        for key in target_keys(target):
            record = kills.get(key)
            if record is not None:
                return record
        return None

    def active(self) -> list[KillRecord]:
        """Every kill in force, broadest first."""
        with self._lock:
            records = list(self._kills.values())
        return broadest_first(records)

    def history(self, limit: int = 100) -> list[KillEvent]:
        """The latest kill and lift events, newest first (at most `limit`)."""
        limit = check_history_limit(limit)
        with self._lock:
            events = list(self._history)
        return [dict(e) for e in reversed(events)][:limit]

    def watch(self, callback: KillWatcher) -> Callable[[], None]:
        """Call `callback` with every later kill and lift event; returns `stop()`.

        The callback runs on the thread that changed the switch; an exception in it is logged
        and does not undo or delay the kill.
        """
        with self._lock:
            token = self._next_watcher
            self._next_watcher += 1
            self._watchers[token] = callback

        def stop() -> None:
            with self._lock:
                self._watchers.pop(token, None)

        return stop

    def _notify(self, event: KillEvent) -> None:
        with self._lock:
            watchers = list(self._watchers.values())
        for callback in watchers:
            try:
                callback(dict(event))
            except Exception:
                # A broken console must not make a kill look failed: it is already in force.
                logger.exception("kill switch watcher %r failed on %s", callback, event)
