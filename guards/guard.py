"""The action guard: decides allow / deny / escalate / halt for one proposed action."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from guards.base import KillSwitch, KillTarget, PolicyEngine, PolicyRequest
from guards.breaker import BreakerPolicy
from guards.egress import EgressPolicy
from guards.limits import LIMITS_POLICY, RunLimits
from guards.loops import LoopPolicy
from guards.request import ActionRequest
from guards.scanners import ContentScanner
from guards.spend import SpendPolicy
from guards.tenants import TenantDirectory
from guards.verdict import PolicyRef, Verdict
from guards.zones import RiskThresholds

__all__ = ["ActionGuard"]

KILL_POLICY = PolicyRef(id="kill-switch", version="1")
ALLOWLIST_POLICY = PolicyRef(id="tool-allowlist", version="1")
SIDE_EFFECT_POLICY = PolicyRef(id="side-effect-budget", version="1")
TAINT_POLICY = PolicyRef(id="taint", version="1")
ENGINE_FAILURE = PolicyRef(id="policy-engine-fail-closed", version="1")


def _did_you_mean(name: str, candidates: frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.5)
    return f" Did you mean `{close[0]}`?" if close else ""


@dataclass(frozen=True, kw_only=True)
class ActionGuard:
    """Evaluates a proposal in a fixed order; the first layer that stops it decides:

    kill switch → run limits → tool allow-list → side-effect budget → loops → circuit breaker →
    policy-as-code → egress scan → taint → risk zone x confidence.

    Escalations from policies, taint and zone are gathered into one request for a human.
    When re-checking an action a human approved (`request.approved_by`), only denials and halts
    still apply: a permission revoked while the run waited must not survive the resume.
    """

    limits: RunLimits = RunLimits()
    """Hard caps on steps, tokens, money and time."""
    risk: RiskThresholds = RiskThresholds()
    """Zone x confidence rules for tenants without their own."""
    tenants: TenantDirectory | None = None
    """Per-tenant rules; None: every tenant uses `risk`."""
    policy: PolicyEngine | None = None
    """Policy-as-code (Rego bundle or Python rules)."""
    kill_switch: KillSwitch | None = None
    """Checked before every action."""
    loops: LoopPolicy = LoopPolicy()
    """Repeated-proposal detection."""
    breaker: BreakerPolicy = BreakerPolicy()
    """Per-tool circuit breaker."""
    egress: EgressPolicy | None = None
    """What may leave the system in outbound tool arguments and final answers."""
    scanner: ContentScanner | None = None
    """Scans user input and tool outputs for injected instructions (taint) and PII."""
    spend: SpendPolicy = SpendPolicy()
    """Budget buckets and thresholds for model calls."""

    def killed(self, target: KillTarget) -> Verdict | None:
        """Halt if a kill covers `target`; an unreachable kill switch counts as killed."""
        if self.kill_switch is None:
            return None
        try:
            record = self.kill_switch.check(target)
        except Exception as error:  # fail closed: a switch we cannot read may be pulled
            return Verdict.halt(
                f"kill switch unreachable, stopping to be safe: {error}", policies=(KILL_POLICY,)
            )
        if record is None:
            return None
        return Verdict.halt(
            f"killed ({record.scope}) by {record.requester}: {record.reason}",
            policies=(KILL_POLICY,),
        )

    def evaluate(self, request: ActionRequest) -> Verdict:
        """Decide one proposed action. Never raises for bad proposals: they get a verdict."""
        target = KillTarget(tenant=request.tenant, workflow=request.workflow, run_id=request.run_id)
        stopped = self.killed(target) or self.limits.check(request.usage)
        if stopped is not None:
            return stopped
        refused = self._scope(request)
        if refused is None and request.approved_by is None:
            # A re-check is the same proposal again, not a repeat: the loop check ran before.
            refused = self.loops.check_repeat(request.history, request.tool, request.args)
        if refused is None:
            refused = self.breaker.check(request.breakers, request.tool, now=request.now)
        if refused is not None:
            return refused
        return self._judge(request)

    def _scope(self, request: ActionRequest) -> Verdict | None:
        if request.tool not in request.allowed_tools:
            listed = ", ".join(f"`{t}`" for t in sorted(request.allowed_tools)) or "none"
            return Verdict.deny(
                f"agent `{request.agent}` has no tool `{request.tool}`; its tools are: {listed}."
                + _did_you_mean(request.tool, request.allowed_tools),
                policies=(ALLOWLIST_POLICY,),
            )
        if request.writes and request.tool not in request.write_tools:
            return Verdict.deny(
                f"tool `{request.tool}` has side effects ({request.side_effect}) but workflow "
                f"`{request.workflow}` does not allow it to write; its side-effect budget is: "
                f"{', '.join(sorted(request.write_tools)) or 'no writes'}.",
                policies=(SIDE_EFFECT_POLICY,),
            )
        return None

    def _judge(self, request: ActionRequest) -> Verdict:
        """Policies, egress, taint and zone: deny, or gather escalations, or allow."""
        policies: list[PolicyRef] = [LIMITS_POLICY, ALLOWLIST_POLICY, SIDE_EFFECT_POLICY]
        escalations: list[str] = []
        notes: list[str] = []
        tenant = self.tenants.get(request.tenant) if self.tenants else None
        if self.policy is not None:
            decision = self.policy.evaluate(self._policy_request(request, tenant))
            policies += decision.policies
            if decision.errors:
                policies.append(ENGINE_FAILURE)
                failure = f"policy evaluation failed ({'; '.join(decision.errors)})"
                if request.writes:
                    return Verdict.deny(
                        f"{failure}; side effects are refused until it is fixed",
                        policies=tuple(policies),
                    )
                notes.append(f"{failure}; read-only action allowed")
            if decision.deny:
                hint = (
                    f" Remediation: {' '.join(decision.remediation)}"
                    if decision.remediation
                    else ""
                )
                return Verdict.deny("; ".join(decision.deny) + hint, policies=tuple(policies))
            escalations += decision.escalate
        args = None
        if self.egress is not None and request.egress:
            screened = self.egress.screen_args(request.args)
            policies.append(screened.policy)
            if screened.blocked:
                return Verdict.deny(screened.blocked, policies=tuple(policies))
            if screened.redactions:
                args = screened.args
                notes.append(f"egress: redacted {', '.join(screened.redactions)}")
        if request.taint and request.writes:
            policies.append(TAINT_POLICY)
            escalations.append(
                f"the run is tainted ({request.taint[0]}); side effects need a human"
            )
        risk = tenant.risk if tenant else self.risk
        zoned = risk.decide(request.zone, request.confidence, request.tool)
        policies += zoned.policies
        if zoned.kind == "escalate":
            escalations = [*zoned.reasons, *escalations]
        else:
            notes = [*zoned.reasons, *notes]
        if escalations and request.approved_by is None:
            return Verdict.escalate(
                zoned.zone or "red", tuple(escalations), policies=tuple(policies), args=args
            )
        if request.approved_by is not None:
            notes.insert(0, f"approved by {request.approved_by}; re-checked")
        return Verdict.allow(
            policies=tuple(policies),
            zone=zoned.zone,
            reasons=tuple(notes),
            args=args,
            decided_by=request.approved_by or "guard",
        )

    @staticmethod
    def _policy_request(request: ActionRequest, tenant: object) -> PolicyRequest:
        usage = request.usage
        return PolicyRequest(
            tenant=request.tenant,
            workflow=request.workflow,
            agent=request.agent,
            tool=request.tool,
            args=request.args,
            risk=request.zone or "red",
            side_effect=request.side_effect or "irreversible",
            confidence=request.confidence,
            usage={
                "steps": usage.steps,
                "tokens": usage.tokens,
                "cost_usd": usage.cost_usd,
                "seconds": usage.seconds,
            },
            context={
                "run_id": request.run_id,
                "tainted": bool(request.taint),
                "tenant": dict(getattr(tenant, "data", None) or {}),
            },
        )
