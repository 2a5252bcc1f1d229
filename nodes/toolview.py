"""Which tools an agent may see and call for a tenant: its own list, cut by the tenant's scopes."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from guards import TenantDirectory, UnknownTenantError
from tools import ToolRegistry

__all__ = ["ToolViews"]


class ToolViews:
    """Scoped tool views, computed once per (agent, tenant) and cached.

    Args:
        agent_tools: each specialist's own tools (already scoped to the names it lists).
        tenants: the tenant directory whose `scopes` cut the views; None grants every scope.
    """

    def __init__(
        self, agent_tools: Mapping[str, ToolRegistry], tenants: TenantDirectory | None = None
    ) -> None:
        self._agent_tools = dict(agent_tools)
        self._tenants = tenants
        self._cache: dict[tuple[str, str], ToolRegistry] = {}
        self._lock = threading.Lock()

    def for_agent(self, agent: str, tenant: str) -> ToolRegistry:
        """The tools `agent` sees when working for `tenant` (none for an unknown agent)."""
        key = (agent, tenant)
        view = self._cache.get(key)
        if view is None:
            own = self._agent_tools.get(agent, ToolRegistry())
            view = own.visible(self._granted(tenant))
            with self._lock:
                self._cache[key] = view
        return view

    def _granted(self, tenant: str) -> frozenset[str] | None:
        if self._tenants is None:
            return None
        try:
            return self._tenants.get(tenant).scopes
        except UnknownTenantError:  # intake refuses the run; show such a tenant nothing
            return frozenset()
