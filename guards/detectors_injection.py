"""Prompt-injection detection: instructions addressed to the model and data-carrying links."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

from guards.detectors import Finding, finding
from guards.patterns_injection import EXFIL_LINK, INJECTION_RULES, InjectionRule

__all__ = ["detect_injection"]

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
            found.append(finding(rule.type, "injection", m.span(), rule.severity, rule.detail))
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
            detail = f"image URL to {parts.hostname} carrying data"
            found.append(finding("exfiltration_link", "injection", span, "high", detail))
        elif not image and any(_carries_data(k, v) for k, v in query):
            detail = f"link to {parts.hostname} with data in its query"
            found.append(finding("exfiltration_link", "injection", span, "medium", detail))
    return found


def _carries_data(key: str, value: str) -> bool:
    value = unquote(value)
    return key.lower() in _EXFIL_PARAMS or len(value) >= 64 or any(c in value for c in "{}<>$[]")
