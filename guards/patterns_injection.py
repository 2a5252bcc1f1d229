"""Prompt-injection rules and the exfiltration-link pattern, over lower-cased text.

Speed notes: see `guards.patterns`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from guards.patterns import Severity

__all__ = ["EXFIL_LINK", "INJECTION_RULES", "InjectionRule"]

# A rule with anchors is tried only where one of its anchor words starts a word (`re.match` at
# that offset): a handful of attempts per KB instead of a scan of every position. A rule
# without anchors is searched for when one of its gates (lower-case substrings) occurs.

_NOUNS = (
    r"(?:instructions?|prompts?|directions|directives?|rules|guidelines|guardrails|constraints"
    r"|restrictions|programming|context|commands)"
)
_ADJ = r"(?:previous|prior|above|earlier|preceding|foregoing|original|initial|system|developer|old)"
_VERBS = ("reveal", "show", "print", "repeat", "output", "display", "tell", "leak", "dump")


@dataclass(frozen=True, kw_only=True)
class InjectionRule:
    """One family of instructions addressed to the model."""

    name: str
    """Stable rule name (tests and docs refer to it)."""
    pattern: re.Pattern[str]
    """Matched over lower-cased text."""
    anchors: tuple[str, ...] = ()
    """Words the match starts with; empty: search the whole text when a gate occurs."""
    gates: tuple[str, ...] = ()
    """Substrings of which one must occur for the rule to run at all (empty: always)."""
    line_start: bool = False
    """Only spaces, tabs or `>` (a quoted mail) may precede the match on its line."""
    type: str = "injection"
    """Finding type: `injection` or `role_override`."""
    severity: Severity = "medium"
    """Finding severity."""
    detail: str = ""
    """Finding detail."""


def _rule(name: str, pattern: str, **fields: Any) -> InjectionRule:
    return InjectionRule(name=name, pattern=re.compile(pattern, re.MULTILINE), **fields)


INJECTION_RULES: tuple[InjectionRule, ...] = (
    _rule(
        "ignore",
        rf"(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|every)\s+(?:of\s+)?)?"
        rf"(?:(?:(?:the|these|those|its|your)\s+)?(?:{_ADJ}[\s,]+)+{_NOUNS}"
        rf"|your\s+{_NOUNS}|all\s+{_NOUNS}|(?:everything|all)\s+(?:above|before|prior))\b"
        r"(?!\s+(?:i|we)\s)",  # "ignore the previous instructions I sent": a user correcting
        anchors=("ignore", "disregard", "forget", "override", "bypass"),
        severity="high",
        detail="instruction to ignore previous instructions",
    ),
    _rule(
        "you_are_now",
        r"you\s+are\s+now\s+(?:(?:an?|the|my)\s+(?:[a-z-]+\s+){0,2}?(?:ai|assistant|bot|chatbot"
        r"|model|llm|persona|character|hacker|admin(?:istrator)?|dan)\b|dan\b|in\s+(?:[a-z]+\s+)?"
        r"(?:developer|god|admin|debug|jailbreak|unrestricted|dan)\s+mode|jailbroken|unrestricted"
        r"|unfiltered|uncensored|free\s+(?:from|of)\s+(?:all|any|your)|no\s+longer\s+(?:bound"
        r"|restricted|limited|an?\s+(?:ai|assistant)))",
        gates=("are now",),
        detail="persona override (`you are now ...`)",
    ),
    _rule(
        "act_as",  # the scanner also wants a sentence start or "please/you will/..." before it
        r"(?:act|behave|roleplay|role-play)\s+as\b|pretend\s+(?:to\s+be|(?:that\s+)?you\s+are"
        r"|you're)\b",
        anchors=("act", "behave", "role", "pretend"),
        detail="role-play instruction addressed to the model",
    ),
    _rule(
        "reveal",
        rf"(?:{'|'.join(_VERBS)}|give|share|expose|what(?:'s|\s+is|\s+are|\s+were))\s+"
        r"(?:me\s+|us\s+)?(?:your\s+(?:(?:full|entire|complete|original|initial|hidden|secret"
        r"|exact|system)\s+)*(?:system\s+prompt|system\s+message|prompt|instructions)"
        r"|the\s+(?:(?:full|entire|complete|exact)\s+)*(?:(?:system|hidden|secret|initial|original"
        r"|developer)\s+(?:prompt|instructions)|system\s+message))\b"
        r"|repeat\s+(?:the\s+|all\s+)?(?:words|text|everything)\s+above",
        anchors=(*_VERBS, "give", "share", "expose", "what"),
        gates=("prompt", "instruction", "above", "system message"),
        detail="request to reveal the system prompt",
    ),
    _rule(
        "tool_forcing",
        r"(?:call|invoke|execute|trigger|run)\s+(?:the\s+)?[`'\"]?[a-z][a-z0-9]*(?:_[a-z0-9]+)+"
        r"[`'\"]?(?:\s+(?:tool|function))?"
        r"|use\s+the\s+[`'\"]?[a-z][a-z0-9_]*[`'\"]?\s+(?:tool|function)\b",
        anchors=("call", "invoke", "execute", "trigger", "run", "use"),
        gates=("_", "tool", "function"),
        detail="instruction to call a tool",
    ),
    _rule(
        "chat_tokens",
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|start_header_id|end_header_id"
        r"|eot_id)\|>|\[/?inst\]|<</?sys>>|</?(?:system|system_prompt|sys)>",
        gates=("<|", "inst]", ">"),
        type="role_override",
        severity="high",
        detail="chat-template role marker",
    ),
    _rule(
        "role_line",
        r"(?:system|developer|admin)(?:\s+(?:prompt|message|override|note))?\s*:[ \t]*"
        r"(?:you\b|your\b|ignore|disregard|forget|new\s+instructions?|from\s+now|always\b"
        r"|never\b|do\s+not|don't|override|reveal|the\s+assistant|assistant\b)",
        anchors=("system", "developer", "admin"),
        line_start=True,
        type="role_override",
        severity="high",
        detail="fake system/developer turn",
    ),
    _rule(
        "role_heading",
        r"#{1,6}[ \t]*(?:system(?:\s+(?:prompt|message|override))?|new\s+instructions"
        r"|admin\s+override)[ \t]*:?[ \t]*$",
        anchors=("#",),
        line_start=True,
        type="role_override",
        detail="fake `### System` section",
    ),
)
"""Instructions addressed to the model, by family."""

EXFIL_LINK = re.compile(
    r"\[[^\]\n]{0,200}\]\(\s*<?(?P<url>https?://[^\s)>]+)"
    r"|<img\b[^>]{0,200}?\bsrc\s*=\s*[\"']?(?P<src>https?://[^\"'\s>]+)"
)
"""Markdown links (images when a `!` precedes them) and HTML images, over lower-cased text;
the scanner reads the URL from the original text at the same offsets."""
