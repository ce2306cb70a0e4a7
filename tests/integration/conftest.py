"""Real parts: a real redis-server on a free loopback port, the real server on port 0, the real client.

One Redis serves the session; every test gets its own key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import os
import pathlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from allocator.server import App, start_app
from allocator.settings import Settings
from allocator.store.connect import RedisClient, connect
from allocator.store.embedded import EmbeddedRedis
from allocator_client import AllocatorClient


@dataclass
class RunningServer:
    app: App
    settings: Settings

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"


class ServerFactory:
    """Starts servers on a Redis URL with a given key prefix; stops them all at teardown."""

    def __init__(self, redis_url: str, tmp: pathlib.Path) -> None:
        self.redis_url = redis_url
        self.tmp = tmp
        self.prefix = f"t{uuid.uuid4().hex[:8]}"
        self.running: list[App] = []

    def start(self, *, clock: Callable[[], float] = time.time, **overrides: object) -> RunningServer:
        """clock: the server's "now" (serving_helpers.clock_at pins it to an hour of the day simulated)."""
        fields: dict[str, object] = {
            "listen": "127.0.0.1:0",
            "redis_url": self.redis_url,
            "key_prefix": self.prefix,
            "validate_plans": True,
            # solve in the server's own process: a child per test server would cost a second each;
            # test_solver_process.py covers the child-process solver (the default of a real server)
            "solve_process": False,
            "shutdown_grace_s": 1.0,
            "data_dir": self.tmp / "data",
        }
        fields.update(overrides)
        settings = Settings(**fields)  # type: ignore[arg-type]
        app = start_app(settings, clock=clock)
        self.running.append(app)
        return RunningServer(app, settings)

    def close(self) -> None:
        for app in self.running:
            app.stop(0.5)


# An external Redis for the whole session instead of a private one, e.g. the local cluster of
# `make test-cluster` (scripts/redis_cluster.py sets it to redis+cluster://127.0.0.1:P1,...).
EXTERNAL_REDIS_ENV = "ALLOCATOR_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def redis_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis | None]:
    """The session's private redis-server; None when ALLOCATOR_TEST_REDIS_URL names an external one."""
    if os.environ.get(EXTERNAL_REDIS_ENV):
        yield None
        return
    instance = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def redis_server(redis_instance: EmbeddedRedis | None) -> str:
    """URL of the session's Redis: a real redis-server on a free loopback port, or ALLOCATOR_TEST_REDIS_URL
    (a redis+cluster:// URL makes every server and client of the session use Redis Cluster)."""
    if redis_instance is None:
        return os.environ[EXTERNAL_REDIS_ENV]
    return redis_instance.url


@pytest.fixture
def redis_client(redis_server: str) -> Iterator[RedisClient]:
    client = connect(redis_server)
    yield client
    client.close()


@pytest.fixture
def servers(redis_server: str, tmp_path: pathlib.Path) -> Iterator[ServerFactory]:
    factory = ServerFactory(redis_server, tmp_path)
    yield factory
    factory.close()


@pytest.fixture
def server(servers: ServerFactory) -> RunningServer:
    """A real allocator server on port 0, using the session's Redis under a fresh key prefix."""
    return servers.start()


@pytest.fixture
def client(server: RunningServer) -> Iterator[AllocatorClient]:
    with AllocatorClient(server.target, timeout=60.0) as c:
        c.wait_until_serving(30)
        yield c
