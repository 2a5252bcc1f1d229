"""The detectors behind the content scanner: PII, secrets, prompt injection, protected attributes.

Each `detect_*` function returns its findings most specific first, overlaps included; the
scanner (`guards.scanners`) chooses which run and reduces the overlaps.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from guards.patterns import Severity
from guards.patterns_injection import EXFIL_LINK, INJECTION_RULES, InjectionRule
from guards.patterns_pii import (
    ALNUM_ID,
    EMAIL_DOMAIN,
    EMAIL_LOCAL_REVERSED,
    IPV6,
    IPV6_HINT,
    NUMERIC,
    PHONE_PUNCT,
    dni_ok,
    iban_length,
    iban_ok,
    luhn_ok,
    nino_ok,
    ssn_ok,
)
from guards.patterns_protected import PROTECTED, PROTECTED_GROUPS
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

__all__ = [
    "Category",
    "Finding",
    "detect_injection",
    "detect_pii",
    "detect_protected",
    "detect_secrets",
]

Category = Literal["pii", "secret", "injection", "protected"]
"""Which detector a finding comes from."""


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One thing a scanner found: what, where, how bad. Never carries the value itself."""

    type: str
    """What was found, e.g. `email`, `credit_card`, `api_key`, `injection`."""
    category: Category
    """`pii`, `secret`, `injection` or `protected`."""
    span: tuple[int, int]
    """Character offsets `[start, end)` into the scanned text."""
    severity: Severity
    """`low`, `medium` or `high`."""
    detail: str
    """Short human text (at most a masked hint such as a card's last 4 digits)."""


# --------------------------------------------------------------------------------------------
# PII

_NATIONAL = {"ssn": "US SSN", "sin": "Canadian SIN", "dni": "Spanish DNI"}


def detect_pii(text: str) -> list[Finding]:
    """Emails, phones, cards, IBANs, national ids and IP addresses in `text`.

    Most specific first (the overlap filter keeps the first): IBAN/NINO/NIE (they contain
    digit runs that look like phones), `(`/`+` phones, digit-led identifiers, emails, IPv6.
    """
    found: list[Finding] = []
    for m in ALNUM_ID.finditer(text):
        found += _alnum_id(text, m.lastgroup or "", m.start(), m.end())
    if "(" in text or "+" in text:  # before NUMERIC: "+1 415 555 0132" beats "415 555 0132"
        for m in PHONE_PUNCT.finditer(text):
            found += _numeric("phone", m.group(), m.start(), m.end())
    for m in NUMERIC.finditer(text):
        found += _numeric(m.lastgroup or "", m.group(), m.start(), m.end())
    if "@" in text:
        found += _emails(text)
    if "::" in text or IPV6_HINT.search(text):
        for m in IPV6.finditer(text):
            try:
                ipaddress.IPv6Address(m.group())
            except ValueError:
                continue
            found.append(_f("ip_address", "pii", m.span(), "low", "IPv6 address"))
    return found


def _f(kind: str, category: Category, span: tuple[int, int], sev: Severity, detail: str) -> Finding:
    return Finding(type=kind, category=category, span=span, severity=sev, detail=detail)


def _alnum_id(text: str, group: str, start: int, end: int) -> list[Finding]:
    raw = text[start:end]
    if group == "iban":
        length = iban_length(raw[:2])
        compact = raw.replace(" ", "")
        if length is None or len(compact) < length:
            return []
        end, taken = start, 0
        while taken < length:  # trim a following word swallowed by the 4-char groups
            taken += text[end] != " "
            end += 1
        if not iban_ok(compact[:length]) or (end < len(text) and text[end].isalnum()):
            return []
        return [_f("iban", "pii", (start, end), "high", f"IBAN ({raw[:2]})")]
    compact = raw.replace(" ", "").replace("-", "")
    if group == "nino" and nino_ok(compact):
        return [_f("national_id", "pii", (start, end), "high", "UK National Insurance number")]
    if group == "nie" and dni_ok(compact):
        return [_f("national_id", "pii", (start, end), "high", "Spanish NIE")]
    return []


def _numeric(group: str, raw: str, start: int, end: int) -> list[Finding]:
    digits = "".join(c for c in raw if c.isdigit())
    if group == "card":
        cut = max(raw.rfind(" "), raw.rfind("-"))
        if not luhn_ok(digits) and 0 < cut >= len(raw) - 4:
            # "4111 1111 1111 1111 123": a trailing short group (a CVV?) is not part of the card
            raw, end = raw[:cut], start + cut
            digits = "".join(c for c in raw if c.isdigit())
        if digits[0] in "23456" and 13 <= len(digits) <= 19 and luhn_ok(digits):
            detail = f"payment card number ending {digits[-4:]}"
            return [_f("credit_card", "pii", (start, end), "high", detail)]
    elif group in _NATIONAL:
        valid = {"ssn": ssn_ok, "sin": luhn_ok, "dni": dni_ok}[group]
        if valid(digits if group != "dni" else raw.replace("-", "")):
            return [_f("national_id", "pii", (start, end), "high", _NATIONAL[group])]
    elif group == "ipv4":
        octets = raw.split(".")
        if all(int(o) <= 255 and (o == "0" or o[0] != "0") for o in octets):
            return [_f("ip_address", "pii", (start, end), "low", "IPv4 address")]
    elif group == "phone" and 8 <= len(digits) <= 15:
        return [_f("phone", "pii", (start, end), "medium", "phone number")]
    return []


