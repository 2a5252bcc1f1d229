"""Guards: decide whether each proposed action may run (the platform decides, not the model)."""

from guards.errors import GuardConfigError
from guards.guard import ActionGuard
from guards.limits import RunLimits, UsageSnapshot
from guards.request import ActionRequest
from guards.verdict import PolicyRef, Verdict, VerdictKind

__all__ = [
    "ActionGuard",
    "ActionRequest",
    "GuardConfigError",
    "PolicyRef",
    "RunLimits",
    "UsageSnapshot",
    "Verdict",
    "VerdictKind",
]
