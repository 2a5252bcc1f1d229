"""Acting once: claiming an effect in the ledger, waiting out other workers, settling outcomes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from tools.base import Claim, EffectIntent, EffectLedger, EffectOutcome
from tools.calls import CallOutcome
from tools.ledger import new_owner
from tools.results import ToolInvocation, ToolResult, failed_result
from tools.spec import ToolConfigError, ToolSpec

__all__ = ["DURABLE_MODES", "DurabilityError", "EffectPath", "require_durable"]

DURABLE_MODES = ("sync", "async")
"""LangGraph durability modes that checkpoint each step, so a crash cannot lose a proposal."""
_MAX_POLL_S = 0.05
"""Longest wait between asking the ledger again while another worker holds a claim."""
Gate = Callable[[], ToolResult | None]
"""Asked once the claim is held: a refusal (rate limit, kill switch), or None to act."""
Act = Callable[[int], tuple[ToolResult, CallOutcome]]
"""Runs the tool, numbering its first attempt as given: the result and the raw outcome (with
its output already scrubbed of secrets)."""


class DurabilityError(ToolConfigError):
    """Side-effecting tools were asked to run in a durability mode that cannot keep them to
    one effect per call."""


def require_durable(durability: str, tools: list[str]) -> None:
    """Refuse a durability mode in which a crash could repeat `tools`' effects.

    With `exit`, nothing is checkpointed until the run ends: a crash loses the proposals, and
    a model asked again may propose different arguments (a different idempotency key).

    Raises:
        DurabilityError: naming the mode, the tools and the modes that work.
    """
    if tools and durability not in DURABLE_MODES:
        raise DurabilityError(
            f"durability={durability!r} cannot guarantee one effect per call for side-effecting "
            f"tool(s) {sorted(tools)!r}: a crash would lose the checkpoint of the proposal. "
            "Run with durability='sync' (or 'async')."
        )


def _lease_seconds(spec: ToolSpec) -> float:
    """How long a claim is held before others may assume its worker died (on another host):
    the rate-limit wait, every attempt at its budget and every backoff, with a margin."""
    per_attempt = spec.timeout_s or 30.0
    attempts = spec.retry.attempts if spec.idempotent else 1
    waits = spec.rate_limit.max_wait_s if spec.rate_limit is not None else 0.0
    return waits + (per_attempt + spec.retry.max_delay_s) * attempts + 5.0


class EffectPath:
    """Side-effecting calls through the effect ledger: claimed before they act (write-ahead),
    settled after, replayed instead of repeated.

    Args:
        ledger: the effect ledger.
        clock: wall time (leases, records).
        sleep: waits while another worker holds a claim.
    """

    def __init__(
        self, ledger: EffectLedger, *, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.ledger = ledger
        self._clock = clock
        self._sleep = sleep

    def act_once(
        self,
        intent: EffectIntent,
        invocation: ToolInvocation,
        spec: ToolSpec,
        *,
        gate: Gate,
        act: Act,
    ) -> ToolResult:
        """Act on `intent` at most once: replay a recorded result, refuse a call in doubt, or
        claim the key, pass `gate` and `act`, and record what happened."""
        owner, key = new_owner(), intent.key
        claim = self._claim(intent, owner, _lease_seconds(spec))
        undone = claim.record.compensation
        if claim.kind == "done" and undone is not None and undone.ok:
            return failed_result(
                invocation,
                "refused",
                f"`{invocation.tool}` was already done with these arguments and then undone by "
                f"{undone.by} ({undone.reason}); it is not repeated automatically. Ask a person "
                "whether it should be done again.",
                key,
            )
        if claim.kind == "done" and claim.record.outcome is not None:
            return _replayed(invocation, key, claim.record.outcome)
        if claim.kind != "acquired" or (claim.recovered and not spec.idempotent):
            return self._in_doubt(invocation, key, owner, mark=claim.kind == "acquired")
        try:  # nothing has acted yet: every way out of here gives the claim back
            refusal = gate()
        except BaseException:
            self.ledger.release(key, owner=owner)
            raise
        if refusal is not None:
            self.ledger.release(key, owner=owner)
            return refusal
        result, outcome = act(claim.record.attempts)
        return self._settle(key, owner, spec, result, outcome)

    def _claim(self, intent: EffectIntent, owner: str, lease_s: float) -> Claim:
        """Claim `intent`, waiting while another live worker holds it. Asking the ledger again
        (rather than watching the record) lets it take over as soon as the holder is provably
        dead or its lease has run out."""
        delay = 0.001
        while True:
            claim = self.ledger.claim(intent, owner=owner, lease_s=lease_s, now=self._clock())
            if claim.kind != "busy":
                return claim
            self._sleep(delay)
            delay = min(delay * 2, _MAX_POLL_S)

    def _settle(
        self, key: str, owner: str, spec: ToolSpec, result: ToolResult, outcome: CallOutcome
    ) -> ToolResult:
        """Record a result (even one that broke the output contract) so it is replayed from now
        on. Release a call that cannot have acted (a `ToolError`, or it never started) or that
        is safe to ask again (idempotent). Anything else may have acted half-way: in doubt."""
        if outcome.failure in (None, "bad_output"):
            recorded = EffectOutcome(
                ok=result.ok,
                content=result.content,
                output=outcome.output,
                error_kind=result.error_kind,
            )
            self.ledger.finish(key, owner=owner, outcome=recorded, now=self._clock())
        elif outcome.failure == "tool_error" or not outcome.started or spec.idempotent:
            self.ledger.release(key, owner=owner)
        else:
            result = replace(
                result,
                content=result.content
                + " It may or may not have acted, so it will not be run again with these "
                f"arguments; a person must check effect `{key}`. Tell the user.",
            )
            self.ledger.mark_in_doubt(key, owner=owner, detail=result.content, now=self._clock())
        return result

    def _in_doubt(
        self, invocation: ToolInvocation, key: str, owner: str, *, mark: bool
    ) -> ToolResult:
        message = (
            f"`{invocation.tool}` was interrupted earlier with these arguments and may or may "
            f"not have acted; it is not repeated automatically. A person must check effect "
            f"`{key}`. Tell the user it is being checked."
        )
        if mark:
            self.ledger.mark_in_doubt(key, owner=owner, detail=message, now=self._clock())
        return failed_result(invocation, "in_doubt", message, key)


def _marked(content: str) -> str:
    """Recorded content that says it is a replay, so the model does not report a second
    refund or email: a JSON object gets `"replayed": true`, other text a closing note."""
    try:
        value = json.loads(content)
    except ValueError:  # plain text, or JSON cut short by the output bound
        value = None
    if isinstance(value, dict):
        return json.dumps({**value, "replayed": True}, ensure_ascii=False)
    return content + "\n[replayed: this exact call was made before; nothing was done again]"


def _replayed(invocation: ToolInvocation, key: str, outcome: EffectOutcome) -> ToolResult:
    """The recorded result of an earlier execution, returned instead of acting again."""
    return ToolResult(
        call_id=invocation.call_id,
        tool=invocation.tool,
        ok=outcome.ok,
        content=_marked(outcome.content),
        error_kind=outcome.error_kind,  # type: ignore[arg-type]
        idempotency_key=key,
        replayed=True,
    )
