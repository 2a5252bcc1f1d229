"""The import direction of DESIGN §2 holds: packages only import the ones below them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"observability", "guards", "tools", "memory", "nodes", "graphs", "console"}
ALLOWED = {
    "observability": set(),
    "guards": {"observability"},
    "tools": {"observability"},
    "memory": {"observability"},
    "nodes": {"guards", "tools", "memory", "observability"},
    "graphs": {"nodes", "guards", "tools", "memory", "observability"},
    "console": {"graphs", "nodes", "guards", "tools", "memory", "observability"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages a module imports (absolute imports only: we use no relative)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; use absolute imports"
            found.add((node.module or "").split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_is_below_it(package: str) -> None:
    """Every module of `package` imports only itself and the packages DESIGN §2 allows."""
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    for path in files:
        wrong = imported_packages(path) - ALLOWED[package] - {package}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)} (not allowed)"


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The walker sees imports inside functions too, so the test above can fail."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from graphs.orchestrator import build_orchestrator\n")
    assert imported_packages(module) == {"graphs"}
