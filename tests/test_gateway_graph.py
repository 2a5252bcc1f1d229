"""The execution gateway wired into the orchestrator graph, end to end.

Exactly-once effects across runs of a thread, idempotency keys handed to tools, durability
refusal, shadow mode (per graph, agent, tool and run), tenant scopes, run ids in the effect
ledger, gateway errors answered to the model, and secrets kept out of checkpoints. Every run is a
real compiled graph with the scripted model; side effects are what the tools record.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from governed_helpers import (
    APPROVE,
    TENANT,
    Script,
    World,
    agent,
    answer_to,
    batch,
    call,
    verdicts_for,
)
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph._internal._constants import CONFIG_KEY_DURABILITY
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graphs import build_orchestrator
from guards import ActionGuard, TenantDirectory
from memory import open_checkpointer
from nodes import RunContext
from nodes.execute import DURABILITY_KEY
from tools import (
    DurabilityError,
    InMemoryEffectLedger,
    RateLimit,
    ShadowMode,
    ToolConfigError,
    ToolContext,
    ToolRetry,
    ToolSpec,
    idempotency_key,
    tool_contract,
)

TOKEN = "tok-LIVE-7f3a9c2e51d84b06"
"""A secret value that must never reach state, checkpoints, the model or the ledger."""


class Seeing(Script):
    """A `Script` that also records the names of the tools the model was bound with."""

    def __init__(self, *replies: AIMessage) -> None:
        super().__init__(*replies)
        self.bound: list[list[str]] = []

    def __call__(self, messages: Sequence[BaseMessage], tools: Sequence[Any]) -> AIMessage:
        self.bound.append(sorted(t["function"]["name"] for t in tools))
        return super().__call__(messages, tools)


def compile_graph(
    tools: Sequence[ToolSpec],
    *agents: Any,
    checkpointer: BaseCheckpointSaver | None = None,
    **kwargs: Any,
) -> Any:
    builder = build_orchestrator(list(agents), tools=tools, **kwargs)
    return builder.compile(checkpointer=checkpointer or InMemorySaver())


def config_for(thread: str, **configurable: Any) -> Any:
    return {"configurable": {"thread_id": thread, **configurable}}


def invoke(
    graph: Any,
    thread: str,
    text: str = "please help",
    *,
    tenant: str = TENANT,
    configurable: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    return graph.invoke(
        {"messages": [("user", text)]},
        config_for(thread, **(configurable or {})),
        context=RunContext(tenant=tenant),
        **kwargs,
    )


def artifact(state: dict[str, Any], call_id: str) -> dict[str, Any]:
    found: dict[str, Any] = answer_to(state, call_id).artifact
    return found


def solo_graph(world: World, script: Script, **kwargs: Any) -> Any:
    """One specialist, `worker`, with the world's tools."""
    names = [t.name for t in world.tools]
    return compile_graph(world.tools, agent("worker", script, tools=names), **kwargs)


# ------------------------------------------------------------------------------------------------
# 1. Exactly once across runs of a thread


def test_a_repeated_call_on_one_thread_acts_once_and_replays(saver: BaseCheckpointSaver) -> None:
    world = World()
    script = Script(
        call("transfer", "c1", amount=5, to="bob"),
        AIMessage("sent"),
        call("transfer", "c2", amount=5, to="bob"),
        AIMessage("sent again"),
        call("transfer", "c3", amount=5, to="bob"),
        AIMessage("sent elsewhere"),
    )
    graph = solo_graph(world, script, checkpointer=saver)

    first = invoke(graph, "t-once", "pay bob 5", durability="sync")
    second = invoke(graph, "t-once", "pay bob 5", durability="sync")

    assert world.ran("transfer") == [{"amount": 5, "to": "bob"}]
    assert first["outcome"]["status"] == second["outcome"]["status"] == "resolved"
    original, replay = answer_to(second, "c1"), answer_to(second, "c2")
    assert replay.artifact["replayed"] is True and original.artifact["replayed"] is False
    assert json.loads(str(replay.content)) == {
        **json.loads(str(original.content)),
        "replayed": True,
    }
    assert replay.status == "success"
    assert replay.artifact["idempotency_key"] == original.artifact["idempotency_key"]
    assert replay.artifact["attempts"] == 0 and original.artifact["attempts"] == 1

    other = invoke(graph, "t-other", "pay bob 5", durability="sync")
    assert world.ran("transfer") == [{"amount": 5, "to": "bob"}] * 2, "another thread acts"
    assert artifact(other, "c3")["replayed"] is False
    assert artifact(other, "c3")["idempotency_key"] != original.artifact["idempotency_key"]


