"""Customer preferences in memory: where they live, the tool that remembers one (a governed,
undoable side effect), and what support agents recall before each turn."""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel

from graphs.support.schema import Email, PreferenceReceipt, PreferenceText, PreferenceTopic
from memory import MemoryContractError, MemoryScope, MemorySession, VersionedMemory
from memory.contract import check_namespace
from nodes import MemoryBinding, RunState, this_run, tool_scope
from tools import ToolContext, ToolError, ToolSpec, tool_contract

__all__ = [
    "PURPOSE",
    "SUPPORT_MEMORY",
    "customer_context",
    "customer_namespace",
    "make_preference_tool",
]

PURPOSE = "support"
"""Purpose support data is kept for; support agents read only records kept for it."""
PURPOSES = frozenset({PURPOSE})
_SENDER = re.compile(r"^From:\s*(\S+@\S+)", re.M)


def customer_namespace(email: str) -> tuple[str, str]:
    """Memory namespace of a customer: `("customers", <label>)`.

    The label is the lower-cased address with `.` written as `:` (namespace labels allow
    letters, digits and `_ : @ + -`, and `:` never occurs in an address we accept), e.g.
    `alice@example:com`; an address that still does not fit gets `h-<sha256 prefix>`.
    """
    address = email.strip().lower()
    try:
        return check_namespace(("customers", address.replace(".", ":")))  # type: ignore[return-value]
    except MemoryContractError:
        digest = hashlib.sha256(address.encode()).hexdigest()[:32]
        return ("customers", f"h-{digest}")


def customer_context(state: RunState, session: MemorySession) -> list[str]:
    """What memory holds about the ticket's sender, one line per remembered preference."""
    sender = _SENDER.search(this_run(state.get("messages") or [])[0])
    if sender is None:
        return []
    hits = session.recall(namespace=customer_namespace(sender.group(1)), limit=10)
    return [
        f"customer's {hit.record.key}: {hit.record.value['preference']}"
        + (" (may be out of date)" if hit.stale else "")
        for hit in hits
        if hit.record.value and isinstance(hit.record.value.get("preference"), str)
    ]


SUPPORT_MEMORY = MemoryBinding(purposes=PURPOSES, clearance="internal", context=customer_context)
"""The memory binding of the support agents that talk to or about the customer."""


def _reverted_by(memory: VersionedMemory, scope: MemoryScope, commit_id: str) -> bool:
    """Whether every key `commit_id` changed was last written by `scope`'s decision (an
    earlier attempt of this very undo)."""
    for change in memory.commit_of(scope, commit_id).changes:
        versions = memory.history(scope, change.namespace, change.key)
        if not versions or versions[-1].tags.lineage.decision_id != scope.decision_id:
            return False
    return True


def _receipt(
    value: dict[str, str], commit: str, version: int, *, unchanged: bool = False
) -> PreferenceReceipt:
    return PreferenceReceipt(
        customer=value["customer"], topic=value["topic"], preference=value["preference"],
        memory_commit=commit, version=version, unchanged=unchanged,
    )  # fmt: skip


def make_preference_tool(memory: VersionedMemory) -> ToolSpec:
    """The `remember_preference` tool over `memory`."""

    def revert(args: BaseModel, output: PreferenceReceipt, ctx: ToolContext) -> dict[str, str]:
        if not output.memory_commit:
            return {"status": "nothing was written"}
        # The undo's idempotency key is the decision: a retried undo recognises its own revert.
        scope = MemoryScope(tenant=ctx.tenant, agent=ctx.agent, purposes=PURPOSES,
                            run_id=ctx.run_id, decision_id=ctx.idempotency_key)  # fmt: skip
        try:
            result = memory.revert(scope, output.memory_commit, reason=f"undo of {ctx.run_id}")
        except MemoryContractError as error:
            raise ToolError(str(error), code="not_revertible") from None
        if result.ok and result.commit is not None:
            return {"reverted": output.memory_commit, "memory_commit": result.commit.id}
        if _reverted_by(memory, scope, output.memory_commit):
            return {"reverted": output.memory_commit, "memory_commit": ""}
        raise ToolError(
            f"the preference `{output.topic}` of {output.customer} changed after commit "
            f"{output.memory_commit}; it cannot be reverted automatically, a person must look "
            "(`bastion memory history`)",
            code="moved_on",
        )

    def simulate(args: BaseModel, ctx: ToolContext) -> PreferenceReceipt:
        return PreferenceReceipt.model_validate(
            {**args.model_dump(), "memory_commit": "", "version": 0, "simulated": True}
        )

    @tool_contract(
        side_effect="reversible",
        zone="green",
        scopes=["memory:write"],
        idempotent=True,
        rollback=revert,
        simulate=simulate,
        timeout_s=5.0,
        errors={
            "conflict": "another writer changed the preference at the same moment",
            "not_revertible": "undo: the commit is unknown or its earlier version was purged",
            "moved_on": "undo: the preference changed again after this commit",
        },
    )
    def remember_preference(
        customer: Email, topic: PreferenceTopic, preference: PreferenceText, *, ctx: ToolContext
    ) -> PreferenceReceipt:
        """Remember a preference the customer stated (e.g. topic `preferred_name`) for their
        later tickets."""
        namespace = customer_namespace(customer)
        session = memory.session(tool_scope(ctx, purposes=PURPOSES), f"{topic} of {customer}")
        current = session.get(namespace, topic)
        value = {"customer": customer.lower(), "topic": topic, "preference": preference,
                 "text": f"{topic}: {preference}"}  # fmt: skip
        if current is not None and current.value == value:
            lineage = current.tags.lineage
            # This very call, re-run after a crash: its commit stands, report it again.
            mine = (lineage.run_id, lineage.decision_id) == (ctx.run_id, ctx.call_id)
            return _receipt(value, current.commit_id if mine else "", current.version,
                            unchanged=not mine)  # fmt: skip
        session.remember(
            namespace, topic, value, purpose=PURPOSE, retention="profile",
            sensitivity="internal", source=f"ticket:{ctx.thread_id or ctx.run_id}",
        )  # fmt: skip
        result = session.commit()
        if not result.ok or result.commit is None:
            raise ToolError(
                f"the preference `{topic}` of {customer} changed while it was being written "
                f"({result.status}); read it again before writing",
                code="conflict",
                retryable=True,
            )
        receipt = _receipt(value, result.commit.id, result.commit.changes[0].version)
        overwrote = "; ".join(
            f"version {c.actual_version} by {c.actual_author}, written after this call read "
            f"version {c.expected_version}"
            for c in result.conflicts
        )
        return receipt.model_copy(update={"overwrote": overwrote}) if overwrote else receipt

    return remember_preference
