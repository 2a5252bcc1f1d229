"""Native extensions that break each other when loaded in the wrong order stay in the right one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_policies_still_work_when_memory_loads_its_vector_index_first() -> None:
    """usearch (memory's HNSW index) loaded before regopy (the policy engine) made policies
    mis-evaluate and compile errors lose their lines; memory now loads regopy first. The probe
    imports memory before anything else, then runs policy and approval tests in that process."""
    probe = (
        "import sys, memory, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
        "'tests/test_policy_bundle.py', "
        "'tests/test_support.py::test_large_refund_waits_for_approval_then_runs']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
