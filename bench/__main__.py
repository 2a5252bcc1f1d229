"""Run the registered benchmarks, print a table (or JSON) and write bench/results/latest.json.

`--only` re-runs some ids and keeps the other ids' latest results in the file, so measuring one
benchmark never erases the rest."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BENCHMARKS = {
    "B1": "bench.b1_orchestration",
    "B3": "bench.b3_policy",
    "B6": "bench.b6_memory",
    "B7": "bench.b7_scanners",
    "B8": "bench.b8_trace",
    "B9": "bench.b9_killswitch",
    "B11": "bench.b11_budget",
    "B12": "bench.b12_gateway",
    "B13": "bench.b13_memory_write",
}
"""Benchmark id → module exposing `run() -> dict`."""

RESULTS = Path(__file__).parent / "results" / "latest.json"


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _table(results: list[dict[str, Any]]) -> Table:
    """The results as a rich table; extra fields go in the last column."""
    columns = ("id", "name", "value", "unit", "baseline", "ratio")
    table = Table(title="Bastion benchmarks")
    for column in (*columns, "extra"):
        table.add_column(column, justify="right" if column in columns[2:] else "left")
    for result in results:
        extra = "\n".join(f"{k}={_fmt(v)}" for k, v in result.items() if k not in columns)
        table.add_row(*(_fmt(result.get(c)) for c in columns), extra)
    return table


def _previous() -> list[dict[str, Any]]:
    """The results file as last written, or nothing if it is missing or unreadable."""
    try:
        previous = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return []
    return [r for r in previous if isinstance(r, dict)] if isinstance(previous, list) else []


def merged(previous: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`fresh` results replacing the same ids in `previous`, ordered as `BENCHMARKS` lists them."""
    by_id = {r.get("id"): r for r in previous} | {r["id"]: r for r in fresh}
    order = {bench_id: position for position, bench_id in enumerate(BENCHMARKS)}
    return sorted(by_id.values(), key=lambda r: order.get(r.get("id"), len(order)))


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the selected benchmarks and report them."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), help="run only this id (repeatable)"
    )
    args = parser.parse_args(argv)
    results = [importlib.import_module(BENCHMARKS[i]).run() for i in args.only or BENCHMARKS]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(merged(_previous(), results), indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        width = Console().width
        Console(width=max(width, 120)).print(_table(results))


if __name__ == "__main__":
    main()