def test_a_replay_survives_a_new_graph_over_the_same_ledger_and_checkpointer() -> None:
    """Another worker (a new graph object) on the same thread replays instead of acting."""
    world, ledger, saver = World(), InMemoryEffectLedger(), InMemorySaver()
    first = Script(call("transfer", "c1", amount=7, to="ann"), AIMessage("sent"))
    second = Script(call("transfer", "c2", amount=7, to="ann"), AIMessage("sent"))

    invoke(solo_graph(world, first, effects=ledger, checkpointer=saver), "t-workers")
    state = invoke(solo_graph(world, second, effects=ledger, checkpointer=saver), "t-workers")

    assert world.ran("transfer") == [{"amount": 7, "to": "ann"}]
    assert artifact(state, "c2")["replayed"] is True


# ------------------------------------------------------------------------------------------------
# 2. The idempotency key reaches the tool


class Mailer:
    """A side-effecting tool that records the `ToolContext` of every call that reached it."""

    def __init__(self) -> None:
        self.contexts: list[ToolContext] = []
        mailer = self

        @tool_contract(side_effect="irreversible")
        def send(to: str, body: str, *, ctx: ToolContext) -> str:
            """Send an email."""
            mailer.contexts.append(ctx)
            return f"sent to {to}"

        self.tool = send


def test_the_tool_receives_the_idempotency_key_independent_of_the_call_id() -> None:
    mailer = Mailer()
    states = []
    # Separate ledgers, so both calls reach the tool (as a downstream system would see them).
    for call_id in ("model-id-1", "model-id-2"):
        script = Script(call("send", call_id, to="ann", body="hi"), AIMessage("done"))
        graph = compile_graph([mailer.tool], agent("worker", script, tools=["send"]))
        states.append(invoke(graph, "t-keys"))

    first, second = mailer.contexts
    assert (first.call_id, second.call_id) == ("model-id-1", "model-id-2")
    assert first.idempotency_key == second.idempotency_key
    assert first.idempotency_key == artifact(states[0], "model-id-1")["idempotency_key"]
    assert second.idempotency_key == artifact(states[1], "model-id-2")["idempotency_key"]
    expected = idempotency_key(TENANT, "t-keys", "send", {"to": "ann", "body": "hi"})
    assert first.idempotency_key == expected
    assert first.tenant == TENANT and first.thread_id == "t-keys" and first.agent == "worker"
    assert first.run_id == states[0]["run_id"] and first.run_id != second.run_id
    assert first.shadow is False and first.attempt == 1


# ------------------------------------------------------------------------------------------------
# 3. Durability


def test_the_durability_key_is_langgraphs() -> None:
    assert DURABILITY_KEY == CONFIG_KEY_DURABILITY


