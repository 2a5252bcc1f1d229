"""The customer-support operations workflow: task boundary, specialists and graph."""

from __future__ import annotations

import re
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import ToolMessage

from graphs.audit import record_policy_bundle
from graphs.orchestrator import OrchestratorBuilder, build_orchestrator
from graphs.services import Services, services_for
from graphs.settings import Settings
from graphs.support.db import SupportDB
from graphs.support.governance import POLICY_DIR, TENANTS_FILE, support_guard
from graphs.support.model import support_model
from graphs.support.preferences import SUPPORT_MEMORY
from graphs.support.tools import make_support_tools
from guards import ActionGuard, RunLimits
from nodes import (
    AgentSpec,
    EntryCondition,
    EscalationPath,
    ExitConditions,
    ModelRouter,
    RunState,
    Workflow,
    load_chat_model,
    this_run,
)
from observability import PriceTable
from tools import ShadowMode

__all__ = ["SUPPORT_WORKFLOW", "build_support_graph", "format_ticket", "support_builder"]


def format_ticket(sender: str, subject: str, body: str) -> str:
    """A ticket as the text the graph receives."""
    return f"From: {sender}\nSubject: {subject}\n\n{body}"


def _ticket_problem(text: str) -> str | None:
    if not re.search(r"^From:\s*\S+@\S+", text, re.M):
        return "a support ticket needs a `From: <email>` line; format it with format_ticket()"
    body = text.split("\n\n", 1)[1].strip() if "\n\n" in text else ""
    if len(body) < 10:
        return f"the ticket body is empty or too short ({len(body)} chars, need at least 10)"
    return None


def _replied(state: RunState) -> bool:
    # Success means the customer got an answer this run: a `send_email` that succeeded.
    _, run = this_run(state.get("messages") or [])
    return any(
        isinstance(m, ToolMessage) and m.name == "send_email" and m.status != "error" for m in run
    )


SUPPORT_WORKFLOW = Workflow(
    name="support",
    entry=EntryCondition(min_chars=10, max_chars=4000, check=_ticket_problem),
    exit=ExitConditions(success=_replied),
    write_tools=frozenset(
        {"remember_preference", "cancel_order", "issue_refund", "draft_email", "send_email"}
    ),
    limits=RunLimits(max_steps=16, max_tokens=60_000, max_usd=0.006, max_seconds=600),
    escalation=EscalationPath(reviewers="support-leads", deadline_s=4 * 3600, on_timeout="reject"),
)

INSTRUCTIONS = {
    "triage": "Identify the customer from the sender address and summarise what they want. "
    "When they state a lasting preference (how to address them, how to reach them), remember it.",
    "orders": "Answer order questions and cancel orders that have not shipped.",
    "billing": "Handle invoices and refunds. Never refund more than was paid.",
    "communications": "Draft a short, accurate reply to the customer, then send it. Honour "
    "the preferences memory holds for them (e.g. the name they prefer).",
}
MEMORY_AGENTS = ("triage", "communications")
"""The specialists that recall what memory holds about the customer before each turn."""
TOOLS = {
    "triage": ("lookup_customer", "remember_preference"),
    "orders": ("get_order", "cancel_order"),
    "billing": ("get_invoice", "issue_refund"),
    "communications": ("draft_email", "send_email"),
}


def build_support_graph(
    db: SupportDB,
    model: BaseChatModel | None = None,
    prices: PriceTable | None = None,
    *,
    guard: ActionGuard | None = None,
    fallback_model: BaseChatModel | None = None,
    services: Services | None = None,
    shadow: ShadowMode | None = None,
) -> OrchestratorBuilder:
    """The support graph over `db`, remembering customer preferences in `services.memory`
    (triage writes them through `remember_preference`; triage and communications recall them).

    Args:
        db: the business database.
        model: defaults to the deterministic support model.
        prices: model prices.
        guard: the guard plane; defaults to `support_guard` over `services`.
        fallback_model: what specialists switch to near the spend cap; with the default model,
            the same deterministic policy priced as `scripted-mini`.
        services: the effect ledger, rate limiter and memory (and the default guard's
            backends); defaults to in-process ones.
        shadow: simulate these side effects instead of acting.
    """
    if model is None:
        model, fallback_model = support_model(), fallback_model or support_model("scripted-mini")
    services = services or Services.in_process()
    guard = guard or support_guard(services)
    memory = services.memory
    agents = [
        AgentSpec(
            name=name,
            instructions=INSTRUCTIONS[name],
            tools=TOOLS[name],
            model=model,
            fallback_model=fallback_model,
        )
        for name in INSTRUCTIONS
    ]
    return build_orchestrator(
        agents,
        tools=make_support_tools(db, memory),
        workflow=SUPPORT_WORKFLOW,
        router=ModelRouter(model=model),
        guard=guard,
        prices=prices,
        effects=services.effects,
        rate_limiter=services.rate_limiter,
        shadow=shadow,
        memory=memory,
        memory_bindings={name: SUPPORT_MEMORY for name in MEMORY_AGENTS},
        tracer=services.tracer,
    )


def support_builder(
    settings: Settings,
    *,
    services: Services | None = None,
    shadow: ShadowMode | None = None,
    policy_dir: Path = POLICY_DIR,
    tenants_file: Path = TENANTS_FILE,
) -> OrchestratorBuilder:
    """The support graph as `settings` configure it: the model, the business database under
    `BASTION_HOME`, Redis-backed services when `BASTION_REDIS_URL` is set, and the policy
    bundle's signing key from `BASTION_POLICY_KEY`.

    Args:
        settings: the configuration.
        services: backends to use instead of the ones `settings` select.
        shadow: simulate these side effects instead of acting.
        policy_dir: the Rego policy bundle (default: the shipped one).
        tenants_file: the tenants (default: the shipped ones).

    Raises:
        ModelConfigError, PolicyBundleError, GuardConfigError: with what to fix.
        TraceBackendError: the audit log cannot record the policy bundle being served.
    """
    model = None if settings.model == "scripted" else load_chat_model(settings.model)
    key = settings.policy_key.encode() if settings.policy_key else None
    services = services or services_for(settings)
    guard = support_guard(
        services, policy_dir=policy_dir, policy_key=key, tenants_file=tenants_file
    )
    if guard.policy is not None:  # a changed bundle goes on record; the same one adds nothing
        record_policy_bundle(services.audit, guard.policy, actor="system:startup")
    return build_support_graph(
        SupportDB(settings.support_db_path),
        model=model,
        guard=guard,
        services=services,
        shadow=shadow,
    )
