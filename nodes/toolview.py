"""Which tools an agent may see and call for a tenant: its own list, cut by the tenant's scopes."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from guards import TenantDirectory, UnknownTenantError
from tools import ToolRegistry

__all__ = ["ToolViews"]

_NOTHING = ToolRegistry()


class ToolViews:
    """Scoped tool views, computed once per (agent, configured tenant) and cached. Thread-safe.

    The cache holds only tenants the directory lists (so it stays as small as the directory):
    without a directory every tenant sees the agent's whole list, and a tenant the directory
    does not list sees nothing (intake refuses its run anyway).

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
        own = self._agent_tools.get(agent, _NOTHING)
        if self._tenants is None:
            return own
        key = (agent, tenant)
        with self._lock:
            view = self._cache.get(key)
        if view is not None:
            return view
        try:
            granted = self._tenants.get(tenant).scopes
        except UnknownTenantError:  # not cached: arbitrary tenant ids must not grow the cache
            return _NOTHING
        view = own.visible(granted)
        with self._lock:
            return self._cache.setdefault(key, view)