def test_durability_exit_refuses_side_effects_before_anything_acts() -> None:
    world = World()
    script = Script(batch(("lookup", {"order": "A1"}), ("transfer", {"amount": 5, "to": "bob"})))
    graph = solo_graph(world, script)

    with pytest.raises(DurabilityError) as caught:
        invoke(graph, "t-exit", durability="exit")

    message = str(caught.value)
    assert "transfer" in message and "'sync'" in message and "'exit'" in message
    assert "lookup" not in message, "only the side-effecting tools are named"
    assert world.effects == [], "not even the read-only call of the batch ran"


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_durable_modes_run_side_effects(durability: str) -> None:
    world = World()
    script = Script(call("transfer", amount=5, to="bob"), AIMessage("sent"))

    state = invoke(solo_graph(world, script), f"t-{durability}", durability=durability)

    assert world.ran("transfer") == [{"amount": 5, "to": "bob"}]
    assert state["outcome"]["status"] == "resolved"


def test_durability_exit_runs_read_only_calls_and_shadowed_side_effects() -> None:
    world = World()
    script = Script(
        call("lookup", "c1", order="A1"),
        AIMessage("found"),
        call("transfer", "c2", amount=5, to="bob"),
        AIMessage("would send"),
    )
    graph = solo_graph(world, script)

    read = invoke(graph, "t-exit-read", durability="exit")
    shadowed = invoke(
        graph, "t-exit-shadow", durability="exit", configurable={"shadow": {"tools": ["transfer"]}}
    )

    assert read["outcome"]["status"] == "resolved"
    assert world.effects == [("lookup", {"order": "A1"})]
    assert artifact(shadowed, "c2")["shadow"] is True, "a simulation cannot repeat an effect"


# ------------------------------------------------------------------------------------------------
# 4. Shadow mode


SHADOW_SETUPS = {
    "graph-built": ({"shadow": ShadowMode(graph=True)}, None),
    "agent-built": ({"shadow": ShadowMode(agents=frozenset({"worker"}))}, None),
    "tool-built": ({"shadow": ShadowMode(tools=frozenset({"transfer"}))}, None),
    "run-true": ({}, True),
    "run-graph": ({}, "graph"),
    "run-tools": ({}, {"tools": ["transfer"]}),
    "run-agents": ({}, {"agents": ["worker"]}),
}


@pytest.mark.parametrize("setup", list(SHADOW_SETUPS))
def test_shadow_mode_simulates_side_effects_and_runs_reads(setup: str) -> None:
    built, per_run = SHADOW_SETUPS[setup]
    world, ledger = World(), InMemoryEffectLedger()
    script = Script(
        batch(("lookup", {"order": "A1"}), ("transfer", {"amount": 5, "to": "bob"})),
        AIMessage("would send"),
    )
    graph = solo_graph(world, script, effects=ledger, **built)

    state = invoke(graph, "t-shadow", configurable={"shadow": per_run} if per_run else None)

    assert world.effects == [("lookup", {"order": "A1"})], "reads run, the transfer does not"
    assert artifact(state, "b0")["shadow"] is False
    simulated = answer_to(state, "b1")
    assert simulated.artifact["shadow"] is True and simulated.status == "success"
    assert "dry run" in str(simulated.content)
    [record] = ledger.effects(thread_id="t-shadow")
    assert record.status == "shadow" and record.intent.tool == "transfer"
    assert record.intent.key == "shadow:" + simulated.artifact["idempotency_key"]
    assert record.intent.run_id == state["run_id"] != ""
    assert record.intent.args == {"amount": 5, "to": "bob"}

    # A later real run with the same arguments on the same thread acts: shadows never replay.
    real = Script(call("transfer", "c9", amount=5, to="bob"), AIMessage("sent"))
    live = solo_graph(world, real, effects=ledger)
    after = invoke(live, "t-shadow")
    assert world.ran("transfer") == [{"amount": 5, "to": "bob"}]
    assert artifact(after, "c9") | {"idempotency_key": None} == {
        "idempotency_key": None,
        "error_kind": None,
        "error_code": None,
        "attempts": 1,
        "replayed": False,
        "shadow": False,
    }
    done = ledger.get(artifact(after, "c9")["idempotency_key"])
    assert done is not None and done.status == "done" and done.intent.run_id == after["run_id"]


