"""Deterministic content scanning (PII, secrets, injection, protected attributes) and redaction."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from guards.detectors import Finding, detect_pii, detect_protected
from guards.detectors_injection import detect_injection
from guards.detectors_secret import detect_secrets
from guards.errors import GuardConfigError
from guards.patterns_protected import PROTECTED, PROTECTED_GROUPS

__all__ = [
    "DEFAULT_KINDS",
    "KINDS",
    "ContentScanner",
    "Finding",
    "redact",
    "redact_args",
    "scan",
    "scan_args",
]

KINDS: frozenset[str] = frozenset({"pii", "secret", "injection", "protected"})
"""Every kind of scan; `protected` is for decision inputs (credit, hiring, pricing), not chat."""
DEFAULT_KINDS: frozenset[str] = frozenset({"pii", "secret", "injection"})
"""What runs on user input, tool output and outbound arguments unless told otherwise."""


@dataclass(frozen=True, kw_only=True)
class ContentScanner:
    """The configured scanner; `scan` and `scan_args` are the entry points."""

    kinds: frozenset[str] = DEFAULT_KINDS
    """Kinds run when a call does not name its own."""
    entropy_threshold: float = 4.0
    """Bits per character a token of 32+ characters needs to count as a secret; shorter tokens
    need proportionally less (at most log2(length) is possible): 3.5 at 20 characters."""
    min_token_length: int = 20
    """Shortest token judged by entropy."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", _checked_kinds(self.kinds))
        if not 1.0 <= self.entropy_threshold <= 6.0:
            raise GuardConfigError(
                f"ContentScanner.entropy_threshold must be within [1.0, 6.0] bits/char, got "
                f"{self.entropy_threshold!r}. Hint: random base64 is about 4.5-5 at 32-64 chars."
            )
        if not 8 <= self.min_token_length <= 256:
            raise GuardConfigError(
                f"ContentScanner.min_token_length must be within [8, 256], got "
                f"{self.min_token_length!r}. Hint: shorter tokens make entropy meaningless."
            )

    def scan(self, text: str, *, kinds: Iterable[str] | None = None) -> tuple[Finding, ...]:
        """Scan one text.

        Args:
            text: what to scan (any length; empty is fine).
            kinds: which scans to run; defaults to `self.kinds`.

        Returns:
            Findings sorted by span. Within one category overlapping findings are reduced to
            the most specific one (a card number is not also reported as a phone number).
        """
        if not isinstance(text, str):
            raise TypeError(f"scan() needs a str, got {type(text).__name__}: {text!r:.60}")
        chosen = self.kinds if kinds is None else _checked_kinds(kinds)
        if not text:
            return ()
        low = _lowered(text)
        found: list[Finding] = []
        if "pii" in chosen:
            found += _first_wins(detect_pii(text))
        if "secret" in chosen:
            found += _first_wins(
                detect_secrets(text, low, self.min_token_length, self.entropy_threshold)
            )
        if "injection" in chosen:
            found += _first_wins(detect_injection(text, low))
        if "protected" in chosen:
            found += detect_protected(low)
        found.sort(key=lambda f: f.span)
        return tuple(found)

    def scan_args(
        self, args: Mapping[str, Any], *, kinds: Iterable[str] | None = None
    ) -> dict[str, tuple[Finding, ...]]:
        """Scan every string (and number) in nested arguments.

        Paths are dotted (`customer.emails.0`). With `protected`, a field whose *name* is a
        protected attribute (`gender`, `date_of_birth`, `zip`) yields a finding spanning its
        whole value, and so does everything below it.

        Returns:
            path → findings, for the paths that have any.
        """
        if not isinstance(args, Mapping):
            raise TypeError(f"scan_args() needs a mapping, got {type(args).__name__}")
        chosen = self.kinds if kinds is None else _checked_kinds(kinds)
        out: dict[str, tuple[Finding, ...]] = {}
        for path, text, field_hit in _leaves(args, "", None, "protected" in chosen):
            found = list(self.scan(text, kinds=chosen))
            if field_hit is not None:
                severity, detail = PROTECTED_GROUPS[field_hit[0]]
                detail = f"{detail} (field {field_hit[1]!r})"
                whole = Finding(
                    type="protected_attribute",
                    category="protected",
                    span=(0, len(text)),
                    severity=severity,
                    detail=detail,
                )
                found.insert(0, whole)
            if found:
                out[path] = tuple(found)
        return out


# --------------------------------------------------------------------------------------------
# Module-level API on a default scanner


def scan(text: str, *, kinds: Iterable[str] = DEFAULT_KINDS) -> tuple[Finding, ...]:
    """Scan one text with the default scanner (see `ContentScanner.scan`)."""
    return _DEFAULT.scan(text, kinds=kinds)


