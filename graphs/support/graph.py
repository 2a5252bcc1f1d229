"""The served support graph: `builder` (uncompiled) and `graph` (compiled), named in langgraph.json.

`graph` is compiled without a checkpointer: the LangGraph server gives it the one
`langgraph.json` names (`graphs.server_checkpointer`); the CLI compiles `builder` with the
checkpointer from settings.
"""

from __future__ import annotations

from graphs.settings import Settings
from graphs.support.workflow import support_builder

__all__ = ["builder", "graph"]

builder = support_builder(Settings.from_env())
graph = builder.compile(name="support")