def test_shadow_per_agent_covers_only_that_agents_side_effects() -> None:
    world = World()
    trial = Script(call("transfer", "t1", amount=1, to="ann"), AIMessage("would send"))
    veteran = Script(call("transfer", "v1", amount=2, to="bob"), AIMessage("sent"))
    graph = compile_graph(
        world.tools,
        agent("trial", trial, tools=["transfer"]),
        agent("veteran", veteran, tools=["transfer"]),
        shadow=ShadowMode(agents=frozenset({"trial"})),
    )

    state = invoke(graph, "t-agents")

    assert world.ran("transfer") == [{"amount": 2, "to": "bob"}]
    assert artifact(state, "t1")["shadow"] is True and artifact(state, "v1")["shadow"] is False


def test_shadow_per_tool_covers_only_that_tool() -> None:
    world = World()
    script = Script(
        batch(("transfer", {"amount": 5, "to": "bob"}), ("notify", {"to": "bob", "body": "hi"})),
        AIMessage("done"),
    )
    graph = solo_graph(world, script, shadow=ShadowMode(tools=frozenset({"transfer"})))

    state = invoke(graph, "t-tools")

    assert world.effects == [("notify", {"to": "bob", "body": "hi"})]
    assert artifact(state, "b0")["shadow"] is True and artifact(state, "b1")["shadow"] is False


def test_a_run_can_add_shadow_coverage_to_a_graph_that_acts() -> None:
    world = World()
    script = Script(
        call("transfer", "c1", amount=5, to="bob"),
        AIMessage("would send"),
        call("transfer", "c2", amount=5, to="bob"),
        AIMessage("sent"),
    )
    graph = solo_graph(world, script)

    shadowed = invoke(graph, "t-run", configurable={"shadow": True})
    real = invoke(graph, "t-run")

    assert artifact(shadowed, "c1")["shadow"] is True
    assert artifact(real, "c2")["shadow"] is False and artifact(real, "c2")["replayed"] is False
    assert world.ran("transfer") == [{"amount": 5, "to": "bob"}], "only the real run acted"


@pytest.mark.parametrize(
    "bad", ["everything", {"agent": ["worker"]}, {"tools": "transfer"}, 1, {"graph": "yes"}]
)
def test_a_bad_shadow_value_is_a_config_error_and_nothing_acts(bad: Any) -> None:
    world = World()
    script = Script(call("transfer", amount=5, to="bob"), AIMessage("sent"))

    with pytest.raises(ToolConfigError) as caught:
        invoke(solo_graph(world, script), "t-bad", configurable={"shadow": bad})

    message = str(caught.value)
    assert f"shadow={bad!r}" in message and "'graph'" in message and "'tools'" in message
    assert world.effects == []


def shadow_run_awaiting_approval(world: World, thread: str) -> Any:
    """A shadow run (per run) whose transfer waits for a human."""
    script = Script(call("transfer", "c1", amount=500, to="eve"), AIMessage("would send"))
    graph = solo_graph(world, script)
    first = invoke(graph, thread, configurable={"shadow": True})
    assert first["__interrupt__"] and world.effects == []
    return graph


def test_a_shadow_run_resumed_with_its_shadow_setting_stays_simulated() -> None:
    world = World()
    graph = shadow_run_awaiting_approval(world, "t-shadow-resume")

    state = graph.invoke(
        Command(resume=APPROVE),
        config_for("t-shadow-resume", shadow=True),
        context=RunContext(tenant=TENANT),
    )

    assert world.effects == [] and artifact(state, "c1")["shadow"] is True


def test_a_shadow_run_resumed_plainly_stays_simulated() -> None:
    world = World()
    graph = shadow_run_awaiting_approval(world, "t-shadow-plain")

    state = graph.invoke(
        Command(resume=APPROVE), config_for("t-shadow-plain"), context=RunContext(tenant=TENANT)
    )

    assert world.effects == [], "a run started in shadow mode must never act"
    assert artifact(state, "c1")["shadow"] is True


