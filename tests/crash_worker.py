"""A support run in its own process, to be killed mid-flight and resumed by another process.

Run as a script by `tests/test_crash_resume.py` (it imports only project code):

    crash_worker.py CHECKPOINTS DB THREAD --crash-after TOOL
        streams the cancel ticket; once the first `execute` step that ran TOOL is checkpointed,
        prints `CHECKPOINTED execute TOOL` and blocks reading stdin, so the run cannot finish.
    crash_worker.py CHECKPOINTS DB THREAD --resume
        continues the thread from its last checkpoint to the end (approving any interrupt) and
        prints `OUTCOME <status>`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.types import Command

from graphs.support import SupportDB, build_support_graph, format_ticket, scripted_review
from memory import open_checkpointer
from nodes import RunContext

CANCEL_TICKET = format_ticket(
    "dev@example.com", "Cancel", "Please cancel order ORD-1004, I ordered the wrong keyboard."
)
CONTEXT = RunContext(tenant="acme")
EXIT_STDIN_CLOSED = 3


def _crash_midway(graph: Any, config: dict[str, Any], tool: str) -> None:
    ran: list[str] = []
    stream = graph.stream(
        {"messages": [("user", CANCEL_TICKET)]},
        config,
        context=CONTEXT,
        stream_mode="updates",
        durability="sync",
    )
    for update in stream:
        # Allowed calls run in the guard step, or in `execute` after an approval.
        step = update.get("guard") or update.get("execute")
        if not step:
            continue
        ran.extend(m.name for m in step.get("messages", []) if isinstance(m, ToolMessage))
        if tool in ran:
            # With `sync` durability the step's checkpoint is written before its update is
            # yielded, and the next step waits for this loop to ask for more.
            print(f"CHECKPOINTED execute {tool}", flush=True)
            sys.stdin.read()  # blocks until the parent kills us
            # The parent went away without killing us: leave the run unfinished all the same.
            os._exit(EXIT_STDIN_CLOSED)
    sys.exit(f"the run ended without executing {tool!r}; it executed {ran!r}")


def _resume(graph: Any, config: dict[str, Any]) -> None:
    result = graph.invoke(None, config, context=CONTEXT, durability="sync")
    while result.get("__interrupt__"):
        review = scripted_review(result["__interrupt__"][0].value)
        result = graph.invoke(Command(resume=review), config, context=CONTEXT, durability="sync")
    print(f"OUTCOME {(result.get('outcome') or {}).get('status')}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, help="SQLite checkpoint file")
    parser.add_argument("db", type=Path, help="SQLite business database")
    parser.add_argument("thread", help="thread id")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--crash-after", metavar="TOOL", help="tool whose execute step to kill after")
    mode.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    config: dict[str, Any] = {"configurable": {"thread_id": args.thread}}
    with open_checkpointer(sqlite_path=args.checkpoints) as saver:
        graph = build_support_graph(SupportDB(args.db)).compile(checkpointer=saver)
        if args.resume:
            _resume(graph, config)
        else:
            _crash_midway(graph, config, args.crash_after)


if __name__ == "__main__":
    main()
