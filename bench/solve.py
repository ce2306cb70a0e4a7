"""Benchmark the optimiser on a synthetic day; the last line printed is one JSON object.

    python -m bench.solve --merchants 20000 --nodes 5000 --arcs-per-merchant 50 --contention 0.9 --json
    python -m bench.solve --instance day.json --oracle --json     # a scenario file, as `allocatorctl load`
    python -m bench.solve ... --warm-moved 0.05 --json            # + the day moved by 5 %, cold and warm

The instance is generated directly as arrays (no records): skewed merchant sizes (lognormal), peak hours,
regional skew and popular nodes; --contention C scales the paid points to C times the total paid supply.
Free merchants are a quarter of the paid ones, with half as many arcs each. With --instance FILE the
problem is the scenario file's day instead (checked as the service checks each write, then built as the
service builds it); --merchants, --nodes, --arcs-per-merchant and --contention are then ignored and the
figures report the file's sizes and its contention (paid points due over paid supply, in points).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import dataclass, replace

import numpy as np

from allocator.domain import Plan, Problem, SolveParams
from allocator.optimise import solve
from allocator.optimise.free_pool import node_free_capacity
from allocator.optimise.paid_flow import solve_paid
from allocator.optimise.paid_warm import WarmPrices, prepare
from allocator.problem import node_paid_points
from allocator.summary import plan_figures
from bench.instance import InstanceError, load_instance

_PRICE = np.array([0, 60, 40, 80])  # points per mille by channel value
_SHARE = np.array([0.0, 0.10, 0.15, 0.10])  # daily-promotion share by channel value


@dataclass(frozen=True)
class Spec:
    merchants: int
    nodes: int
    arcs_per_merchant: int
    contention: float
    seed: int


def _arcs(rng: np.random.Generator, tails: int, per_tail: int, popularity: np.ndarray) -> np.ndarray:
    """Distinct (tail, node) pairs drawn by node popularity, sorted by tail then node, as keys t*S + s."""
    n_nodes = popularity.size
    heads = rng.choice(n_nodes, size=tails * per_tail, p=popularity)
    keys = np.repeat(np.arange(tails, dtype=np.int64), per_tail) * n_nodes + heads
    return np.unique(keys)


def generate(spec: Spec) -> Problem:
    """A synthetic one-day Problem with the shape of real traffic, reproducible from the seed."""
    rng = np.random.default_rng(spec.seed)
    s, n = spec.nodes, spec.merchants
    hour = rng.integers(0, 24, s)
    peak = 1 + 2 * np.exp(-((hour - 12) ** 2) / 8) + 1.5 * np.exp(-((hour - 19) ** 2) / 4)
    region_weight = 1 / np.arange(1, 21)
    region = rng.choice(20, s, p=region_weight / region_weight.sum())
    channel = rng.integers(1, 4, s).astype(np.int8)
    capacity = (rng.lognormal(8.0, 0.8, s) * peak * (1 + 5 * region_weight[region])).astype(np.int64)
    price = np.maximum(1, (_PRICE[channel] * rng.uniform(0.8, 1.25, s)).astype(np.int64))
    reserved = np.floor(capacity * _SHARE[channel]).astype(np.int64)
    popularity = peak * region_weight[region] * rng.lognormal(0, 0.5, s)
    popularity /= popularity.sum()

    # paid demands: lognormal sizes scaled to the contention, arcs drawn by node popularity
    keys = _arcs(rng, n, spec.arcs_per_merchant, popularity)
    arc_demand, arc_node = (keys // s).astype(np.int32), (keys % s).astype(np.int32)
    total_paid = int((((capacity - reserved) * price) // 1000).sum())
    size = rng.lognormal(0, 1.0, n)
    points = np.maximum(1, np.round(size / size.sum() * spec.contention * total_paid)).astype(np.int64)
    quality = rng.uniform(0.5, 1.5, (n, 4))

    # free merchants: a quarter as many, half the arcs, weights 1..5, daily caps that bind for some
    n_free = max(1, n // 4)
    fkeys = _arcs(rng, n_free, max(1, spec.arcs_per_merchant // 2), popularity)
    weight = rng.choice([1.0, 2.0, 3.0, 5.0], n_free, p=[0.55, 0.25, 0.12, 0.08])
    quota = max(1, int(2 * (capacity.sum() * 0.15) / weight.sum()))
    return Problem(
        node_capacity=capacity,
        node_price=price,
        node_channel=channel,
        node_free_reserved=reserved,
        demand_points=points,
        demand_program=rng.integers(1, 3, n).astype(np.int8),
        arc_demand=arc_demand,
        arc_node=arc_node,
        arc_quality=quality[arc_demand, channel[arc_node]],
        free_weight=weight,
        free_cap=np.floor(weight * quota + 0.5).astype(np.int64),
        free_arc_merchant=(fkeys // s).astype(np.int32),
        free_arc_node=(fkeys % s).astype(np.int32),
    )


def contention_of(problem: Problem) -> float | None:
    """Paid points due over the paid supply in points: the C that --contention asks for (None: no supply)."""
    supply = int(node_paid_points(problem).sum())
    return int(problem.demand_points.sum()) / supply if supply else None


def moved_day(problem: Problem, eps: float, seed: int) -> Problem:
    """The same day with each node's capacity and each demand's points moved by a factor in [1-eps, 1+eps]."""
    rng = np.random.default_rng(seed + 7919)
    s, d = problem.node_capacity.size, problem.demand_points.size
    return replace(
        problem,
        node_capacity=(problem.node_capacity * rng.uniform(1 - eps, 1 + eps, s)).astype(np.int64),
        demand_points=np.maximum(
            1, (problem.demand_points * rng.uniform(1 - eps, 1 + eps, d)).astype(np.int64)
        ),
    )


def warm_resolve(
    problem: Problem, plan: Plan, params: SolveParams, eps: float, seed: int
) -> dict[str, object]:
    """Re-solve the day moved by eps, cold and warm from `plan`'s node prices (as a re-plan does)."""
    prices = WarmPrices(np.asarray(plan.node_warm_price, np.float64), np.asarray(plan.node_relieves_under))
    moved = moved_day(problem, eps, seed)
    t0 = time.perf_counter()
    cold = solve_paid(moved, params)
    t1 = time.perf_counter()
    warm = solve_paid(moved, params, prices)
    t2 = time.perf_counter()
    return {
        "warm_moved": eps,
        "warm_cold_paid_s": round(t1 - t0, 4),
        "warm_paid_s": round(t2 - t1, 4),
        "warm_rounds": warm.warm_rounds,
        "warm_same_objective": warm.objective == cold.objective,
    }


