"""The support example's guard plane: tenants, the Rego policy bundle, scanners and budgets."""

from __future__ import annotations

from pathlib import Path

from graphs.services import Services
from guards import (
    ActionGuard,
    ContentScanner,
    EgressPolicy,
    LoopPolicy,
    RegoPolicyEngine,
    SpendPolicy,
    TenantDirectory,
)

__all__ = ["POLICY_DIR", "TENANTS_FILE", "support_guard"]

POLICY_DIR = Path(__file__).parent / "policies"
"""The support policy bundle (Rego + data + a hashed manifest)."""
TENANTS_FILE = Path(__file__).parent / "tenants.json"
"""Tenants allowed to run the support workflow, with their risk appetite and budgets."""


def support_guard(
    services: Services,
    *,
    policy_dir: Path = POLICY_DIR,
    policy_key: bytes | None = None,
    tenants_file: Path = TENANTS_FILE,
) -> ActionGuard:
    """The support workflow's guard plane.

    Args:
        services: the shared kill switch and budget ledger.
        policy_dir: the policy bundle to load (refused if tampered with).
        policy_key: HMAC key the bundle must be signed with, when set.
        tenants_file: tenant configuration (JSON).

    Raises:
        PolicyBundleError: the bundle does not load (names file and line).
        GuardConfigError: the tenant configuration is wrong (names tenant and field).
    """
    scanner = ContentScanner()
    return ActionGuard(
        tenants=TenantDirectory.from_file(tenants_file),
        policy=RegoPolicyEngine.from_directory(policy_dir, key=policy_key),
        kill_switch=services.kill_switch,
        scanner=scanner,
        egress=EgressPolicy(scanner=scanner),
        spend=SpendPolicy(ledger=services.ledger, on_threshold="fallback"),
        loops=LoopPolicy(max_repeats=2),
    )
