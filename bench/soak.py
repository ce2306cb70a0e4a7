"""Soak: PickMerchants at a steady rate for minutes, with an intraday re-plan every minute.

Starts its own Redis and R server processes with a realistic day (as bench.serve), then runs the open-loop
load generator minute by minute (each minute a step further into the evening peak hour) while a re-plan of
the rest of the day runs under the load every minute. Prints one JSON object as the last line: calls,
errors (and their gRPC codes), degraded answers, re-plans, the audit of the counters (over_delivered:
each line against the most any plan that served it allowed, as bench.serve.audit; nodes_over_capacity,
redemptions_over_due; over_final_plan, informational, against the final plan alone) and each server's
resident memory minute by minute.

    python -m bench.soak --minutes 10 --replicas 2 --json

The rate is 70% of the full rate measured first in the same run, on the same servers, as bench.serve
measures it (closed loop, 64 calls in flight, 20 s, in the hour before the soak's); --rate sets it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
import signal
import sys
import tempfile
import threading
import time
from typing import Any

import psutil
import redis

from allocator.store.embedded import EmbeddedRedis
from allocator_client import AllocatorClient
from allocator_client.daygen import generate_day
from allocator_client.scenario import apply_scenario
from bench.serve import HOUR, audit, closed_load, open_load, start_server
from trafficalloc.v1 import allocator_pb2 as pb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=int, default=10)
    p.add_argument(
        "--rate", type=float, default=0.0, help="PickMerchants calls a second (0: 70%% of the full rate)"
    )
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--load-procs", type=int, default=2)
    p.add_argument("--merchants", type=int, default=6_000)
    p.add_argument("--free-merchants", type=int, default=2_000)
    p.add_argument("--regions", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    # tomorrow: the soak simulates its own clock (picks carry their time), and Replan refuses a day or an
    # hour already over, so its re-plans from HOUR need a day that is not over by the service's clock
    date = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    start_time = dt.datetime(date.year, date.month, date.day, HOUR, 0, tzinfo=dt.UTC)
    regions = tuple(f"r{i:02d}" for i in range(a.regions))
    out: dict[str, Any] = {"minutes": a.minutes, "rate": a.rate, "replicas": a.replicas}
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp_name:
        tmp = pathlib.Path(tmp_name)
        red = EmbeddedRedis(tmp / "redis").start()
        servers = [start_server(tmp, f"s{i}", red.url) for i in range(a.replicas)]
        try:
            targets = [t for _, t in servers]
            with AllocatorClient(targets[0], timeout=600) as client:
                client.wait_until_serving(60)
                scenario = generate_day(
                    date, merchants=a.merchants, free_merchants=a.free_merchants, regions=regions,
                    seed=a.seed, rules=client.get_rules(),
                )  # fmt: skip
                apply_scenario(client, scenario)
                client.solve(pb.SolveRequest(start_date=date.isoformat()))
                merchants = sorted({r.merchant_id for r in scenario.redemptions})
                slots_w = {
                    (int(n.channel), n.region): float(n.capacity_impressions)
                    for n in scenario.inventory
                    if n.hour == HOUR
                }
                slots, weights = list(slots_w), list(slots_w.values())
                rate = a.rate
                if not rate:
                    before = start_time - dt.timedelta(hours=1)  # leaves the soak's hour untouched
                    full = closed_load(targets, 64, 20.0, a.load_procs, slots, weights, before)
                    out["full_rps"] = round(full["rps"], 1)
                    rate = out["rate"] = round(0.7 * full["rps"], 1)
                calls = errors = degraded = empty = replans = replan_errors = 0
                active = pb.GetActivePlanRequest(date=date.isoformat())
                plan_ids = [client.get_active_plan(active).plan.plan_id]
                p99s: list[float] = []
                error_codes: dict[str, int] = {}
                rss: dict[str, list[float]] = {f"s{i}": [] for i in range(a.replicas)}
                for minute in range(a.minutes):
                    when = start_time + dt.timedelta(minutes=minute, seconds=30)

                    def replan(hour: int = HOUR) -> None:
                        nonlocal replans, replan_errors
                        time.sleep(30)
                        try:
                            done = client.replan(pb.ReplanRequest(date=date.isoformat(), from_hour=hour))
                            plan_ids.append(done.plan.plan_id)
                            replans += 1
                        except Exception:  # counted and reported, the soak goes on
                            replan_errors += 1

                    t = threading.Thread(target=replan)
                    t.start()
                    r = open_load(targets, rate, 60.0, a.load_procs, slots, weights, when, merchants)
                    t.join()
                    calls += r["calls"]
                    errors += r["errors"]
                    for code, n in r["error_codes"].items():
                        error_codes[code] = error_codes.get(code, 0) + n
                    degraded += r["degraded"]
                    empty += r["empty"]
                    p99s.append(r["p99_ms"] or 0.0)
                    for i, (proc, _) in enumerate(servers):
                        rss[f"s{i}"].append(psutil.Process(proc.pid).memory_info().rss / 2**20)
                plan_id = client.get_active_plan(pb.GetActivePlanRequest(date=date.isoformat())).plan.plan_id
            rc = redis.Redis.from_url(red.url)
            checked = audit(rc, plan_ids, date)
            # informational: against the final plan alone, a line served by an earlier plan between a
            # re-plan's snapshot and its swap counts as over (the re-plan did not plan those impressions)
            checked["over_final_plan"] = audit(rc, [plan_id], date)["over_delivered"]
            rc.close()
            growth = {k: (v[-1] - v[0]) / v[0] for k, v in rss.items() if v}
            out.update(
                calls=calls,
                errors=errors,
                error_codes=error_codes,
                degraded=degraded,
                empty_share=round(empty / max(1, calls), 4),
                replans=replans,
                replan_errors=replan_errors,
                p99_ms_by_minute=[round(x, 1) for x in p99s],
                rss_mb_first_minute={k: round(v[0], 1) for k, v in rss.items()},
                rss_mb_end={k: round(v[-1], 1) for k, v in rss.items()},
                rss_mb_by_minute={k: [round(x, 1) for x in v] for k, v in rss.items()},
                rss_growth_max=round(max(growth.values()), 4) if growth else None,
                **checked,
            )
        finally:
            for proc, _ in servers:
                proc.send_signal(signal.SIGTERM)
            for proc, _ in servers:
                proc.wait(timeout=60)
            red.stop()
    if not a.json:
        print(json.dumps(out, indent=2))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
