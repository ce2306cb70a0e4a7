"""The server as a process: embedded Redis by default, ready signal, graceful SIGTERM, nothing left behind."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import psutil

from allocator_client import AllocatorClient
from tests.integration.helpers import redemption
from trafficalloc.v1 import allocator_pb2 as pb

ROOT = pathlib.Path(__file__).resolve().parents[2]


def start(tmp: pathlib.Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tmp / "port"
    port_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOCATOR_")}
    args = ["--listen", "127.0.0.1:0", "--port-file", str(port_file), "--data-dir", str(tmp / "data")]
    with open(tmp / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "allocator.server", *args, "--log-format", "json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    deadline = time.monotonic() + 60
    while not port_file.exists():
        assert proc.poll() is None, (tmp / "server.log").read_text()
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.05)
    return proc, f"127.0.0.1:{port_file.read_text()}"


def test_sigterm_stops_server_and_its_redis_and_data_survives(tmp_path: pathlib.Path) -> None:
    proc, target = start(tmp_path)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert any("redis-server" in c.name() for c in children)
    with AllocatorClient(target) as c:
        rid = c.record_redemption(redemption("r-1", "m-1", 42)).redemption.redemption_id
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not (tmp_path / "port").exists()
    # its children (Redis, the solver process started with it, multiprocessing's resource tracker) go
    # with it: each exits within moments of the server (the tracker once the server's end of its pipe closes)
    _, alive = psutil.wait_procs(children, timeout=15)
    assert not [c for c in alive if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    log = (tmp_path / "server.log").read_text()
    assert '"msg": "server stopped"' in log  # structured JSON lines

    proc, target = start(tmp_path)  # same data directory: the AOF brings the redemption back
    try:
        with AllocatorClient(target) as c:
            assert c.get_redemption(pb.GetRedemptionRequest(redemption_id=rid)).redemption.points == 42
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
