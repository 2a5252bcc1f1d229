"""Shared fixtures: a real Redis 8 on loopback, an isolated BASTION_HOME, both checkpointers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from langgraph.checkpoint.base import BaseCheckpointSaver

from bench.redis_server import RedisServerError
from bench.redis_server import redis_server as running_redis
from memory import open_checkpointer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A real Redis 8.2 with the search and JSON modules on a free loopback port; yields its URL."""
    try:
        with running_redis(modules=True) as url:
            yield url
    except RedisServerError as error:
        pytest.fail(str(error), pytrace=False)


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
