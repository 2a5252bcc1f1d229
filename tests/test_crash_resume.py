"""A run killed mid-flight (SIGKILL) resumes from its SQLite checkpoint in a new process, once."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import StateSnapshot

from graphs.support import SupportDB, build_support_graph
from memory import open_checkpointer

WORKER = Path(__file__).with_name("crash_worker.py")
REPO_ROOT = Path(__file__).resolve().parent.parent
THREAD = "crash-1"
MARKER_DEADLINE_S = 60.0
RESUME_DEADLINE_S = 60.0


def _worker_cmd(tmp_path: Path, *mode: str) -> list[str]:
    return [
        sys.executable,
        str(WORKER),
        str(tmp_path / "checkpoints.sqlite"),
        str(tmp_path / "support.sqlite"),
        THREAD,
        *mode,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def _read_until(proc: subprocess.Popen[str], marker: str, stderr: Path) -> str:
    """The first stdout line starting with `marker`; fails if the worker exits or stalls."""
    assert proc.stdout is not None
    deadline = time.monotonic() + MARKER_DEADLINE_S
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(timeout=left):
                break
            line = proc.stdout.readline()
            if line.startswith(marker):
                return line.strip()
            if not line:  # EOF: the worker exited before reaching the marker
                proc.wait()
                pytest.fail(
                    f"worker exited with {proc.returncode} before printing {marker!r}; "
                    f"stderr:\n{stderr.read_text()[-3000:]}"
                )
    proc.kill()
    proc.wait()
    pytest.fail(f"no {marker!r} from the worker within {MARKER_DEADLINE_S}s")


def _state(tmp_path: Path) -> StateSnapshot:
    config: Any = {"configurable": {"thread_id": THREAD}}
    with open_checkpointer(sqlite_path=tmp_path / "checkpoints.sqlite") as saver:
        graph = build_support_graph(SupportDB(tmp_path / "support.sqlite")).compile(
            checkpointer=saver
        )
        return graph.get_state(config)


def _kill_after_execute(tmp_path: Path, tool: str) -> str:
    stderr = tmp_path / "crash.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            _worker_cmd(tmp_path, "--crash-after", tool),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=_env(),
        )
    try:
        return _read_until(proc, "CHECKPOINTED execute", stderr)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.stdout.close()


def _resume_in_new_process(tmp_path: Path) -> str:
    done = subprocess.run(
        _worker_cmd(tmp_path, "--resume"),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=RESUME_DEADLINE_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("tool", "next_node", "cancelled_before_crash"),
    [
        # The first execute step (a read): the cancel is still ahead of the crash.
        pytest.param("lookup_customer", "agent_triage", 0, id="killed-after-first-execute"),
        # The effect is done and checkpointed: the resumed run must not cancel again.
        pytest.param("cancel_order", "agent_orders", 1, id="killed-after-cancel"),
    ],
)
def test_killed_run_resumes_in_new_process_with_one_effect(
    tmp_path: Path, tool: str, next_node: str, cancelled_before_crash: int
) -> None:
    """SIGKILL after an `execute` step leaves an unfinished checkpoint; a new process resumes
    it to `resolved`, and the order is cancelled once and the customer emailed once."""
    marker = _kill_after_execute(tmp_path, tool)
    assert marker == f"CHECKPOINTED execute {tool}"

    crashed = _state(tmp_path)
    db = SupportDB(tmp_path / "support.sqlite")
    assert crashed.next == (next_node,), "the checkpoint should be the one right after execute"
    assert not crashed.values.get("outcome")
    assert db.counts()["order_events"] == cancelled_before_crash
    assert db.counts()["outbound_emails"] == 0

    assert _resume_in_new_process(tmp_path) == "OUTCOME resolved"

    finished = _state(tmp_path)
    assert finished.next == ()
    assert finished.values["outcome"]["status"] == "resolved"
    events = db.all("SELECT order_id, event FROM order_events")
    assert events == [{"order_id": "ORD-1004", "event": "cancelled"}]
    assert db.one("SELECT status FROM orders WHERE id = 'ORD-1004'") == {"status": "cancelled"}
    sent = db.all("SELECT to_addr FROM outbound_emails WHERE status = 'sent'")
    assert sent == [{"to_addr": "dev@example.com"}]
