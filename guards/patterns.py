"""Shared ground of the scanner pattern tables (`patterns_*` modules): severity and speed rules.

Speed notes (the scanners run on every input, tool output and outbound argument):

- Each hot pattern starts with a literal, a character class, or alternatives that each start
  with a literal, so `re` skips ahead with its prefix scan instead of trying every position
  (alternatives starting with a class, or a leading lookbehind, make it 3-4x slower). "Not
  preceded by" conditions therefore come after the first character (`[0-9](?<![\\w.][0-9])`).
- Injection rules with anchors are only tried (`re.match`) where an anchor word occurs.
- Case-insensitive rules run case-sensitively over the lower-cased text (about twice as fast
  as `re.IGNORECASE`); the scanner keeps offsets aligned (see `scanners._lowered`).
- Digits are `[0-9]`, not `\\d`: validators do arithmetic on ASCII digits only.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Severity"]

Severity = Literal["low", "medium", "high"]
"""How bad a finding is."""
