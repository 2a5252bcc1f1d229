"""Starts the real `langgraph dev` server on a free loopback port, offline, for server tests.

The server serves langgraph.json from the repo root (the support graph and the console app),
with its state in the given `BASTION_HOME` and every outbound call (tracing, analytics,
version check, license metadata) switched off: the tests run with no network.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

REPO = Path(__file__).resolve().parents[1]
LANGGRAPH = Path(sys.executable).parent / "langgraph"
READY_DEADLINE_S = 90.0
STOP_GRACE_S = 15.0

# Variables that would make the server (or the SDK) talk to LangSmith / LangChain services.
_SECRETS = (
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGGRAPH_API_KEY",
    "LANGGRAPH_CLOUD_LICENSE_KEY",
    "LANGSMITH_CONTROL_PLANE_API_KEY",
    "LANGSMITH_ENDPOINT",
    "LANGCHAIN_ENDPOINT",
)
_OFFLINE = {
    "LANGSMITH_TRACING": "false",
    "LANGSMITH_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    # langgraph_cli/analytics.py: anonymous usage ping on every CLI command.
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    # langgraph_api/cli.py: background PyPI "newer version" check.
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    # langgraph_api/config: self-hosted metrics and log shipping (off by default; pinned).
    "LANGGRAPH_METRICS_ENABLED": "false",
    "LANGGRAPH_LOGS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "BASTION_MODEL": "scripted",
}


@dataclass(frozen=True)
class Server:
    """A running `langgraph dev`."""

    url: str
    home: Path
    log: Path

    def client(self) -> SyncLangGraphClient:
        return get_sync_client(url=self.url, api_key=None, timeout=60.0)

    def db(self) -> Path:
        return self.home / "support.sqlite"

    def output(self) -> str:
        """The server's output so far (the end of it)."""
        return _output(self.log)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _output(log: Path) -> str:
    return log.read_text(errors="replace")[-8000:] if log.exists() else "<no output>"


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    last_error: Exception | None = None
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"`langgraph dev` exited with code {proc.returncode} before it was ready; "
                    f"output:\n{_output(log)}"
                )
            try:
                if http.get(f"{url}/ok").status_code == 200:
                    return
            except httpx.TransportError as error:
                last_error = error
            time.sleep(0.25)  # polling interval of the readiness probe, not synchronisation
    pytest.fail(
        f"`langgraph dev` not ready at {url}/ok after {READY_DEADLINE_S:.0f}s "
        f"(last error: {last_error!r}); output:\n{_output(log)}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_GRACE_S)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_GRACE_S)


def _absolute_config(workdir: Path) -> Path:
    """The repo's langgraph.json with every path made absolute, written into `workdir`."""
    config = json.loads((REPO / "langgraph.json").read_text())

    def absolute(spec: str) -> str:
        return str((REPO / spec).resolve()) if spec.startswith(".") else spec

    config["dependencies"] = [absolute(d) for d in config["dependencies"]]
    config["graphs"] = {name: absolute(spec) for name, spec in config["graphs"].items()}
    if "http" in config:
        config["http"]["app"] = absolute(config["http"]["app"])
    index = config.get("store", {}).get("index")
    if index:
        index["embed"] = absolute(index["embed"])
    path = workdir / "langgraph.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@contextmanager
def start_server(home: Path, extra_env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """Run `langgraph dev --no-browser --no-reload` with `BASTION_HOME=home` until the block
    ends (the server and the CLI that spawned it are stopped together)."""
    if not LANGGRAPH.exists():
        pytest.fail(f"{LANGGRAPH} not found; install the dev extras: pip install -e '.[dev]'")
    log = home / "langgraph-dev.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in _SECRETS}
    env.pop("BASTION_REDIS_URL", None)
    env.update(_OFFLINE, BASTION_HOME=str(home))
    env.update(extra_env or {})
    cmd = [
        str(LANGGRAPH),
        "dev",
        "--no-browser",
        "--no-reload",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    # Run from a folder of its own, with the repo's config made absolute: the dev server keeps
    # threads in `.langgraph_api/` under its working folder, and each test server must start
    # empty (not with threads from earlier servers or from a developer's own `langgraph dev`).
    workdir = home / "langgraph-dev"
    workdir.mkdir(parents=True, exist_ok=True)
    cmd += ["--config", str(_absolute_config(workdir))]
    with log.open("wb") as out:
        # Own process group: teardown signals the CLI and the server it spawns together.
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_ready(proc, url, log)
        yield Server(url=url, home=home, log=log)
    finally:
        _stop(proc)