def scan_args(
    args: Mapping[str, Any], kinds: Iterable[str] = DEFAULT_KINDS
) -> dict[str, tuple[Finding, ...]]:
    """Scan nested arguments with the default scanner (see `ContentScanner.scan_args`)."""
    return _DEFAULT.scan_args(args, kinds=kinds)


def redact(text: str, findings: Iterable[Finding]) -> str:
    """Replace each finding's span with `[REDACTED:<type>]`, keeping the text around it.

    Overlapping spans are merged and labelled after the longest of them. Card numbers keep
    their last 4 digits: `[REDACTED:credit_card ****1234]`.

    Raises:
        GuardConfigError: a span lies outside `text` (findings of another text).
    """
    spans = sorted((f.span[0], f.span[1], f) for f in findings if f.span[0] != f.span[1])
    pieces: list[str] = []
    cursor = 0
    index = 0
    while index < len(spans):
        start, end, best = spans[index]
        index += 1
        while index < len(spans) and spans[index][0] < end:
            other = spans[index][2]
            if other.span[1] - other.span[0] > best.span[1] - best.span[0]:
                best = other
            end = max(end, spans[index][1])
            index += 1
        if start < 0 or end > len(text):
            raise GuardConfigError(
                f"finding span ({start}, {end}) lies outside the text of length {len(text)}. "
                "Hint: redact a text with the findings of that same text."
            )
        pieces += (text[cursor:start], _label(text, best))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def redact_args(
    args: Mapping[str, Any], findings_by_path: Mapping[str, Iterable[Finding]]
) -> dict[str, Any]:
    """A copy of nested `args` with the values at the given paths redacted (see `scan_args`).

    Raises:
        GuardConfigError: a path names no string or number in `args`.
    """
    pending = dict(findings_by_path)
    result = _rebuild(args, "", pending)
    if pending:
        raise GuardConfigError(
            f"redact_args: no string or number at path(s) {sorted(pending)!r}. "
            "Hint: pass the paths `scan_args` returned for these same args."
        )
    return result


# --------------------------------------------------------------------------------------------
# Plumbing


def _checked_kinds(kinds: Iterable[str]) -> frozenset[str]:
    chosen = kinds if isinstance(kinds, frozenset) else frozenset(kinds)
    unknown = chosen - KINDS
    if unknown:
        raise GuardConfigError(
            f"unknown scan kind(s) {sorted(unknown)!r}; expected a subset of {sorted(KINDS)!r}"
        )
    return chosen


def _lowered(text: str) -> str:
    """`text.lower()` with offsets intact (a few characters lower-case to two characters)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(lc := c.lower()) != 1 else lc for c in text)


def _first_wins(findings: list[Finding]) -> list[Finding]:
    """Drop findings overlapping an earlier (more specific) one; O(n log n) for long logs."""
    starts: list[int] = []
    ends: list[int] = []
    kept: list[Finding] = []
    for finding in findings:
        start, end = finding.span
        index = bisect.bisect_right(starts, start)
        if (index and ends[index - 1] > start) or (index < len(starts) and starts[index] < end):
            continue
        starts.insert(index, start)
        ends.insert(index, end)
        kept.append(finding)
    return kept


def _label(text: str, finding: Finding) -> str:
    if finding.type == "credit_card":
        digits = [c for c in text[finding.span[0] : finding.span[1]] if c.isdigit()]
        return f"[REDACTED:credit_card ****{''.join(digits[-4:])}]"
    return f"[REDACTED:{finding.type}]"


def _leaves(
    value: Any, path: str, field_hit: tuple[str, str] | None, keys: bool
) -> Iterable[tuple[str, str, tuple[str, str] | None]]:
    """(path, text, protected field above it) for every string and number below `value`."""
    if isinstance(value, str):
        yield path, value, field_hit
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, str(value), field_hit
    elif isinstance(value, Mapping):
        for key, item in value.items():
            hit = field_hit
            if keys and hit is None and (m := PROTECTED.search(_lowered(str(key)))):
                hit = (m.lastgroup or "", str(key))
            yield from _leaves(item, f"{path}.{key}" if path else str(key), hit, keys)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}.{index}" if path else str(index), field_hit, keys)


def _rebuild(value: Any, path: str, pending: dict[str, Iterable[Finding]]) -> Any:
    if isinstance(value, Mapping):
        return {
            k: _rebuild(v, f"{path}.{k}" if path else str(k), pending) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        items = (
            _rebuild(v, f"{path}.{i}" if path else str(i), pending) for i, v in enumerate(value)
        )
        return type(value)(items)
    is_text = isinstance(value, str | int | float) and not isinstance(value, bool)
    if is_text and path in pending:
        return redact(str(value), pending.pop(path))
    return value


_DEFAULT = ContentScanner()  # last: its __post_init__ needs the helpers above
