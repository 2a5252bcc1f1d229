"""Secret detection: vendor-shaped keys, `key=value` assignments and high-entropy tokens."""

from __future__ import annotations

import math
import re

from guards.detectors import Finding, finding
from guards.patterns_secret import (
    BEARER,
    PKEY_BODY,
    PKEY_END,
    SECRET_KEYWORDS,
    SECRET_RULES,
    TOKEN,
    URL_CREDENTIALS,
    WORD_RUN,
    shannon_entropy,
)

__all__ = ["detect_secrets"]

_PLACEHOLDERS = frozenset(
    re.findall(
        r"\w+",
        "null none nil true false undefined redacted removed hidden masked example placeholder "
        "required optional string empty changeme xxxx",
    )
)


def detect_secrets(text: str, low: str, min_length: int, threshold: float) -> list[Finding]:
    """Vendor-shaped keys first, then `key=value` assignments, then high-entropy tokens.

    Args:
        text: the text to scan.
        low: `text` lower-cased with offsets intact.
        min_length: shortest token judged by entropy.
        threshold: bits per character a 32+ character token needs to count as a secret.
    """
    found: list[Finding] = []
    for gate, pattern, kind, detail in SECRET_RULES:
        if gate in text:
            for m in pattern.finditer(text):
                start, end = m.span()
                if start and (text[start - 1].isalnum() or text[start - 1] == "_"):
                    continue
                if kind == "private_key":
                    tail = PKEY_END.search(text, end) or PKEY_BODY.match(text, end)
                    end = tail.end() if tail else end
                elif gate == "sk-" and not any(c.isdigit() for c in m.group()):
                    continue  # "sk-this-is-not-a-key-at-all"
                found.append(finding(kind, "secret", (start, end), "high", detail))
    found += _assignments(text, low)
    if "bearer" in low:
        for m in BEARER.finditer(low):
            found.append(finding("token", "secret", m.span("val"), "high", "bearer token"))
    if "://" in text:
        for m in URL_CREDENTIALS.finditer(text):
            found.append(finding("password", "secret", m.span("val"), "high", "password in a URL"))
    found += _entropy(text, found, min_length, threshold)
    return found


def _assignments(text: str, low: str) -> list[Finding]:
    found: list[Finding] = []
    for word, pattern in SECRET_KEYWORDS:
        if word not in low:
            continue
        for m in pattern.finditer(low):
            name = _field_name(low, m.start()) + word
            kind = _assigned_kind(word, name[: -len(word)].strip("_-"))
            start, end = m.span("val")
            value = text[start:end].rstrip(".:")
            if kind and not _placeholder(value, prose=m.group("sep") == ":"):
                detail = f"value assigned to `{name}`"
                found.append(finding(kind, "secret", (start, start + len(value)), "high", detail))
    return found


def _field_name(low: str, end: int) -> str:
    """The identifier characters just before `end` (`db_` in `db_password`)."""
    start = end
    while start > 0 and end - start < 40 and (low[start - 1].isalnum() or low[start - 1] in "_-"):
        start -= 1
    return low[start:end]


_KEY_PREFIXES = ("api", "access", "secret", "private", "signing", "encryption", "master", "client")


def _assigned_kind(word: str, prefix: str) -> str:
    """The finding type for `<prefix><word> = value`, or "" when the field is not a secret."""
    if word in ("password", "passwd", "passphrase", "pwd"):
        return "password"
    if word == "token":
        return "token"
    if word == "secret" or prefix.endswith(_KEY_PREFIXES):
        return "api_key"
    return ""  # `primary_key: id`, `monkey: 12`


def _placeholder(value: str, *, prose: bool) -> bool:
    """Values nobody needs hidden: templates, masks, `null`, or one word after a colon in prose
    ("password: reset", "token: expired")."""
    return (
        len(value) < 4
        or value.lower() in _PLACEHOLDERS
        or value[0] in "$%{*<#"
        or len(set(value)) == 1
        or (prose and value.isalpha() and len(value) < 12)
    )


def _entropy(text: str, known: list[Finding], min_length: int, threshold: float) -> list[Finding]:
    """Random-looking tokens not already inside a `known` secret (key bodies, JWTs, values)."""
    found: list[Finding] = []
    cursor = 0
    for word in [w for w in text.split() if len(w) >= min_length]:
        base = cursor = text.find(word, cursor)
        cursor += len(word)
        for m in TOKEN.finditer(word):
            start, end = base + m.start(), base + m.end()
            if end - start < min_length or any(
                start < k.span[1] and k.span[0] < end for k in known
            ):
                continue
            bits = _randomness(m.group(), threshold)
            if bits is not None:
                detail = f"high-entropy string ({end - start} chars, {bits:.1f} bits/char)"
                found.append(finding("high_entropy", "secret", (start, end), "medium", detail))
    return found


_HEX = frozenset("0123456789abcdefABCDEF-_")


def _randomness(token: str, threshold: float) -> float | None:
    """The entropy of `token` in bits/char if it looks random, else None.

    Random means mixed case with digits, few word-like runs and high entropy. Pure hex is
    never judged (UUIDs, hashes, commit and order ids look exactly like hex keys).
    Identifiers (`getCustomerOrderHistory2`) spend most characters in runs of 4+ letters or
    digits, random base64 about a third (under 0.6 for 99% of random 20-char tokens).
    """
    if token.islower() or token.isupper() or set(token) <= _HEX:
        return None
    if not any(c.isdigit() for c in token):
        return None
    pieces = token.split("/")
    if len(pieces) > 2 and 2 * sum(x.isalpha() and x.islower() for x in pieces) >= len(pieces):
        return None  # a path: /api/v1/customers/AbC123/orders
    if sum(len(run) for run in WORD_RUN.findall(token) if len(run) >= 4) >= 0.6 * len(token):
        return None
    bits = shannon_entropy(token)
    return bits if bits >= threshold * min(1.0, math.log2(len(token)) / 5) else None
