"""The served support graph: `builder` (uncompiled) and `graph` (compiled), named in langgraph.json.

The LangGraph server brings its own checkpointer, so `graph` is compiled without one; the CLI
compiles `builder` with the checkpointer from settings.
"""

from __future__ import annotations

from graphs.settings import Settings
from graphs.support.db import SupportDB
from graphs.support.model import support_model
from graphs.support.workflow import build_support_graph
from nodes import load_chat_model

__all__ = ["builder", "graph"]

_settings = Settings.from_env()
builder = build_support_graph(
    SupportDB(_settings.support_db_path),
    model=support_model() if _settings.model == "scripted" else load_chat_model(_settings.model),
)
graph = builder.compile(name="support")
