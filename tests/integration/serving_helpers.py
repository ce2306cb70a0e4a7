"""Shared set-up of the serving tests: a solved day, pick requests at chosen times, counters read back."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable

import redis
from google.protobuf import timestamp_pb2

from allocator.store.keys import Keys
from allocator_client import AllocatorClient
from tests.integration.helpers import DATE, HOME, eligibility, inventory, redemption
from trafficalloc.v1 import allocator_pb2 as pb

ROOT = pathlib.Path(__file__).resolve().parents[2]
DAY = dt.date.fromisoformat(DATE)


def at(hour: int, minute: int = 0, second: float = 0.0) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    moment = dt.datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=dt.UTC)
    ts.FromDatetime(moment + dt.timedelta(seconds=second))
    return ts


def clock_at(hour: int, minute: int = 0, *, day: dt.date = DAY) -> Callable[[], float]:
    """A server clock standing at hour:minute of `day` (UTC): Replan refuses days and hours already over,
    so a test re-planning the day it simulates gives its server that day's time, whatever the wall clock
    says."""
    moment = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC).timestamp()
    return lambda: moment


def solved_day(c: AllocatorClient, *, merchants: int = 30, free: int = 10, capacity: int = 2_000) -> str:
    """A day with `merchants` paid redemptions in the north and `free` daily-promotion merchants."""
    c.publish_inventory(inventory(capacity=capacity))
    for i in range(merchants):
        c.record_redemption(redemption(f"r{i}", f"m{i}", 500 + 37 * i))
    if free:
        c.set_eligibility(eligibility("e1", *[f"f{i}" for i in range(free)]))
    return c.solve(pb.SolveRequest(start_date=DATE)).plan.plan_id


def pick(
    c: AllocatorClient,
    hour: int,
    minute: int = 59,
    *,
    count: int = 5,
    region: str = "north",
    channel: int = HOME,
    request_id: str = "",
) -> pb.PickMerchantsResponse:
    return c.pick_merchants(
        pb.PickMerchantsRequest(
            channel=channel, region=region, time=at(hour, minute), count=count, request_id=request_id
        )
    )


def node_plan(c: AllocatorClient, hour: int, *, channel: int = HOME, region: str = "north") -> dict[str, int]:
    """Planned impressions of each line on a node ("p:<redemption>" or "f:<merchant>")."""
    na = c.get_node_allocation(
        pb.GetNodeAllocationRequest(date=DATE, hour=hour, channel=channel, region=region, page_size=1000)
    )
    return {(f"f:{e.merchant_id}" if e.free else f"p:{e.redemption_id}"): e.impressions for e in na.entries}


def node_counts(
    r: redis.Redis, prefix: str, hour: int, *, channel: int = HOME, region: str = "north"
) -> dict[str, int]:
    raw = r.hgetall(Keys(prefix).serving_node(DATE, channel, hour, region))
    return {k.decode(): int(v) for k, v in raw.items()}


def start_process(
    tmp: pathlib.Path, name: str, redis_url: str, prefix: str
) -> tuple[subprocess.Popen[bytes], str]:
    """The server as a separate process on a shared Redis; returns it and its target once ready."""
    port_file = tmp / f"{name}.port"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOCATOR_")}
    args = ["--listen", "127.0.0.1:0", "--port-file", str(port_file), "--redis-url", redis_url]
    args += ["--key-prefix", prefix, "--log-format", "json"]
    with open(tmp / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "allocator.server", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    deadline = time.monotonic() + 60
    while not port_file.exists():
        assert proc.poll() is None, (tmp / f"{name}.log").read_text()
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.05)
    return proc, f"127.0.0.1:{port_file.read_text()}"
