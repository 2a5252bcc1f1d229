"""Secret regex tables (vendor key shapes, `key=value` fields, entropy candidates) and entropy.

Speed notes: see `guards.patterns`.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "BEARER",
    "PKEY_BODY",
    "PKEY_END",
    "SECRET_KEYWORDS",
    "SECRET_RULES",
    "TOKEN",
    "URL_CREDENTIALS",
    "WORD_RUN",
    "shannon_entropy",
]

# Vendor rules are (gate substring, pattern, type, detail). A rule runs only when its gate is
# present.

SECRET_RULES: tuple[tuple[str, re.Pattern[str], str, str], ...] = tuple(
    (gate, re.compile(pattern), kind, detail)
    for gate, pattern, kind, detail in (
        ("AKIA", r"AKIA[A-Z0-9]{16}(?![A-Za-z0-9])", "api_key", "AWS access key id"),
        ("ASIA", r"ASIA[A-Z0-9]{16}(?![A-Za-z0-9])", "api_key", "AWS temporary access key id"),
        ("gh", r"gh[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9])", "token", "GitHub token"),
        ("github_pat_", r"github_pat_[A-Za-z0-9_]{60,255}", "token", "GitHub fine-grained token"),
        ("xox", r"xox[abposr]-[A-Za-z0-9-]{10,250}", "token", "Slack token"),
        ("hooks.slack.com", r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}", "token",
         "Slack webhook URL"),
        ("sk-", r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}", "api_key",
         "OpenAI-style secret key (sk-...)"),
        ("k_live_", r"[sr]k_live_[A-Za-z0-9]{16,}", "api_key", "Stripe live secret key"),
        ("k_test_", r"[sr]k_test_[A-Za-z0-9]{16,}", "api_key", "Stripe test secret key"),
        ("AIza", r"AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])", "api_key", "Google API key"),
        ("eyJ", r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", "token",
         "JSON Web Token"),
        ("-----BEGIN", r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----", "private_key",
         "private key block"),
    )
)  # fmt: skip
"""Vendor-shaped secrets, most specific first."""

PKEY_END = re.compile(r"-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----")
"""Closing line of a private key block."""
PKEY_BODY = re.compile(r"(?:\r?\n(?:[A-Za-z0-9+/=]{16,}|[A-Za-z-]+: [^\n]*))*")
"""Body lines after a header when the END line is missing (a truncated paste)."""

SECRET_KEYWORDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (
        word,
        re.compile(
            word + r"""["']?[ \t]*(?P<sep>=>|[:=])[ \t]*["']?(?P<val>[^\s"',;<>)\]}]{4,512})"""
        ),
    )
    for word in ("password", "passwd", "passphrase", "pwd", "secret", "key", "token")
)
"""`password=...`, `"api_key": "..."` over lower-cased text, one literal-led pattern per word
(the scanner reads the rest of the field name backwards); the span is the value only."""
BEARER = re.compile(r"bearer[ \t]+(?P<val>[a-z0-9._~+/-]{16,}=*)")
"""`Authorization: Bearer <token>` over lower-cased text."""
URL_CREDENTIALS = re.compile(r"://[^\s:/@]{1,64}:(?P<val>[^\s:/@]{3,128})@")
"""`scheme://user:password@host`: the password is the secret."""
TOKEN = re.compile(r"[A-Za-z0-9+/_-]+=*")
"""Base64/hex-ish runs inside a long whitespace-delimited word (entropy candidates)."""
WORD_RUN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
"""camelCase words, acronyms and numbers: long runs of them mean an identifier, not a key."""


def shannon_entropy(text: str) -> float:
    """Shannon entropy of the characters of `text`, in bits per character."""
    size = len(text)
    return math.log2(size) - sum(n * math.log2(n) for n in map(text.count, set(text))) / size
