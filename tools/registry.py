"""Tool registry: every tool by name, and scoped views that show an agent only its own tools."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator

from tools.spec import ToolConfigError, ToolSpec

__all__ = ["ToolRegistry"]


class ToolRegistry:
    """An immutable set of tool contracts, looked up by name."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ToolConfigError(
                    f"tool `{spec.name}` is registered twice; names must be unique"
                )
            self._specs[spec.name] = spec

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def names(self) -> frozenset[str]:
        """Names of all tools here."""
        return frozenset(self._specs)

    def get(self, name: str) -> ToolSpec | None:
        """The contract named `name`, or None."""
        return self._specs.get(name)

    def scoped(self, names: Iterable[str]) -> ToolRegistry:
        """A view with only `names`; refuses names that are not registered."""
        wanted = list(names)
        missing = [n for n in wanted if n not in self._specs]
        if missing:
            raise ToolConfigError(
                f"unknown tool(s) {missing!r}; registered tools are {sorted(self._specs)!r}"
            )
        return ToolRegistry(self._specs[n] for n in wanted)

    def visible(self, granted: frozenset[str] | None) -> ToolRegistry:
        """The tools whose every required scope is in `granted` (None grants every scope)."""
        if granted is None:
            return self
        return ToolRegistry(spec for spec in self._specs.values() if spec.scopes <= granted)

    def unknown_tool_message(self, name: str) -> str:
        """An actionable message for a call to a tool that does not exist here."""
        available = ", ".join(f"`{n}`" for n in sorted(self._specs)) or "none"
        close = difflib.get_close_matches(name, sorted(self._specs), n=1, cutoff=0.5)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        return f"no tool `{name}`; available: {available}.{hint}"
