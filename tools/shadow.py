"""Shadow mode: which calls are simulated instead of acting (per graph, agent or tool), and
how a shadow run's proposals differ from a baseline run of the same input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tools.spec import ToolConfigError

__all__ = ["SHADOW_OFF", "CallChange", "ProposedCall", "ShadowMode", "diff_calls"]


@dataclass(frozen=True, kw_only=True)
class ShadowMode:
    """Where shadow mode applies. Read-only tools always run for real (they change nothing);
    side-effecting calls it covers are simulated and recorded, never performed."""

    graph: bool = False
    """Every side-effecting call of the graph."""
    agents: frozenset[str] = frozenset()
    """Side-effecting calls proposed by these specialists."""
    tools: frozenset[str] = frozenset()
    """Calls of these tools."""

    def covers(self, agent: str, tool: str) -> bool:
        """Whether a call of `tool` proposed by `agent` is simulated."""
        return self.graph or agent in self.agents or tool in self.tools

    def __bool__(self) -> bool:
        return self.graph or bool(self.agents) or bool(self.tools)

    def __or__(self, other: ShadowMode) -> ShadowMode:
        return ShadowMode(
            graph=self.graph or other.graph,
            agents=self.agents | other.agents,
            tools=self.tools | other.tools,
        )

    @classmethod
    def parse(cls, value: object) -> ShadowMode:
        """A mode from run configuration (`configurable["shadow"]`).

        Accepts None/False (off), True or `"graph"` (everything), a `ShadowMode`, or a mapping
        `{"graph": bool, "agents": [...], "tools": [...]}`.

        Raises:
            ToolConfigError: naming the value and the accepted forms.
        """
        if isinstance(value, ShadowMode):
            return value
        if value is None or value is False:
            return SHADOW_OFF
        if value is True or value == "graph":
            return cls(graph=True)
        if isinstance(value, Mapping) and set(value) <= {"graph", "agents", "tools"}:
            # (also the form run state stores it in)
            graph, agents, tools = (
                value.get("graph", False),
                value.get("agents", ()),
                value.get("tools", ()),
            )
            if isinstance(graph, bool) and _names(agents) and _names(tools):
                return cls(graph=graph, agents=frozenset(agents), tools=frozenset(tools))
        raise ToolConfigError(
            f"shadow={value!r} is not a shadow mode; use True or 'graph' (every side effect), "
            "or {'agents': [names], 'tools': [names]}"
        )


def _names(value: object) -> bool:
    return isinstance(value, list | tuple | set | frozenset) and all(
        isinstance(v, str) for v in value
    )


SHADOW_OFF = ShadowMode()
"""No shadow mode: every call acts."""


@dataclass(frozen=True, kw_only=True)
class ProposedCall:
    """A side-effecting call a run proposed, and what became of it."""

    tool: str
    """Tool name."""
    args: Mapping[str, Any]
    """Arguments as proposed (JSON)."""
    verdict: str
    """The guard's verdict kind (`allow`, `deny`, `escalate`, `halt`)."""
    outcome: str
    """What happened: `simulated`, `ran`, `replayed`, `failed`, `not run`."""


@dataclass(frozen=True, kw_only=True)
class CallChange:
    """One difference between a baseline run and a candidate run of the same input."""

    kind: Literal["added", "removed", "changed"]
    """`added`: only the candidate proposed it; `removed`: only the baseline; `changed`: the
    same tool with other arguments or another verdict."""
    baseline: ProposedCall | None
    """The baseline's call (None when added)."""
    candidate: ProposedCall | None
    """The candidate's call (None when removed)."""


def _same(a: ProposedCall, b: ProposedCall) -> bool:
    return a.tool == b.tool and dict(a.args) == dict(b.args) and a.verdict == b.verdict


def diff_calls(
    baseline: Sequence[ProposedCall], candidate: Sequence[ProposedCall]
) -> list[CallChange]:
    """How `candidate` differs from `baseline`: identical calls match first (in order), then
    leftover calls of the same tool pair up as changed, the rest are added or removed."""
    left, right = list(baseline), list(candidate)
    for call in list(left):
        match = next((c for c in right if _same(call, c)), None)
        if match is not None:
            left.remove(call)
            right.remove(match)
    changes = []
    for call in left:
        pair = next((c for c in right if c.tool == call.tool), None)
        if pair is None:
            changes.append(CallChange(kind="removed", baseline=call, candidate=None))
        else:
            right.remove(pair)
            changes.append(CallChange(kind="changed", baseline=call, candidate=pair))
    changes += [CallChange(kind="added", baseline=None, candidate=call) for call in right]
    return changes
