"""Exceptions of the guard plane: developer mistakes in guard configuration."""

from __future__ import annotations

__all__ = ["GuardConfigError", "PolicyBundleError", "UnknownTenantError"]


class GuardConfigError(ValueError):
    """A guard was configured with values that cannot work (names the field and the value)."""


class PolicyBundleError(GuardConfigError):
    """A policy bundle cannot be loaded: a file failed to compile, was tampered with, or the
    manifest is wrong. The message names the file (and line, for compile errors)."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        super().__init__(message)
        self.path = path
        """File at fault, when one is."""
        self.line = line
        """1-based line of a compile error, when known."""


class UnknownTenantError(GuardConfigError):
    """A run names a tenant that is not configured (the message lists the known ones)."""