def test_a_bad_shadow_value_is_refused_even_when_nothing_executes() -> None:
    script = Script(AIMessage("nothing to do"))

    with pytest.raises(ToolConfigError):
        invoke(solo_graph(World(), script), "t-bad-quiet", configurable={"shadow": "everything"})


# ------------------------------------------------------------------------------------------------
# 5. Tenant scopes


def scoped_tools(world: World) -> list[ToolSpec]:
    @tool_contract(scopes=["read"])
    def lookup(order: str) -> dict[str, Any]:
        """Look an order up."""
        world.effects.append(("lookup", {"order": order}))
        return {"order": order, "status": "shipped"}

    @tool_contract(side_effect="irreversible", scopes=["payments:write"])
    def transfer(amount: int, to: str) -> dict[str, Any]:
        """Transfer money."""
        world.effects.append(("transfer", {"amount": amount, "to": to}))
        return {"sent": amount, "to": to}

    return [lookup, transfer]


TENANTS = TenantDirectory.from_mapping({"full": {}, "readonly": {"scopes": ["read"]}})


def scoped_graph(world: World, script: Script) -> Any:
    return compile_graph(
        scoped_tools(world),
        agent("worker", script, tools=["lookup", "transfer"]),
        guard=ActionGuard(tenants=TENANTS),
    )


def test_a_readonly_tenant_sees_only_read_tools_and_cannot_transfer() -> None:
    world = World()
    script = Seeing(
        batch(("lookup", {"order": "A1"}), ("transfer", {"amount": 5, "to": "bob"})),
        AIMessage("could not pay"),
    )

    state = invoke(scoped_graph(world, script), "t-readonly", tenant="readonly")

    assert script.bound == [["lookup"], ["lookup"]], "the model is never shown `transfer`"
    assert world.effects == [("lookup", {"order": "A1"})]
    refusal = answer_to(state, "b1")
    assert refusal.status == "error"
    assert "denied by policy" in str(refusal.content)
    assert "no tool `transfer`" in str(refusal.content) and "`lookup`" in str(refusal.content)
    assert [v["kind"] for v in verdicts_for(state, "b1")] == ["deny"]


def test_a_tenant_with_every_scope_sees_and_uses_every_tool() -> None:
    world = World()
    script = Seeing(call("transfer", amount=5, to="bob"), AIMessage("sent"))

    state = invoke(scoped_graph(world, script), "t-full", tenant="full")

    assert script.bound[0] == ["lookup", "transfer"]
    assert world.ran("transfer") == [{"amount": 5, "to": "bob"}]
    assert state["outcome"]["status"] == "resolved"


def test_scoped_views_do_not_leak_between_tenants_of_one_graph() -> None:
    world = World()
    script = Seeing(
        call("transfer", "f1", amount=5, to="bob"),
        AIMessage("sent"),
        call("transfer", "r1", amount=5, to="bob"),
        AIMessage("could not pay"),
    )
    graph = scoped_graph(world, script)

    invoke(graph, "t-full-first", tenant="full")
    state = invoke(graph, "t-readonly-after", tenant="readonly")

    assert script.bound == [["lookup", "transfer"]] * 2 + [["lookup"]] * 2
    assert world.ran("transfer") == [{"amount": 5, "to": "bob"}]
    assert answer_to(state, "r1").status == "error"


# ------------------------------------------------------------------------------------------------
# 6. Run ids in the effect ledger


