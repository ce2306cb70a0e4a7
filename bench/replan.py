"""An intraday re-plan's solve, cold and warm from the plan it replaces; the last line printed is JSON.

    python -m bench.replan --merchants 10000 --regions 70 --free-merchants 5000 --from-hour 12 --json

A generated day (the day `allocatorctl generate` makes) is built and solved as the service does; then the
morning is "delivered": every line of an hour before --from-hour shows its planned impressions times a
pace factor drawn once per merchant from [1 - spread, 1 + spread] (--pace-spread), never past its plan (as
the pick script stops a line there) nor the node's capacity, and the rest of the day is re-planned as the
Replan RPC does (allocator.serving.replan). The
re-plan's problem is solved twice: cold, and warm from the first plan's node prices (optimise/paid_warm.py,
as Planner.warm_start maps them). Both must reach the same objective.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections import defaultdict

import numpy as np

from allocator.domain import Plan, Problem, ProblemInputs, SolveParams
from allocator.optimise import solve
from allocator.optimise.paid_warm import WarmPrices, prepare
from allocator.problem import build_problem
from allocator.rules import load_rules
from allocator.serving.replan import Delivered, NodeId, replan_problem
from allocator_client.daygen import generate_day
from bench.instance import scenario_inputs


def delivered_morning(
    inputs: ProblemInputs,
    problem: Problem,
    plan: Plan,
    date: dt.date,
    from_hour: int,
    spread: float,
    seed: int,
) -> Delivered:
    """The counters of a morning that followed the plan at each merchant's own pace."""
    rng = np.random.default_rng(seed)
    pace: dict[str, float] = {}
    lines: dict[NodeId, dict[str, int]] = defaultdict(dict)
    budget: dict[str, int] = defaultdict(int)
    demands = problem.source_of_demands()
    free = problem.source_of_free()
    rows = [
        (
            int(n),
            f"p:{inputs.redemptions[demands[d]].redemption_id}",
            inputs.redemptions[demands[d]].merchant_id,
            int(x),
        )
        for d, n, x in zip(plan.paid_demand, plan.paid_node, plan.paid_impressions, strict=True)
    ] + [
        (
            int(n),
            f"f:{inputs.eligibility[free[f]].merchant_id}",
            inputs.eligibility[free[f]].merchant_id,
            int(x),
        )
        for f, n, x in zip(plan.free_merchant, plan.free_node, plan.free_impressions, strict=True)
    ]
    for n, field, merchant, planned in rows:
        node = inputs.nodes[n]
        if node.date != date or node.hour >= from_hour:
            continue
        factor = pace.setdefault(merchant, float(rng.uniform(1 - spread, 1 + spread)))
        node_id = (int(node.channel), node.hour, node.region)
        room = node.capacity - lines[node_id].get("_n", 0)
        shown = max(0, min(room, planned, round(planned * factor)))
        if shown:
            lines[node_id][field] = shown
            lines[node_id]["_n"] = lines[node_id].get("_n", 0) + shown
            budget[field] += shown * (node.price if field[:2] == "p:" else 1)  # millipoints / impressions
    return Delivered(dict(lines), dict(budget))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--merchants", type=int, default=10_000)
    ap.add_argument("--free-merchants", type=int, default=5_000)
    ap.add_argument("--regions", type=int, default=70)
    ap.add_argument("--from-hour", type=int, default=12)
    ap.add_argument("--pace-spread", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    a = ap.parse_args(argv)
    date = dt.date(2026, 12, 1)
    params = SolveParams(time_limit_s=24 * 3600.0)
    rules = load_rules()
    regions = tuple(f"r{i:02d}" for i in range(a.regions))
    scenario = generate_day(
        date, merchants=a.merchants, free_merchants=a.free_merchants, regions=regions, seed=a.seed
    )
    inputs = scenario_inputs(scenario, rules)
    problem = build_problem(inputs, params)
    t0 = time.perf_counter()
    prepare()  # the network simplex's machine code, as the service's solver process loads it at start
    prepare_s = time.perf_counter() - t0  # (cold solves may use it too: paid_flow._restricted)
    t0 = time.perf_counter()
    plan = solve(problem, params)
    first_s = time.perf_counter() - t0
    delivered = delivered_morning(inputs, problem, plan, date, a.from_hour, a.pace_spread, a.seed)
    rp = replan_problem(inputs, date, a.from_hour, delivered, params)

    # the first plan's prices on the re-plan's nodes, as Planner.warm_start maps them
    if plan.node_warm_price is None or plan.node_relieves_under is None:  # the duals failed (logged)
        print(json.dumps({"error": "the first plan has no shadow prices to start from"}))
        return 1
    index = {(n.date, n.hour, int(n.channel), n.region): i for i, n in enumerate(inputs.nodes)}
    at = np.array(
        [index[(n.date, n.hour, int(n.channel), n.region)] for n in rp.inputs.nodes], dtype=np.int64
    )
    warm = WarmPrices(plan.node_warm_price[at].astype(np.float64), plan.node_relieves_under[at])
    t0 = time.perf_counter()
    cold = solve(rp.problem, params)
    cold_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = solve(rp.problem, params, warm=warm)
    warm_s = time.perf_counter() - t0
    out = {
        "merchants": a.merchants,
        "arcs": int(problem.arc_demand.size),
        "first_solve_s": round(first_s, 3),
        "from_hour": a.from_hour,
        "pace_spread": a.pace_spread,
        "replan_arcs": int(rp.problem.arc_demand.size),
        "delivered_impressions": sum(v.get("_n", 0) for v in delivered.node_lines.values()),
        "cold_solve_s": round(cold_s, 3),
        "cold_paid_s": round(float(cold.extras["paid_seconds"]), 3),
        "warm_solve_s": round(warm_s, 3),
        "warm_paid_s": round(float(again.extras["paid_seconds"]), 3),
        "warm_rounds": int(again.extras["paid_warm_rounds"]),
        "prepare_s": round(prepare_s, 3),
        "same_objective": again.objective == cold.objective,
        "status": again.status.name,
    }
    if not a.json:
        print(json.dumps(out, indent=2), file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
