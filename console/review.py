"""Terminal reviewer: asks a person to approve, edit or reject each escalated action."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.prompt import Prompt

__all__ = ["TerminalReviewer"]


class TerminalReviewer:
    """Prompts on the terminal for each action request in an approval payload."""

    def __init__(self, console: Console, reviewer: str) -> None:
        self._console = console
        self._reviewer = reviewer

    def __call__(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        if payload.get("error"):
            self._console.print(f"[red]previous answer refused:[/] {payload['error']}")
        return {"decisions": [self._ask(r) for r in payload.get("action_requests", [])]}

    def _ask(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self._console.rule(f"approval needed: {request['name']}")
        self._console.print(request.get("description", ""))
        self._console.print_json(json.dumps(request.get("args", {})))
        choice = Prompt.ask(
            "approve, edit or reject?",
            choices=["approve", "edit", "reject"],
            default="approve",
            console=self._console,
        )
        note = Prompt.ask("note (why)", default="", console=self._console) or None
        base = {"reviewer": self._reviewer, "note": note}
        if choice == "reject":
            return {
                "type": "reject",
                "message": note or "rejected by reviewer",
                "reviewer": self._reviewer,
            }
        if choice == "edit":
            while True:
                raw = Prompt.ask(
                    "new args as JSON",
                    default=json.dumps(request.get("args", {})),
                    console=self._console,
                )
                try:
                    args = json.loads(raw)
                    if isinstance(args, dict):
                        break
                except json.JSONDecodeError as error:
                    self._console.print(f"[red]not valid JSON:[/] {error}")
                    continue
                self._console.print("[red]args must be a JSON object[/]")
            return {
                "type": "edit",
                "edited_action": {"name": request["name"], "args": args},
                **base,
            }
        return {"type": "approve", **base}