def _emails(text: str) -> list[Finding]:
    found: list[Finding] = []
    at = text.find("@")
    while at != -1:
        domain = EMAIL_DOMAIN.match(text, at + 1)
        local = EMAIL_LOCAL_REVERSED.match(text[max(0, at - 64) : at][::-1])
        if domain and local:
            start = at - len(local.group().rstrip("."))
            found.append(_f("email", "pii", (start, domain.end()), "medium", "email address"))
        at = text.find("@", at + 1)
    return found


# --------------------------------------------------------------------------------------------
# Secrets

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
                found.append(_f(kind, "secret", (start, end), "high", detail))
    found += _assignments(text, low)
    if "bearer" in low:
        for m in BEARER.finditer(low):
            found.append(_f("token", "secret", m.span("val"), "high", "bearer token"))
    if "://" in text:
        for m in URL_CREDENTIALS.finditer(text):
            found.append(_f("password", "secret", m.span("val"), "high", "password in a URL"))
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
                found.append(_f(kind, "secret", (start, start + len(value)), "high", detail))
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
                found.append(_f("high_entropy", "secret", (start, end), "medium", detail))
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


# --------------------------------------------------------------------------------------------
# Prompt injection

_SENTENCE_START = frozenset(".!?:;\n\"'(*>-`")
_EXFIL_PARAMS = frozenset(
    re.findall(
        r"\w+",
        "data d exfil leak payload secret secrets prompt history conversation chat context memory "
        "password pwd ssn card cc apikey api_key creds credentials dump",
    )
)


def detect_injection(text: str, low: str) -> list[Finding]:
    """Instructions addressed to the model and data-carrying links in `text` (`low`: lower-cased
    with offsets intact)."""
    found: list[Finding] = []
    for rule in INJECTION_RULES:
        if rule.gates and not any(gate in low for gate in rule.gates):
            continue
        matches = _anchored(low, rule) if rule.anchors else rule.pattern.finditer(low)
        for m in matches:
            start = m.start()
            if start and low[start].isalpha() and low[start - 1].isalnum():
                continue
            if rule.line_start and low[low.rfind("\n", 0, start) + 1 : start].strip(" \t>"):
                continue
            if rule.name == "act_as" and low[start] != "p" and not _addressed(low, start):
                continue  # "my wife will act as my representative": not addressed to the model
            found.append(_f(rule.type, "injection", m.span(), rule.severity, rule.detail))
    if "](" in text or "<img" in low:
        found += _exfiltration(text, low)
    return found


def _anchored(low: str, rule: InjectionRule) -> list[re.Match[str]]:
    """Matches of `rule` that start at one of its anchor words."""
    matches: dict[int, re.Match[str]] = {}
    for anchor in rule.anchors:
        at = low.find(anchor)
        while at != -1:
            if at not in matches and not (at and anchor[0].isalpha() and low[at - 1].isalnum()):
                m = rule.pattern.match(low, at)
                if m:
                    matches[at] = m
            at = low.find(anchor, at + 1)
    return [matches[at] for at in sorted(matches)]


_LEADS = ("please", "now", "you to", "you will", "you must", "you should", "you'll")


def _addressed(low: str, start: int) -> bool:
    """Whether the words before `start` make an imperative addressed to the model."""
    before = low[max(0, start - 40) : start].rstrip()
    return not before or before[-1] in _SENTENCE_START or before.endswith(_LEADS)


def _exfiltration(text: str, low: str) -> list[Finding]:
    """Links that would carry data out when rendered or followed.

    A markdown or HTML image is fetched without a click, so any query value or long opaque
    path segment is flagged (high). A plain link is flagged (medium) only when a query value
    looks templated (`{...}`, `<...>`, `$...`), is very long, or sits under a data-ish name:
    ordinary links with `?id=42` or `?token=` (reset links) are everyday support content.
    """
    found: list[Finding] = []
    for m in EXFIL_LINK.finditer(low):
        start, end = m.span()
        image = m.group("src") is not None or text[start - 1 : start] == "!"
        try:
            parts = urlsplit(text[slice(*m.span("url" if m.group("url") else "src"))])
        except ValueError:  # e.g. an unbalanced "[" in the host
            continue
        query = parse_qsl(parts.query, keep_blank_values=False)
        span = (start - (text[start - 1 : start] == "!"), end + (text[end : end + 1] == ")"))
        if image and (query or any(len(seg) >= 24 for seg in parts.path.split("/"))):
            found.append(_f("exfiltration_link", "injection", span, "high",
                            f"image URL to {parts.hostname} carrying data"))  # fmt: skip
        elif not image and any(_carries_data(k, v) for k, v in query):
            found.append(_f("exfiltration_link", "injection", span, "medium",
                            f"link to {parts.hostname} with data in its query"))  # fmt: skip
    return found


def _carries_data(key: str, value: str) -> bool:
    value = unquote(value)
    return key.lower() in _EXFIL_PARAMS or len(value) >= 64 or any(c in value for c in "{}<>$[]")


# --------------------------------------------------------------------------------------------
# Protected attributes


def detect_protected(low: str) -> list[Finding]:
    """Protected attributes and their proxies in `low` (a lower-cased text)."""
    found: list[Finding] = []
    for m in PROTECTED.finditer(low):
        severity, detail = PROTECTED_GROUPS[m.lastgroup or ""]
        found.append(_f("protected_attribute", "protected", m.span(), severity, detail))
    return found
