"""Exceptions of the guard plane: developer mistakes in guard configuration."""

__all__ = ["GuardConfigError"]


class GuardConfigError(ValueError):
    """A guard was configured with values that cannot work (names the field and the value)."""
