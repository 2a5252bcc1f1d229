"""The README's quickstart is short and runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def quickstart() -> str:
    section = README.split("## Quickstart", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README has no python block under ## Quickstart"
    return match.group(1)


def test_quickstart_is_at_most_15_lines() -> None:
    assert len(quickstart().strip().splitlines()) <= 15


def test_quickstart_runs_and_resolves(tmp_path: Path) -> None:
    """Run the block in a fresh interpreter: it defines two agents and ends `resolved`."""
    result = subprocess.run(
        [sys.executable, "-c", quickstart()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "'status': 'resolved'" in result.stdout
    assert "5." in result.stdout


def test_readme_shows_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README
