"""Findings, and the PII and protected-attribute detectors behind the content scanner.

Each `detect_*` function (here, in `guards.detectors_secret` and in
`guards.detectors_injection`) returns its findings most specific first, overlaps included; the
scanner (`guards.scanners`) chooses which run and reduces the overlaps.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from guards.patterns import Severity
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

__all__ = [
    "Category",
    "Finding",
    "detect_pii",
    "detect_protected",
    "finding",
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


def finding(
    kind: str, category: Category, span: tuple[int, int], severity: Severity, detail: str
) -> Finding:
    """A `Finding` from positional parts (keeps the detectors' many call sites short)."""
    return Finding(type=kind, category=category, span=span, severity=severity, detail=detail)


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
            found.append(finding("ip_address", "pii", m.span(), "low", "IPv6 address"))
    return found


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
        return [finding("iban", "pii", (start, end), "high", f"IBAN ({raw[:2]})")]
    compact = raw.replace(" ", "").replace("-", "")
    if group == "nino" and nino_ok(compact):
        return [finding("national_id", "pii", (start, end), "high", "UK National Insurance number")]
    if group == "nie" and dni_ok(compact):
        return [finding("national_id", "pii", (start, end), "high", "Spanish NIE")]
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
            return [finding("credit_card", "pii", (start, end), "high", detail)]
    elif group in _NATIONAL:
        valid = {"ssn": ssn_ok, "sin": luhn_ok, "dni": dni_ok}[group]
        if valid(digits if group != "dni" else raw.replace("-", "")):
            return [finding("national_id", "pii", (start, end), "high", _NATIONAL[group])]
    elif group == "ipv4":
        octets = raw.split(".")
        if all(int(o) <= 255 and (o == "0" or o[0] != "0") for o in octets):
            return [finding("ip_address", "pii", (start, end), "low", "IPv4 address")]
    elif group == "phone" and 8 <= len(digits) <= 15:
        return [finding("phone", "pii", (start, end), "medium", "phone number")]
    return []


def _emails(text: str) -> list[Finding]:
    found: list[Finding] = []
    at = text.find("@")
    while at != -1:
        domain = EMAIL_DOMAIN.match(text, at + 1)
        local = EMAIL_LOCAL_REVERSED.match(text[max(0, at - 64) : at][::-1])
        if domain and local:
            start = at - len(local.group().rstrip("."))
            found.append(finding("email", "pii", (start, domain.end()), "medium", "email address"))
        at = text.find("@", at + 1)
    return found


# --------------------------------------------------------------------------------------------
# Protected attributes


def detect_protected(low: str) -> list[Finding]:
    """Protected attributes and their proxies in `low` (a lower-cased text)."""
    found: list[Finding] = []
    for m in PROTECTED.finditer(low):
        severity, detail = PROTECTED_GROUPS[m.lastgroup or ""]
        found.append(finding("protected_attribute", "protected", m.span(), severity, detail))
    return found
