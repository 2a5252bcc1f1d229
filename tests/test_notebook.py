"""The notebooks (quickstart, memory) run top to bottom in a fresh kernel and show what they say."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat import NotebookNode

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
MEMORY_NOTEBOOK = REPO / "notebooks" / "memory.ipynb"
CELL_TIMEOUT_S = 120

# The notebook is offline by design; make sure nothing in the kernel tries to trace remotely.
_OFFLINE = {
    "LANGSMITH_TRACING": "false",
    "LANGSMITH_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
}
_SECRETS = ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")


def _text(cell: NotebookNode) -> str:
    """Everything a code cell printed or displayed, as text."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "".join(parts)


def _cell(nb: NotebookNode, marker: str) -> NotebookNode:
    """The one code cell whose source contains `marker`."""
    matches = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(matches) == 1, f"expected one code cell containing {marker!r}, got {len(matches)}"
    return matches[0]


def _execute(path: Path) -> NotebookNode:
    """A notebook, executed in memory in a fresh kernel (the file on disk is left as it is)."""
    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in _SECRETS}
    env.update(_OFFLINE)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(REPO)}},
    )
    client.execute(cwd=str(REPO), env=env)  # raises CellExecutionError naming the failing cell
    return nb


@pytest.fixture(scope="module")
def executed() -> NotebookNode:
    """The quickstart, executed."""
    return _execute(NOTEBOOK)


@pytest.mark.parametrize("path", [NOTEBOOK, MEMORY_NOTEBOOK], ids=lambda path: path.stem)
def test_notebook_is_saved_valid_and_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and any(c.cell_type == "markdown" for c in nb.cells)
    assert all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.slow
def test_quickstart_runs_and_shows_outcome_history_and_approval(executed: NotebookNode) -> None:
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []

    first_run = _text(_cell(executed, '"receipt-1"'))
    assert "'status': 'resolved'" in first_run
    assert "'tool_calls': 2" in first_run
    assert "receipts sent: ['ACC-1']" in first_run

    history = _text(_cell(executed, "get_state_history"))
    assert "next=['intake']" in history
    assert "next=['agent_researcher']" in history and "next=['agent_operator']" in history
    assert "next=['finalize']" in history

    interrupt = _text(_cell(executed, '"close-1"'))
    assert "'name': 'close_account'" in interrupt
    assert "'zone': 'red'" in interrupt
    assert "'action_name': 'close_account'" in interrupt
    assert "waiting at: ('approval',)" in interrupt
    assert "ACC-1 status: open" in interrupt  # nothing ran before the approval

    final = _text(_cell(executed, "Command(resume="))
    assert "human:you" in final
    assert "ACC-1 status: closed" in final
    assert "final outcome: resolved" in final
    assert "closed for tenant acme" in final


@pytest.mark.slow
def test_memory_notebook_shows_a_commit_a_diff_and_a_revert() -> None:
    executed = _execute(MEMORY_NOTEBOOK)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []

    first = _text(_cell(executed, '"learned from ticket T01"'))
    assert "(#1) by agent:support: 3 changes" in first
    assert "put customers/alice contact v1" in first
    assert "missing tag(s) purpose" in _text(_cell(executed, "MissingTagsError as error"))

    recall = _text(_cell(executed, "memory.recall(support")).splitlines()
    assert "contact" in recall[0] and "by email" in recall[0], "the closest record ranks first"
    assert "billing purpose sees: []" in recall and "tenant globex sees: []" in recall

    episode = _text(_cell(executed, '"learned from ticket T07"'))
    assert (
        "(#2) by agent:triage" in episode and "contact now: Alice wants phone calls only" in episode
    )

    diff = _text(_cell(executed, "memory.diff(")).splitlines()
    assert diff == [
        "changed  contact  'Alice wants to be contacted by email' -> "
        "'Alice wants phone calls only'",
        "added    vip      None -> 'Alice is a VIP: refund without asking'",
    ]

    revert = _text(_cell(executed, "memory.revert("))
    assert revert.startswith("committed: commit ") and "(#3) revert " in revert
    assert "contact now: Alice wants to be contacted by email" in revert
    assert "vip now: None" in revert

    history = _text(_cell(executed, "memory.history(")).splitlines()
    contact = [line for line in history if line[:2] in ("v1", "v2", "v3")]
    assert [line.split()[2] for line in contact] == ["agent:support", "agent:triage", "human:lee"]
    assert contact[0].endswith("by email") and contact[1].endswith("phone calls only")
    assert contact[2].endswith("by email"), "the revert restored the first version"
    assert "vip v2 deleted=True None" in history, "the added key was deleted by a tombstone"
    assert "as of the bad commit: Alice wants phone calls only" in history
    assert "keys as of the first commit: ['contact', 'delivery', 'language']" in history
    assert history[-1].startswith("#3 human:lee") and "T07 was Bob's ticket" in history[-1]
