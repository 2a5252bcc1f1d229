"""Tenants: who may run, with which risk appetite and which budget."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guards.base import BudgetCaps
from guards.errors import GuardConfigError, UnknownTenantError
from guards.zones import RiskThresholds, ZoneRule

__all__ = ["TenantDirectory", "TenantPolicy"]


@dataclass(frozen=True, kw_only=True)
class TenantPolicy:
    """One tenant's guard settings."""

    name: str
    """Tenant id, as passed in the run context."""
    risk: RiskThresholds = RiskThresholds()
    """How risk zone and confidence combine for this tenant."""
    budget: BudgetCaps | None = None
    """Caps on the tenant's shared budget bucket (all runs together); None: uncapped."""
    data: Mapping[str, Any] | None = None
    """Tenant settings policies may read (e.g. `refund_limit`), passed as `input.context.tenant`."""
    scopes: frozenset[str] | None = None
    """Tool permission scopes granted (a tool needing others is invisible to the tenant's
    agents and refused); None grants every scope."""


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str
    approve_below: float = 0.0
    flag_below: float = 0.0


class _Caps(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens: int | None = Field(default=None, ge=0)
    steps: int | None = Field(default=None, ge=0)
    usd: float | None = Field(default=None, ge=0)


class _Tenant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    risk: dict[str, _Rule] = Field(default_factory=dict)
    require_confidence: bool = False
    budget: _Caps | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    scopes: list[str] | None = None


class TenantDirectory:
    """The configured tenants. A run for a tenant not listed here is refused at intake."""

    def __init__(self, tenants: Iterable[TenantPolicy]):
        self._tenants = {tenant.name: tenant for tenant in tenants}
        if not self._tenants:
            raise GuardConfigError("TenantDirectory needs at least one TenantPolicy")

    @property
    def names(self) -> list[str]:
        """Configured tenant ids, sorted."""
        return sorted(self._tenants)

    def get(self, name: str) -> TenantPolicy:
        """The tenant `name`.

        Raises:
            UnknownTenantError: naming the tenant and the configured ones.
        """
        try:
            return self._tenants[name]
        except KeyError:
            raise UnknownTenantError(
                f"tenant {name!r} is not configured; known tenants: {', '.join(self.names)}. "
                "Pass one of them in the run context, or add it to the tenant configuration."
            ) from None

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any], *, source: str = "tenant config"
    ) -> TenantDirectory:
        """Tenants from `{"<tenant>": {"risk": {"yellow": {...}}, "budget": {...}, "data": {...},
        "scopes": [...]}}` (`scopes` omitted: every tool scope granted).

        Raises:
            GuardConfigError: naming the tenant and field at fault.
        """
        tenants = []
        for name, body in raw.items():
            try:
                parsed = _Tenant.model_validate(body)
                unknown = set(parsed.risk) - {"green", "yellow", "red"}
                if unknown:
                    raise GuardConfigError(f"unknown zone(s) {sorted(unknown)} in `risk`")
                risk = RiskThresholds(
                    **{zone: ZoneRule(**rule.model_dump()) for zone, rule in parsed.risk.items()},  # type: ignore[arg-type]
                    require_confidence=parsed.require_confidence,
                )
                budget = BudgetCaps(**parsed.budget.model_dump()) if parsed.budget else None
            except ValidationError as error:
                problems = "; ".join(
                    f"`{'.'.join(str(p) for p in e['loc'])}`: {e['msg']} (got {e['input']!r})"
                    for e in error.errors(include_url=False)
                )
                raise GuardConfigError(f"{source}: tenant {name!r}: {problems}") from None
            except GuardConfigError as error:
                raise GuardConfigError(f"{source}: tenant {name!r}: {error}") from None
            scopes = frozenset(parsed.scopes) if parsed.scopes is not None else None
            tenants.append(
                TenantPolicy(name=name, risk=risk, budget=budget, data=parsed.data, scopes=scopes)
            )
        return cls(tenants)

    @classmethod
    def from_file(cls, path: Path) -> TenantDirectory:
        """Tenants from a JSON file (see `from_mapping`)."""
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise GuardConfigError(f"cannot read tenant config {str(path)!r}: {error}") from None
        if not isinstance(raw, dict):
            raise GuardConfigError(f"{path}: expected a JSON object of tenant id → settings")
        return cls.from_mapping(raw, source=str(path))
