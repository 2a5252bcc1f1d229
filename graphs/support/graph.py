"""The served support graph: `builder` (uncompiled) and `graph` (compiled), named in langgraph.json.

The LangGraph server brings its own checkpointer, so `graph` is compiled without one; the CLI
compiles `builder` with the checkpointer from settings.
"""

from __future__ import annotations

from graphs.settings import Settings
from graphs.support.workflow import support_builder

__all__ = ["builder", "graph"]

builder = support_builder(Settings.from_env())
graph = builder.compile(name="support")
