"""Guards: decide whether each proposed action may run (the platform decides, not the model)."""

from guards.base import (
    BudgetCaps,
    BudgetKey,
    BudgetLedger,
    Charge,
    KillRecord,
    KillScope,
    KillSwitch,
    KillTarget,
    PolicyDecision,
    PolicyEngine,
    PolicyMeta,
    PolicyRequest,
    PolicyScope,
    Reservation,
)
from guards.breaker import BreakerPolicy, BreakerState
from guards.budget import BudgetBackendError, InMemoryBudgetLedger
from guards.bundle import PolicyBundle, load_bundle, sign_bundle
from guards.egress import EgressPolicy, Screened
from guards.errors import GuardConfigError, PolicyBundleError, UnknownTenantError
from guards.guard import ActionGuard
from guards.killswitch import InMemoryKillSwitch, KillSwitchBackendError
from guards.limits import RunLimits, UsageSnapshot
from guards.loops import LoopPolicy, proposal_fingerprint
from guards.policy import PythonRule, PythonRulesEngine, RuleResult, rule
from guards.redis_budget import RedisBudgetLedger
from guards.redis_killswitch import RedisKillSwitch
from guards.rego import RegoPolicyEngine
from guards.request import ActionRequest
from guards.scanners import ContentScanner, Finding, redact, redact_args
from guards.spend import SpendPolicy, ThresholdAction
from guards.sqlite_killswitch import SqliteKillSwitch
from guards.tenants import TenantDirectory, TenantPolicy
from guards.verdict import PolicyRef, Verdict, VerdictKind
from guards.zones import RiskThresholds, ZoneRule

__all__ = [
    "ActionGuard",
    "ActionRequest",
    "BreakerPolicy",
    "BreakerState",
    "BudgetBackendError",
    "BudgetCaps",
    "BudgetKey",
    "BudgetLedger",
    "Charge",
    "ContentScanner",
    "EgressPolicy",
    "Finding",
    "GuardConfigError",
    "InMemoryBudgetLedger",
    "InMemoryKillSwitch",
    "KillRecord",
    "KillScope",
    "KillSwitch",
    "KillSwitchBackendError",
    "KillTarget",
    "LoopPolicy",
    "PolicyBundle",
    "PolicyBundleError",
    "PolicyDecision",
    "PolicyEngine",
    "PolicyMeta",
    "PolicyRef",
    "PolicyRequest",
    "PolicyScope",
    "PythonRule",
    "PythonRulesEngine",
    "RedisBudgetLedger",
    "RedisKillSwitch",
    "RegoPolicyEngine",
    "Reservation",
    "RiskThresholds",
    "RuleResult",
    "RunLimits",
    "Screened",
    "SpendPolicy",
    "SqliteKillSwitch",
    "TenantDirectory",
    "TenantPolicy",
    "ThresholdAction",
    "UnknownTenantError",
    "UsageSnapshot",
    "Verdict",
    "VerdictKind",
    "ZoneRule",
    "load_bundle",
    "proposal_fingerprint",
    "redact",
    "redact_args",
    "rule",
    "sign_bundle",
]