def test_the_ledger_records_the_run_that_first_acted() -> None:
    world, ledger = World(), InMemoryEffectLedger()
    script = Script(
        call("transfer", "c1", amount=5, to="bob"),
        AIMessage("sent"),
        call("transfer", "c2", amount=5, to="bob"),
        AIMessage("sent"),
    )
    graph = solo_graph(world, script, effects=ledger)

    first = invoke(graph, "t-run-id")
    second = invoke(graph, "t-run-id")

    assert first["run_id"] != second["run_id"]
    [record] = ledger.effects(run_id=first["run_id"])
    assert record.status == "done" and record.intent.tool == "transfer"
    assert record.intent.key == artifact(first, "c1")["idempotency_key"]
    assert (record.intent.tenant, record.intent.thread_id, record.intent.agent) == (
        TENANT,
        "t-run-id",
        "worker",
    )
    assert record.outcome is not None and record.outcome.output == {"sent": 5, "to": "bob"}
    assert ledger.effects(run_id=second["run_id"]) == [], "a replay is not a new effect"


# ------------------------------------------------------------------------------------------------
# 7. Gateway errors come back to the model


def test_timeouts_rate_limits_and_missing_secrets_are_answered_and_the_run_finishes() -> None:
    release = threading.Event()

    @tool_contract(timeout_s=0.05, retry=ToolRetry(attempts=1))
    def slow(n: int) -> str:
        """Ask a slow backend."""
        release.wait(10)
        return "late"

    @tool_contract(rate_limit=RateLimit(calls=1, per_s=3600))
    def ping(n: int) -> str:
        """Ping a rationed upstream."""
        return f"pong {n}"

    @tool_contract(secrets=("VAULT_TOKEN",))
    def vault(key: str) -> str:
        """Read from the vault."""
        raise AssertionError("must not run without its secret")

    script = Script(
        batch(("slow", {"n": 1}), ("ping", {"n": 1}), ("ping", {"n": 2}), ("vault", {"key": "k"})),
        AIMessage("some calls failed"),
    )
    graph = compile_graph(
        [slow, ping, vault],
        agent("worker", script, tools=["slow", "ping", "vault"]),
        secrets={"OTHER": "x"}.get,
    )
    try:
        state = invoke(graph, "t-errors")
    finally:
        release.set()

    kinds = {cid: artifact(state, cid)["error_kind"] for cid in ("b0", "b1", "b2", "b3")}
    assert kinds == {"b0": "timeout", "b1": None, "b2": "rate_limited", "b3": "misconfigured"}
    assert answer_to(state, "b1").status == "success"
    for cid in ("b0", "b2", "b3"):
        assert answer_to(state, cid).status == "error"
    assert "latency budget" in str(answer_to(state, "b0").content)
    assert "rate limited" in str(answer_to(state, "b2").content)
    assert "`VAULT_TOKEN` is not configured" in str(answer_to(state, "b3").content)
    answered = {m.tool_call_id for m in script.seen[1] if isinstance(m, ToolMessage)}
    assert answered == {"b0", "b1", "b2", "b3"}, "the model read every answer"
    assert state["outcome"]["status"] == "resolved"


def test_a_timed_out_side_effect_is_in_doubt_and_not_repeated() -> None:
    release, reached = threading.Event(), []

    @tool_contract(side_effect="irreversible", timeout_s=0.05)
    def wire(amount: int) -> str:
        """Wire money through a slow bank."""
        reached.append(amount)
        release.wait(10)
        return "wired"

    script = Script(
        call("wire", "w1", amount=3),
        AIMessage("unsure"),
        call("wire", "w2", amount=3),
        AIMessage("still unsure"),
    )
    graph = compile_graph([wire], agent("worker", script, tools=["wire"]))
    try:
        first = invoke(graph, "t-doubt")
        second = invoke(graph, "t-doubt")
    finally:
        release.set()

    assert artifact(first, "w1")["error_kind"] == "timeout"
    assert "a person must check effect" in str(answer_to(first, "w1").content)
    assert artifact(second, "w2")["error_kind"] == "in_doubt"
    assert reached == [3], "a call that may have acted is never repeated"


# ------------------------------------------------------------------------------------------------
# 8. Secrets never reach state


