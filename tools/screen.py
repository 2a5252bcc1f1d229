"""Argument screening before validation: size, depth and characters no honest call needs."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MAX_ARG_DEPTH", "MAX_KEY_CHARS", "render_path", "screen_arguments"]

MAX_ARG_DEPTH = 8
"""Levels of objects and arrays allowed, the arguments object itself being level 1."""
MAX_KEY_CHARS = 256
"""Longest argument name (object key) allowed at any depth."""
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
"""Integers are refused outside the signed 64-bit range: no honest argument needs more, SQLite
and most stores overflow beyond it, and past ~4300 digits `json.dumps` raises."""

# Characters no honest argument needs, in values and names alike. Each can make text read
# differently from what it is (bidi controls, invisibles, tags), hide data from a reviewer, or
# break whatever stores the value (NUL, lone surrogates). \t \n \r are allowed in values.
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_BIDI = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_INVISIBLE = r"\u00ad\u180e\u200b-\u200d\u2060-\u2064\ufeff"
_TAGS = r"\U000e0000-\U000e007f"
_SURROGATES = r"\ud800-\udfff"
_BAD_TEXT = re.compile(f"[{_CONTROLS}{_BIDI}{_INVISIBLE}{_TAGS}{_SURROGATES}]")
_BAD_NAME = re.compile(f"[\t\n\r{_CONTROLS}{_BIDI}{_INVISIBLE}{_TAGS}{_SURROGATES}]")
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")

_C0_NAMES = (
    "NULL", "START OF HEADING", "START OF TEXT", "END OF TEXT", "END OF TRANSMISSION",
    "ENQUIRY", "ACKNOWLEDGE", "BELL", "BACKSPACE", "CHARACTER TABULATION", "LINE FEED",
    "LINE TABULATION", "FORM FEED", "CARRIAGE RETURN", "SHIFT OUT", "SHIFT IN",
    "DATA LINK ESCAPE", "DEVICE CONTROL ONE", "DEVICE CONTROL TWO", "DEVICE CONTROL THREE",
    "DEVICE CONTROL FOUR", "NEGATIVE ACKNOWLEDGE", "SYNCHRONOUS IDLE",
    "END OF TRANSMISSION BLOCK", "CANCEL", "END OF MEDIUM", "SUBSTITUTE", "ESCAPE",
    "FILE SEPARATOR", "GROUP SEPARATOR", "RECORD SEPARATOR", "UNIT SEPARATOR",
)  # fmt: skip
_OTHER_NAMES = {0x7F: "DELETE", 0x85: "NEXT LINE"}
_JSON_TYPES = {
    list: "an array",
    tuple: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}

_Segment = str | int
_Container = Mapping[Any, Any] | list[Any] | tuple[Any, ...]


def screen_arguments(args: object, *, max_chars: int = 16_000) -> str | None:
    """A problem with `args` as a whole, for the model, or None when they may be validated.

    Walks the arguments without recursion (so a 10,000-deep list cannot blow the stack) and
    before anything serialises them. Refuses: anything but a JSON object; nesting deeper than
    `MAX_ARG_DEPTH`; more than `max_chars` characters as JSON (counted as the walk goes, so a
    huge input is refused after at most `max_chars` characters of work); non-string or overlong
    argument names; values JSON cannot carry (sets, bytes, NaN, infinities) and integers
    outside signed 64 bits; control, bidirectional, invisible, tag or surrogate characters in
    any string.
    Text is never rewritten (no NFKC): a suspicious value is refused, not silently changed.

    Args:
        args: the arguments as the model sent them (decoded JSON).
        max_chars: the largest arguments allowed, in characters of compact JSON (non-ASCII
            characters count as one).

    Returns:
        One message naming the offending argument path, what is wrong, the limit or the
        observed value, and what to do; or None.
    """
    if not isinstance(args, Mapping):
        kind = _JSON_TYPES.get(type(args), f"a Python {type(args).__name__}")
        return (
            f'arguments must be a JSON object of named arguments ({{"name": value, ...}}), '
            f"got {kind}; call again with an object"
        )
    size = 2
    stack: list[tuple[_Container, tuple[_Segment, ...], int]] = [(args, (), 1)]
    while stack:
        node, path, depth = stack.pop()
        pairs: Iterable[tuple[Any, Any]]
        if isinstance(node, Mapping):
            named, pairs = True, node.items()
        else:
            named, pairs = False, enumerate(node)
        for key, value in pairs:
            if named:
                if type(key) is not str or len(key) > MAX_KEY_CHARS or _BAD_NAME.search(key):
                    return _name_problem(key, path)
                size += len(key) + 4  # quotes, colon, separator
            else:
                size += 1  # separator
            vtype = type(value)
            if vtype is str or isinstance(value, str):
                size += len(value) + 2
                if size > max_chars:
                    return _too_large(size, max_chars, (*path, key), len(value))
                found = _BAD_TEXT.search(value)
                if found is not None:
                    return _bad_char(f"`{render_path((*path, key))}`", found)
                continue
            if vtype is dict or vtype is list or isinstance(value, (dict, list, tuple)):
                if depth >= MAX_ARG_DEPTH:
                    return _too_deep((*path, key))
                stack.append((value, (*path, key), depth + 1))
                size += 2
            elif vtype is bool or value is None:
                size += 5
            elif (vtype is int and _INT_MIN <= value <= _INT_MAX) or (
                vtype is float and math.isfinite(value)
            ):
                size += len(repr(value))
            else:  # a subclass of a JSON type (an IntEnum), or something JSON cannot carry
                problem = _odd_value(value, (*path, key))
                if problem is not None:
                    return problem
                size += 20
            if size > max_chars:
                return _too_large(size, max_chars, (*path, key), None)
    return None


def _name_problem(key: object, path: tuple[_Segment, ...]) -> str:
    """What is wrong with an object key (an argument name) that failed the fast check."""
    if not isinstance(key, str):
        return (
            f"argument names must be strings, but `{render_path(path)}` has a key of type "
            f"{type(key).__name__} ({key!r:.40}); use the names from the tool schema"
        )
    if len(key) > MAX_KEY_CHARS:
        return (
            f"an argument name in `{render_path(path)}` is {len(key)} chars long (limit "
            f"{MAX_KEY_CHARS}): `{render_path((key,))}`; use the names from the tool schema"
        )
    found = _BAD_NAME.search(key)
    assert found is not None
    return _bad_char(
        f"the argument name `{render_path((*path, key))}`",
        found,
        "use the names from the tool schema",
    )


def _odd_value(value: object, where: tuple[_Segment, ...]) -> str | None:
    """What is wrong with a value that is not plainly a JSON scalar, if anything."""
    if isinstance(value, int) and not isinstance(value, bool):
        if _INT_MIN <= value <= _INT_MAX:
            return None
        digits = int(value.bit_length() * 0.30103) + 1
        shown = str(value) if digits <= 40 else f"an integer of about {digits} digits"
        return (
            f"`{render_path(where)}` is {shown}, outside the signed 64-bit range ({_INT_MIN} to "
            f"{_INT_MAX}) that arguments must fit; send a smaller number"
        )
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        shown = "NaN" if math.isnan(value) else ("-Infinity" if value < 0 else "Infinity")
        return f"`{render_path(where)}` is {shown}, not a finite number; send a real number"
    return (
        f"`{render_path(where)}` holds a Python {type(value).__name__}, which JSON cannot carry; "
        "send a string, number, boolean, null, array or object"
    )


def _too_deep(where: tuple[_Segment, ...]) -> str:
    return (
        f"`{render_path(where)}` nests deeper than {MAX_ARG_DEPTH} levels of objects and arrays "
        "(the limit); flatten the arguments and call again"
    )


def _too_large(size: int, limit: int, where: tuple[_Segment, ...], own: int | None) -> str:
    own_size = f", {own} chars on its own" if own is not None else ""
    return (
        f"arguments are at least {size} chars as JSON, over the limit of {limit} (crossed at "
        f"`{render_path(where)}`{own_size}); send less: shorten or split the value"
    )


def _bad_char(
    what: str, found: re.Match[str], hint: str = "resend the plain text without it"
) -> str:
    return (
        f"{what} contains {_describe(found.group())} at character {found.start()}, an "
        f"invisible or control character no argument needs (it can hide or reorder text); {hint}"
    )


def _describe(char: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`, with names for controls and surrogates too."""
    point = ord(char)
    name = unicodedata.name(char, "")
    if not name:
        if point < len(_C0_NAMES) or point in _OTHER_NAMES:
            label = _C0_NAMES[point] if point < len(_C0_NAMES) else _OTHER_NAMES[point]
            name = f"{label} (a control character)"
        elif 0xD800 <= point <= 0xDFFF:
            name = "(a surrogate code point, not valid Unicode text)"
        else:
            name = "(a control character)"
    return f"U+{point:04X} {name}"


def render_path(path: tuple[_Segment, ...]) -> str:
    """`items[2].name`; odd or long names quoted and shortened, never echoing raw controls or
    backticks (messages quote paths in backticks). The empty path is `(arguments)`."""
    if not path:
        return "(arguments)"
    out = []
    for segment in path:
        if isinstance(segment, int):
            out.append(f"[{segment}]")
        elif _PLAIN_NAME.fullmatch(segment):
            out.append(f".{segment}" if out else segment)
        else:
            shown = segment if len(segment) <= 40 else segment[:40] + "..."
            out.append(f"[{json.dumps(shown)}]".replace("`", "\\u0060"))
    return "".join(out)
