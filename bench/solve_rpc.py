"""The Solve RPC end to end: inputs in Redis -> plan solved, cached and active; then the cache hit; then
a re-solve after the forecast moved (every node's capacity by up to 5 %), which starts warm from the active
plan's node prices (optimise/paid_warm.py).

Starts a real server process (embedded Redis in a temporary directory), loads a generated day through
the client library, and times Solve from the caller's side. Prints one JSON object as the last line.

    python -m bench.solve_rpc --merchants 10000 --regions 70 --free-merchants 5000 --seed 3 --json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from allocator_client import AllocatorClient
from allocator_client.daygen import generate_day
from allocator_client.scenario import apply_scenario
from trafficalloc.v1 import allocator_pb2 as pb


def moved_inventory(inventory: Sequence[pb.SupplyNode], spread: float, seed: int) -> list[pb.SupplyNode]:
    """The forecast moved: every node's capacity times a factor drawn from [1 - spread, 1 + spread]."""
    rng = random.Random(seed)
    moved = []
    for n in inventory:
        m = pb.SupplyNode()
        m.CopyFrom(n)
        m.capacity_impressions = int(n.capacity_impressions * rng.uniform(1 - spread, 1 + spread))
        moved.append(m)
    return moved


def start_server(tmp: pathlib.Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tmp / "port"
    args = ["--listen", "127.0.0.1:0", "--port-file", str(port_file), "--data-dir", str(tmp / "data")]
    with open(tmp / "server.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "allocator.server", *args], stderr=log)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start: see {tmp / 'server.log'}")
        time.sleep(0.05)
    return proc, f"127.0.0.1:{port_file.read_text()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--merchants", type=int, default=10_000)
    p.add_argument("--free-merchants", type=int, default=5_000)
    p.add_argument("--regions", type=int, default=70)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    a = p.parse_args(argv)
    date = dt.date.today() + dt.timedelta(days=1)
    regions = tuple(f"r{i:02d}" for i in range(a.regions))
    with tempfile.TemporaryDirectory(prefix="bench-solve-rpc-") as tmp_name:
        proc, target = start_server(pathlib.Path(tmp_name))
        try:
            with AllocatorClient(target, timeout=600) as client:
                client.wait_until_serving(60)
                rules = client.get_rules()
                scenario = generate_day(
                    date, merchants=a.merchants, free_merchants=a.free_merchants, regions=regions,
                    seed=a.seed, rules=rules,
                )  # fmt: skip
                t0 = time.perf_counter()
                apply_scenario(client, scenario, workers=8)
                load_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                plan = client.solve(pb.SolveRequest(start_date=date.isoformat())).plan
                solve_wall = time.perf_counter() - t0
                hits = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    again = client.solve(pb.SolveRequest(start_date=date.isoformat())).plan
                    hits.append(time.perf_counter() - t0)
                    assert again.cache_hit and again.plan_id == plan.plan_id
                # the forecasting system publishes a moved forecast for the day: the Solve re-plans warm
                moved = moved_inventory(scenario.inventory, 0.05, a.seed)
                client.publish_inventory(
                    pb.PublishInventoryRequest(request_id="moved", date=date.isoformat(), nodes=moved)
                )
                t0 = time.perf_counter()
                resolved = client.solve(pb.SolveRequest(start_date=date.isoformat())).plan
                resolve_wall = time.perf_counter() - t0
                assert not resolved.cache_hit and resolved.active
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    hit = sorted(hits)[len(hits) // 2]
    result = {
        "merchants": a.merchants,
        "redemptions": len(scenario.redemptions),
        "free_merchants": a.free_merchants,
        "supply_nodes": plan.supply_nodes,
        "demands": plan.demands,
        "arcs": plan.arcs,
        "status": pb.PlanStatus.Name(plan.status),
        "load_s": round(load_s, 3),
        "solve_wall_s": round(solve_wall, 3),
        "server_build_s": round(plan.build_seconds, 3),
        "server_solve_s": round(plan.solve_seconds, 3),
        "cache_hit_wall_s": round(hit, 4),
        "cache_hit_ratio": round(hit / solve_wall, 5),
        "moved_resolve_wall_s": round(resolve_wall, 3),
        "moved_resolve_server_solve_s": round(resolved.solve_seconds, 3),
    }
    if not a.json:
        print(f"loaded {len(scenario.redemptions)} redemptions in {load_s:.1f}s; solved {plan.arcs} arcs")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