def run(
    spec: Spec, oracle: bool, baselines: bool, instance: str | None = None, warm_moved: float | None = None
) -> dict[str, object]:
    # no time limit in effect: the limit (60 s by default) counts from the start of the solve and only
    # cuts the free pool short, so a paid tier slower than it would otherwise leave the free pool empty
    params = SolveParams(time_limit_s=24 * 3600.0)
    started = time.perf_counter()
    if instance is None:
        problem = generate(spec)
        source: dict[str, object] = {
            "merchants": spec.merchants,
            "contention": spec.contention,
            "seed": spec.seed,
        }
    else:
        problem, inputs = load_instance(instance, params)
        source = {
            "instance": instance,
            "date": inputs.dates[0].isoformat(),
            "merchants": len({r.merchant_id for r in inputs.redemptions}),
            "redemptions": len(inputs.redemptions),
            "contention": None if (c := contention_of(problem)) is None else round(c, 6),
        }
    gen_s = time.perf_counter() - started
    t0 = time.perf_counter()
    prepare()  # the network simplex's machine code, as the service's solver process loads it at start
    prepare_s = time.perf_counter() - t0  # (cold solves use it too where paid_flow._restricted needs it)
    plan = solve(problem, params)
    figures = plan_figures(problem, plan)
    due = int(problem.demand_points.sum())
    out: dict[str, object] = {
        **source,
        "nodes": int(problem.node_capacity.size),
        "arcs": int(problem.arc_demand.size),
        "free_merchants": int(problem.free_weight.size),
        "free_arcs": int(problem.free_arc_merchant.size),
        "status": plan.status.name,
        "generate_s": round(gen_s, 4),
        "prepare_s": round(prepare_s, 4),
        "build_s": round(plan.build_seconds, 4),
        "solve_s": round(plan.solve_seconds, 4),
        "total_s": round(plan.build_seconds + plan.solve_seconds, 4),
        "paid_s": round(float(plan.extras.get("paid_seconds", 0.0)), 4),
        "paid_restricted": int(plan.extras.get("paid_restricted", 0)),
        "free_s": round(float(plan.extras.get("free_seconds", 0.0)), 4),
        "duals_s": round(float(plan.extras.get("duals_seconds", 0.0)), 4),
        "free_spread_s": round(float(plan.extras.get("free_spread_seconds", 0.0)), 4),
        "free_rounds": int(plan.extras.get("free_rounds", 0)),
        "free_maxflow_solves": int(plan.extras.get("free_maxflow_solves", 0)),
        "objective": plan.objective,
        "value": plan.value,
        "paid_under_delivery_ratio": int(plan.demand_under.sum()) / due if due else 0.0,
        "free_maxmin_level": plan.free_level,
        "free_jain": figures.free_jain,
    }
    if oracle:
        from bench.oracle import free_lp_level, paid_lp_objective

        t0 = time.perf_counter()
        oracle_objective = paid_lp_objective(problem, params)
        out["oracle_objective"] = oracle_objective
        out["oracle_s"] = round(time.perf_counter() - t0, 4)
        out["oracle_rel_gap"] = abs(plan.objective - oracle_objective) / max(1.0, abs(plan.objective))
        node_free = node_free_capacity(problem, plan.paid_node, plan.paid_impressions)
        out["free_maxmin_level_lp"] = free_lp_level(problem, node_free)
    if baselines:
        from allocator.optimise.baselines import hwm, proportional

        paidcap = node_paid_points(problem)
        for name, fn in (("hwm", hwm), ("proportional", proportional)):
            points = fn(problem.arc_demand, problem.arc_node, problem.demand_points, paidcap)
            impressions = points * 1000 // problem.node_price[problem.arc_node]
            delivered = np.bincount(problem.arc_demand, weights=points, minlength=problem.demand_points.size)
            out[f"{name}_under_delivery_ratio"] = float(due - delivered.sum()) / due if due else 0.0
            out[f"{name}_value"] = float(np.dot(problem.arc_quality, impressions))
    if warm_moved is not None:
        if plan.node_warm_price is None:  # the duals failed (logged): nothing to start from
            out["warm_moved"], out["warm_error"] = warm_moved, "the plan has no shadow prices"
        else:
            out.update(warm_resolve(problem, plan, params, warm_moved, spec.seed))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--merchants", type=int, default=5000)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--arcs-per-merchant", type=int, default=20)
    ap.add_argument("--contention", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--oracle", action="store_true", help="also solve the LP oracles with HiGHS")
    ap.add_argument("--baselines", action="store_true", help="also run the HWM and proportional baselines")
    ap.add_argument("--instance", metavar="FILE", help="a scenario file's day, not a generated one")
    ap.add_argument(
        "--warm-moved",
        type=float,
        metavar="EPS",
        help="also re-solve the paid tier of the day moved by up to EPS (0.05: 5 %%), cold and warm",
    )
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    spec = Spec(args.merchants, args.nodes, args.arcs_per_merchant, args.contention, args.seed)
    try:
        out = run(spec, args.oracle, args.baselines, args.instance, args.warm_moved)
    except InstanceError as exc:  # unreadable or refused scenario file
        print(f"bench.solve: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        for k, v in out.items():
            print(f"{k:>32}  {v}", file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
