"""Tool contracts, the registry and the gateway: bad calls become actionable messages."""

from __future__ import annotations

import json

import pytest

from guards import TenantDirectory
from nodes import ToolViews
from tools import (
    ExecutionGateway,
    ToolConfigError,
    ToolContext,
    ToolError,
    ToolInvocation,
    ToolRegistry,
    tool_contract,
)


@tool_contract(side_effect="irreversible", zone=lambda a: "red" if a["amount"] > 100 else "green")
def pay(account: str, amount: float, *, ctx: ToolContext) -> dict[str, object]:
    """Pay money to an account."""
    if account == "closed":
        raise ToolError("account `closed` is closed; ask for another account")
    return {"paid": amount, "key": ctx.idempotency_key}


@tool_contract()
def explode() -> None:
    """Always crashes."""
    raise RuntimeError("boom")


@tool_contract(max_output_chars=50)
def chatter() -> str:
    """Says too much."""
    return "x" * 500


GATEWAY = ExecutionGateway(ToolRegistry([pay, explode, chatter]))


def call(tool: str, thread: str = "t1", **args: object):
    return GATEWAY.execute(
        ToolInvocation(
            tool=tool, args=args, call_id="c1", tenant="acme", thread_id=thread, agent="billing"
        )
    )


def test_contract_derives_a_strict_schema_and_zone() -> None:
    schema = pay.llm_schema()["function"]
    assert schema["name"] == "pay" and schema["description"] == "Pay money to an account."
    assert set(schema["parameters"]["required"]) == {"account", "amount"}
    assert "ctx" not in schema["parameters"]["properties"]
    assert pay.zone_for({"amount": 500}) == "red" and pay.zone_for({"amount": 5}) == "green"
    assert pay.zone_for({}) == "red", "a failing zone rule must fail closed"


def test_successful_call_returns_json_and_a_stable_key() -> None:
    first, again = call("pay", account="a1", amount=5), call("pay", account="a1", amount=5.0)
    assert first.ok and json.loads(first.content)["paid"] == 5
    assert first.idempotency_key == again.idempotency_key
    assert call("pay", thread="t2", account="a1", amount=5).idempotency_key != first.idempotency_key


def test_unknown_tool_gets_available_tools_and_a_suggestion() -> None:
    result = call("pya")
    assert not result.ok and result.error_kind == "unknown_tool"
    assert "no tool `pya`" in result.content and "Did you mean `pay`" in result.content


@pytest.mark.parametrize(
    "args, where",
    [
        ({"account": "a1"}, "amount"),
        ({"account": "a1", "amount": "lots"}, "amount"),
        ({"account": "a1", "amount": 1, "admin": True}, "admin"),
        ({"account": ["a1"], "amount": 1}, "account"),
    ],
)
def test_invalid_args_name_the_field(args: dict[str, object], where: str) -> None:
    result = call("pay", **args)
    assert not result.ok and result.error_kind == "invalid_args"
    assert f"`{where}`" in result.content and "Fix them and call again" in result.content


def test_business_errors_and_crashes_become_messages() -> None:
    business = call("pay", account="closed", amount=1)
    assert business.error_kind == "tool_error" and "ask for another account" in business.content
    crash = call("explode")
    assert crash.error_kind == "crashed" and "RuntimeError: boom" in crash.content


def test_large_outputs_are_truncated_with_a_notice() -> None:
    result = call("chatter")
    assert result.ok and "[truncated: 502 chars, limit 50]" in result.content


def test_declared_key_fields_ignore_other_args() -> None:
    @tool_contract(side_effect="irreversible", idempotency_fields=("to",))
    def send(to: str, body: str) -> str:
        """Send."""
        return to

    gateway = ExecutionGateway(ToolRegistry([send]))
    keys = {
        gateway.execute(
            ToolInvocation(
                tool="send",
                args={"to": "a", "body": b},
                call_id=b,
                tenant="t",
                thread_id="x",
                agent="a",
            )
        ).idempotency_key
        for b in ("one wording", "another wording")
    }
    assert len(keys) == 1


def test_contract_mistakes_are_refused_at_declaration() -> None:
    with pytest.raises(ToolConfigError, match="has no type annotation"):
        tool_contract(description="d")(lambda x: x)
    with pytest.raises(ToolConfigError, match="no description"):

        @tool_contract()
        def nodoc(a: int) -> int:
            return a

    with pytest.raises(ToolConfigError, match="idempotency_fields"):

        @tool_contract(idempotency_fields=("nope",))
        def keyed(a: int) -> int:
            """Keyed."""
            return a


def test_registry_refuses_duplicates_and_unknown_scopes() -> None:
    with pytest.raises(ToolConfigError, match="registered twice"):
        ToolRegistry([pay, pay])
    with pytest.raises(ToolConfigError, match="unknown tool"):
        ToolRegistry([pay]).scoped(["pay", "refund"])
    assert ToolRegistry([pay, explode]).scoped(["pay"]).names == {"pay"}


def test_tool_views_cut_by_tenant_scopes_and_show_unknown_tenants_nothing() -> None:
    @tool_contract(scopes=["read"])
    def peek(key: str) -> str:
        """Read a value."""
        return key

    @tool_contract()
    def ping() -> str:
        """Needs no scope."""
        return "pong"

    tenants = TenantDirectory.from_mapping({"full": {}, "none": {"scopes": []}})
    views = ToolViews({"a": ToolRegistry([peek, ping])}, tenants)
    assert views.for_agent("a", "full").names == {"peek", "ping"}
    assert views.for_agent("a", "none").names == {"ping"}
    assert views.for_agent("a", "stranger").names == frozenset()
    assert views.for_agent("nobody", "full").names == frozenset()