class Keyed:
    """Tools that use the `API_TOKEN` secret and echo it (as careless tools do)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        keyed = self

        @tool_contract(secrets=("API_TOKEN",))
        def whoami(*, ctx: ToolContext) -> dict[str, Any]:
            """Who the API thinks we are."""
            keyed.seen.append(ctx.secrets["API_TOKEN"])
            return {"user": "bot", "auth": f"Bearer {ctx.secrets['API_TOKEN']}"}

        @tool_contract(side_effect="irreversible", secrets=("API_TOKEN",))
        def post(text: str, *, ctx: ToolContext) -> dict[str, Any]:
            """Post a message with the API."""
            keyed.seen.append(ctx.secrets["API_TOKEN"])
            return {"posted": text, "token": ctx.secrets["API_TOKEN"]}

        @tool_contract(secrets=("API_TOKEN",))
        def broken(*, ctx: ToolContext) -> str:
            """Call an endpoint that fails."""
            raise RuntimeError(f"401 for token {ctx.secrets['API_TOKEN']}")

        self.tools = [whoami, post, broken]


def stored_bytes(folder: Path) -> Iterator[bytes]:
    for path in folder.rglob("*"):
        if path.is_file():
            yield path.read_bytes()


def test_secrets_reach_tools_but_never_state_checkpoints_the_model_or_the_ledger(
    tmp_path: Path,
) -> None:
    keyed, ledger = Keyed(), InMemoryEffectLedger()
    script = Script(
        batch(("whoami", {}), ("post", {"text": "hello"}), ("broken", {})),
        AIMessage("done"),
    )
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    with open_checkpointer(sqlite_path=folder / "cp.sqlite") as saver:
        graph = compile_graph(
            keyed.tools,
            agent("worker", script, tools=["whoami", "post", "broken"]),
            checkpointer=saver,
            effects=ledger,
            secrets={"API_TOKEN": TOKEN}.get,
        )
        state = invoke(graph, "t-secret", durability="sync")
        values = graph.get_state(config_for("t-secret")).values
        history = [dumps(s.values) for s in graph.get_state_history(config_for("t-secret"))]

    assert keyed.seen == [TOKEN, TOKEN], "the tools did get the secret"
    assert state["outcome"]["status"] == "resolved"
    dumped = dumps(values)
    assert TOKEN not in dumped and "[secret:API_TOKEN]" in dumped
    assert all(TOKEN not in h for h in history)
    assert "[secret:API_TOKEN]" in str(answer_to(state, "b2").content), "errors are scrubbed too"
    assert all(TOKEN.encode() not in blob for blob in stored_bytes(folder))
    assert all(TOKEN not in str(m.content) for m in script.seen[1]), "the model never reads it"
    assert TOKEN not in repr(ledger.effects()) and len(ledger.effects()) == 1


def test_a_shadow_simulation_that_echoes_a_secret_does_not_store_it() -> None:
    ledger = InMemoryEffectLedger()

    def simulate(args: Any, ctx: ToolContext) -> dict[str, Any]:
        return {"would_post": args.text, "auth": ctx.secrets["API_TOKEN"]}

    @tool_contract(side_effect="irreversible", secrets=("API_TOKEN",), simulate=simulate)
    def post(text: str, *, ctx: ToolContext) -> str:
        """Post a message with the API."""
        raise AssertionError("shadow mode must not act")

    script = Script(call("post", "p1", text="hello"), AIMessage("would post"))
    graph = compile_graph(
        [post],
        agent("worker", script, tools=["post"]),
        effects=ledger,
        secrets={"API_TOKEN": TOKEN}.get,
        shadow=ShadowMode(graph=True),
    )

    state = invoke(graph, "t-shadow-secret")

    assert TOKEN not in dumps(state) and "[secret:API_TOKEN]" in str(answer_to(state, "p1").content)
    [record] = ledger.effects()
    assert record.status == "shadow"
    assert TOKEN not in repr(record)
