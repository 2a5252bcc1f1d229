"""Latency budgets: an attempt runs on a daemon thread (or its own event loop) and is
abandoned when it overruns; Python cannot kill a thread, so an overrun keeps its slot."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from tools.spec import ToolContext, ToolSpec

__all__ = ["MAX_TOOL_THREADS", "NoThread", "OverBudget", "run_attempt"]

MAX_TOOL_THREADS = 32
"""Calls with a latency budget (and async tools) run on their own daemon threads, at most this
many at once. One that overruns is abandoned (Python cannot kill a thread) and keeps its slot
until it returns; daemon threads never keep the process from exiting."""
_SLOTS = threading.BoundedSemaphore(MAX_TOOL_THREADS)


class OverBudget(TimeoutError):
    """An attempt overran the contract's latency budget (the tool may still be running)."""


class NoThread(TimeoutError):
    """No tool thread came free within the budget: the attempt never started."""


def _on_thread(work: Callable[[], Any], budget: float | None) -> Any:
    """`work()` on a daemon thread, waiting at most `budget` seconds in all (None: no bound)."""
    slots, deadline = _SLOTS, None if budget is None else time.monotonic() + budget
    if not slots.acquire(timeout=budget if budget is not None else -1):
        raise NoThread(
            f"no tool thread came free within the {budget}s latency budget (all "
            f"{MAX_TOOL_THREADS} are busy, perhaps with calls that overran theirs)"
        )
    done, box = threading.Event(), {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as error:  # handed to the caller's thread
            box["error"] = error
        finally:
            slots.release()
            done.set()

    threading.Thread(target=run, name="bastion-tool", daemon=True).start()
    if not done.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
        raise OverBudget(f"no answer within the {budget}s latency budget")
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _bounded(awaitable: Any, budget: float | None) -> Any:
    """Await `awaitable`, cancelling it at the budget so an async tool does not run on."""
    scope = asyncio.timeout(budget)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise OverBudget(f"no answer within the {budget}s latency budget") from None
        raise


def run_attempt(spec: ToolSpec, args: BaseModel, ctx: ToolContext) -> Any:
    """One attempt at calling `spec`, within its latency budget (if any)."""
    budget = spec.timeout_s
    if budget is None and not inspect.iscoroutinefunction(spec.func):
        result = spec.run(args, ctx)
        if not inspect.isawaitable(result):
            return result
        # An awaitable from a plain function (e.g. an async simulation): never run a loop on
        # the caller's thread, which may already be running one.
        return _on_thread(lambda: asyncio.run(_bounded(result, None)), None)

    def run_once() -> Any:
        result = spec.run(args, ctx)
        if inspect.isawaitable(result):  # an async tool: a loop of its own, on this thread
            return asyncio.run(_bounded(result, budget))
        return result

    return _on_thread(run_once, budget)
