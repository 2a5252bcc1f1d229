"""Run control inside a LangGraph server: approvals found and resumed through the SDK."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from console.control import (
    Approval,
    by_deadline,
    covered,
    first_approval,
    resume_value,
    state_values,
    status_after,
    tenant_in,
    waiting_for,
)

__all__ = ["ServerRunControl"]


class ServerRunControl:
    """Run control inside a LangGraph server, through the SDK's in-process client.

    `get_client()` without a URL talks to the server it runs in over an ASGI transport (no
    network, no auth), so the console resumes runs exactly as any other client would.
    """

    def __init__(self, assistant_id: str = "support", *, client: Any = None) -> None:
        self.assistant_id = assistant_id
        """The graph (assistant) whose runs are resumed."""
        self._client = client

    @property
    def client(self) -> Any:
        """The SDK client (created on first use, when the server is up)."""
        if self._client is None:
            from langgraph_sdk import get_client

            self._client = get_client(api_key=None)
        return self._client

    async def approvals(self, tenants: frozenset[str] | None = None) -> list[Approval]:
        """Pending approvals of `tenants` (None: all), soonest deadline first."""
        found: list[Approval] = []
        offset, page = 0, 100
        while True:
            threads = await self.client.threads.search(
                status="interrupted", limit=page, offset=offset
            )
            for thread in threads:
                approval = _thread_approval(thread)
                if approval is not None and covered(approval, tenants):
                    found.append(approval)
            if len(threads) < page:
                return by_deadline(found)
            offset += page

    async def _state(self, thread_id: str) -> dict[str, Any] | None:
        from langgraph_sdk.errors import NotFoundError

        try:
            state: dict[str, Any] = await self.client.threads.get_state(thread_id)
        except NotFoundError:
            return None
        return state

    async def approval(self, thread_id: str) -> Approval | None:
        """The approval `thread_id` waits for, or None."""
        state = await self._state(thread_id)
        if state is None:
            return None
        payloads = (pending.get("value") for pending in state.get("interrupts") or ())
        return first_approval(thread_id, state_values(state.get("values")), payloads)

    async def tenant_of(self, thread_id: str) -> str | None:
        """The tenant of the run on `thread_id`, or None for an unknown thread."""
        state = await self._state(thread_id)
        if state is None:
            return None
        return tenant_in(state_values(state.get("values")))

    async def decide(
        self,
        thread_id: str,
        decisions: Sequence[Mapping[str, Any]],
        *,
        note: str | None,
        reviewer: str,
    ) -> str:
        """Resume the thread through the server; the run's status once it stops again."""
        approval = waiting_for(thread_id, await self.approval(thread_id))
        result = await self.client.runs.wait(
            thread_id,
            self.assistant_id,
            command={"resume": resume_value(decisions, note=note, reviewer=reviewer)},
            context={"tenant": approval["tenant"]},
        )
        return status_after(result)


def _thread_approval(thread: Mapping[str, Any]) -> Approval | None:
    """The approval a thread from `threads.search` waits for (its `interrupts` map tasks to
    their pending interrupts)."""
    interrupts = thread.get("interrupts") or {}
    pending = interrupts.values() if isinstance(interrupts, Mapping) else [interrupts]
    payloads = (item.get("value") for items in pending for item in items or ())
    return first_approval(str(thread["thread_id"]), state_values(thread.get("values")), payloads)
