"""Egress: what may leave the system. Secrets are blocked; sensitive PII is redacted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guards.scanners import ContentScanner, Finding, redact, redact_args
from guards.verdict import PolicyRef

__all__ = ["EgressPolicy", "Screened"]

EGRESS_POLICY = PolicyRef(id="egress", version="1")


@dataclass(frozen=True, kw_only=True)
class Screened:
    """Outbound arguments after screening."""

    args: Mapping[str, Any]
    """The arguments to send (redacted where needed)."""
    blocked: str | None = None
    """Why nothing may be sent, or None."""
    redactions: tuple[str, ...] = ()
    """Types of the values redacted, e.g. `credit_card`."""
    policy: PolicyRef = EGRESS_POLICY
    """The policy applied."""


def _types(findings: list[Finding]) -> tuple[str, ...]:
    return tuple(sorted({f.type for f in findings}))


@dataclass(frozen=True, kw_only=True)
class EgressPolicy:
    """Screens outbound tool arguments and final answers.

    Contact details (emails, phone numbers) pass: replying to a customer needs them. Payment
    and identity numbers are redacted; secrets block the call outright.
    """

    scanner: ContentScanner = field(default_factory=ContentScanner)
    """Finds PII and secrets."""
    block: frozenset[str] = frozenset({"secret"})
    """Finding categories that stop the call."""
    redact: frozenset[str] = frozenset({"credit_card", "iban", "national_id"})
    """Finding types replaced by a `[REDACTED:<type>]` marker."""

    def screen_args(self, args: Mapping[str, Any]) -> Screened:
        """Block, redact or pass outbound arguments."""
        found = self.scanner.scan_args(args, kinds=frozenset({"pii", "secret"}))
        if not found:
            return Screened(args=args)
        blocking = [f for fs in found.values() for f in fs if f.category in self.block]
        if blocking:
            where = ", ".join(sorted(path for path, fs in found.items() if set(fs) & set(blocking)))
            return Screened(
                args=args,
                blocked=f"outbound arguments contain a secret ({', '.join(_types(blocking))} "
                f"in {where}); secrets never leave the system. Remove it and call again.",
            )
        to_redact = {
            path: tuple(f for f in fs if f.type in self.redact) for path, fs in found.items()
        }
        to_redact = {path: fs for path, fs in to_redact.items() if fs}
        if not to_redact:
            return Screened(args=args)
        redacted = redact_args(args, to_redact)
        return Screened(
            args=redacted,
            redactions=_types([f for fs in to_redact.values() for f in fs]),
        )

    def screen_text(self, text: str) -> tuple[str, tuple[str, ...]]:
        """A final answer with secrets and sensitive PII redacted, and the types removed."""
        found = [
            f
            for f in self.scanner.scan(text, kinds=frozenset({"pii", "secret"}))
            if f.category in self.block or f.type in self.redact
        ]
        return (redact(text, found), _types(found)) if found else (text, ())
