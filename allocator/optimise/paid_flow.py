"""The guaranteed (points) tier as one integral min-cost flow.

Flow is measured in points. Graph nodes: demand d (0..D-1, supply = its points due), supply node s
(D..D+S-1), and one sink (D+S, supply = minus all points). Because a node's price is the same for every
demand on it, a point is a point everywhere and the problem is a pure network flow, solved exactly in
integers by OR-Tools' SimpleMinCostFlow, built from numpy arrays in one call per kind of data. A cold
solve first leaves out the overflow parts it guesses no optimum uses and proves the answer for the whole
network, or repairs it (`_restricted`; docs/model.md "Cold solves without the overflow they guess unused").

Under-delivery comes first, exactly: the model charges P per undelivered point (a demand -> sink arc of
cost P, P large enough to dominate any value), and the solver is asked for the same thing without that
arc: `solve_max_flow_with_min_cost` delivers the most points the supply can carry (a max flow), and among
those flows the cheapest. That is the model's optimum whenever P dominates (which is what P is for, and
what the HiGHS oracle, solving the model with its P arcs, checks), and it is lexicographic by
construction where P might not. It is also faster: without the P arcs the solver's costs span 10^4
instead of 10^7, so cost scaling needs fewer refinements (the same graphs back to back: 10.5-10.9 s ->
8.5-8.7 s at 1M arcs, 68.9 s -> 58.4 s at 5M arcs, same optimum; docs/model.md "How the solver is
asked").

Representativeness (SHALE's idea) is a *soft* cap on each arc: demand d may take up to
cap[d,s] = ceil(kappa * points_d * paidcap_s / eligible_paidcap_d) points from node s at the full value,
and more only through a parallel overflow arc that costs `spread_penalty` more per point. Soft rather than
hard caps because a hard cap can strand points that the supply could carry: the caps spread delivery over
the eligible supply, but they never cause under-delivery (the penalty is far below the under-delivery one).

The graph handed to OR-Tools is that model with capacities tightened where no optimum can use them (same
optimal cost, which the HiGHS oracle in bench/oracle.py checks): every arc out of demand d carries at most
due_d; the overflow arc carries at most min(K_s, due_d) - cap (dropped when that is 0); with
spread_penalty == 0 the capped and overflow arcs are one arc. The model itself is unchanged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
from ortools.graph.python import min_cost_flow

from allocator.domain import F64, I32, I64, Problem, SolveParams
from allocator.optimise.caps import group_sums, spread_caps
from allocator.optimise.paid_warm import Parts, WarmPrices, restricted_flows, warm_flows
from allocator.problem import node_paid_points

logger = logging.getLogger(__name__)

_COST_LIMIT = 2**62  # |total cost| must stay below this (int64 with headroom)
RESTRICT_OVERFLOW = True  # cold solves: overflow parts only into nodes the capped parts cannot fill, first
MAX_KEPT_OVERFLOW_SHARE = 0.05  # ... unless that keeps more of the overflow parts than this (measured: it
# pays keeping 0.6 % of them, the service's own day; keeping 18-31 % gained nothing on bench.solve's 1M-arc
# and contended days, and at 1M merchants, 14.5 % kept, it came to nothing after ~6 min: solved whole then)


@dataclass(frozen=True)
class PaidResult:
    """The paid tier's allocation: arcs with positive flow, per-demand totals and the objective."""

    ok: bool
    detail: str
    demand: I32
    node: I32
    points: I64
    impressions: I64
    delivered: I64
    under: I64
    value: float
    penalty: float
    objective: float
    build_seconds: float = 0.0
    warm_rounds: int = 0  # 0: solved cold; warm: 1 settled by the reduced solve, 2 finished by the simplex
    restricted: int = 0  # cold: 0 the whole network, or without some overflow parts: 1 certified, 2 finished


def arc_caps_and_costs(problem: Problem, params: SolveParams) -> tuple[I64, I64, I64]:
    """Per paid arc: representativeness cap, node paid capacity and unit cost (all in points / cost units).

    cap = ceil(kappa * points_d * paidcap_s / eligible_paidcap_d), clipped to paidcap_s (exact: caps.py);
    cost = -round_half_up(value_scale * quality * 1000 / price_s): minus the value of one point there.
    """
    paidcap = node_paid_points(problem)
    ad = problem.arc_demand.astype(np.int64)
    an = problem.arc_node.astype(np.int64)
    pc = paidcap[an]
    eligible = group_sums(ad, pc, problem.demand_points.size)
    cap = spread_caps(params.kappa, problem.demand_points[ad], pc, eligible[ad])
    value = params.value_scale * problem.arc_quality * 1000.0 / problem.node_price[an]
    cost = -np.floor(value + 0.5).astype(np.int64)
    return cap, pc, cost


def effective_params(problem: Problem, params: SolveParams) -> SolveParams:
    """The params the paid tier really uses: the under-delivery penalty raised, where needed, to 1000x the
    dearest arc's cost, so that delivering paid points always dominates value (part of the model)."""
    if problem.arc_demand.size == 0:
        return params
    _, _, cost = arc_caps_and_costs(problem, params)
    max_cost = int(np.abs(cost).max()) + params.spread_penalty
    return replace(params, under_delivery_penalty=max(params.under_delivery_penalty, 1000 * max_cost))


def _empty(problem: Problem, ok: bool, detail: str) -> PaidResult:
    d = problem.demand_points.size
    return PaidResult(
        ok,
        detail,
        np.zeros(0, np.int32),
        np.zeros(0, np.int32),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.zeros(d, np.int64),
        problem.demand_points.astype(np.int64),
        0.0,
        0.0,
        0.0,
    )


def solve_paid(problem: Problem, params: SolveParams, warm: WarmPrices | None = None) -> PaidResult:
    """Solve the paid tier; a solver failure is returned as ok=False with a detail, never raised.

    warm: estimated shadow prices of the nodes (from an earlier solve of a similar day): the solve is then
    tried warm first (paid_warm: exact when it settles, else the cold solve runs).
    """
    n_dem = problem.demand_points.size
    n_nodes = problem.node_capacity.size
    sink = n_dem + n_nodes
    points = problem.demand_points.astype(np.int64)
    n_arcs = problem.arc_demand.size
    if n_arcs == 0:
        penalty = float(params.under_delivery_penalty * int(points.sum()))
        return replace(_empty(problem, True, "no eligible paid arcs"), penalty=penalty, objective=penalty)

    start = time.perf_counter()
    cap, pc, cost = arc_caps_and_costs(problem, params)
    # Under-delivery must dominate any value: at least 1000x the dearest arc's cost. The model's cost, P
    # included, must fit in int64 with room to spare (the objective is reported in those units; the
    # solver itself now sees only the value and spread costs, far inside its range).
    max_cost = int(np.abs(cost).max()) + params.spread_penalty
    penalty = max(params.under_delivery_penalty, 1000 * max_cost)
    if (penalty + max_cost) * int(points.sum()) >= _COST_LIMIT:
        detail = (
            f"numeric range: {int(points.sum())} points at cost up to {penalty} overflow the solver's costs"
        )
        return _empty(problem, False, detail)
    params = replace(params, under_delivery_penalty=penalty)
    # Exact capacity tightening (the optimum and its cost are those of the model's graph): a demand node
    # has no in-arcs and supply due_d, so no arc out of it carries more than due_d; and since the overflow
    # arc costs spread_penalty >= 0 more than its capped twin, some optimum uses the overflow only once the
    # capped part is full, so overflow above min(K_s, due_d) - cap can never be used. Overflow arcs with no
    # room left are dropped; with spread_penalty == 0 the two arcs are one arc of capacity min(K_s, due_d).
    due = points[problem.arc_demand]
    reach = np.minimum(pc, due)
    if params.spread_penalty == 0:
        cap, over = reach, np.zeros_like(reach)
    elif params.spread_penalty > 0:
        cap = np.minimum(cap, due)
        over = reach - cap
    else:  # a negative penalty (not a sensible setting) keeps only the due_d bound, which always holds
        cap, over = np.minimum(cap, due), np.minimum(pc - cap, due)
    has_over = np.flatnonzero(over > 0)
    n_over = has_over.size
    paidcap = node_paid_points(problem)
    # one preallocated array per column (int32 ids, int64 capacities and costs): no concatenations
    n_all = n_arcs + n_over + n_nodes
    tails = np.empty(n_all, np.int32)
    heads = np.empty(n_all, np.int32)
    caps = np.empty(n_all, np.int64)
    costs = np.empty(n_all, np.int64)
    a, b = n_arcs, n_arcs + n_over
    # 1. demand -> node, up to the representativeness cap, at minus the value of a point
    tails[:a] = problem.arc_demand
    heads[:a] = problem.arc_node
    heads[:a] += n_dem
    caps[:a] = cap
    costs[:a] = cost
    # 2. demand -> node overflow above the cap, value minus the spread penalty
    tails[a:b] = tails[:a][has_over]
    heads[a:b] = heads[:a][has_over]
    caps[a:b] = over[has_over]
    costs[a:b] = cost[has_over]
    costs[a:b] += params.spread_penalty
    # 3. node -> sink, the node's paid capacity in points
    tails[b:] = np.arange(n_dem, sink, dtype=np.int32)
    heads[b:] = sink
    caps[b:] = paidcap
    costs[b:] = 0
    # 4. (demand -> sink, under-delivery at P per point: not built; the max flow with min cost below
    # delivers every point it can before it looks at cost, which is what P enforces)
    supplies = np.zeros(sink + 1, np.int64)
    supplies[:n_dem] = points
    supplies[sink] = -int(points.sum())

    built = time.perf_counter() - start
    settled = None
    if warm is not None:
        parts = Parts(tails[:b], heads[:b] - n_dem, caps[:b], costs[:b], paidcap, points)
        try:
            settled = warm_flows(parts, warm)
        except Exception:  # an optimisation only: whatever went wrong, the cold solve below decides
            logger.exception("warm paid solve failed; solving cold")
    warm_rounds = restricted = 0
    if settled is not None:
        flows, warm_rounds = settled
    elif RESTRICT_OVERFLOW and n_over > 0:
        settled = _restricted(problem, tails, heads, caps, costs, a, b, n_dem, paidcap, points)
        if settled is not None:
            flows, restricted = settled
    if settled is not None:
        optimal_cost = int(np.dot(flows, costs[:b]))
    else:
        smcf = min_cost_flow.SimpleMinCostFlow()
        arc_ids = smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
        smcf.set_nodes_supplies(np.arange(sink + 1, dtype=np.int32), supplies)
        built = time.perf_counter() - start
        status = smcf.solve_max_flow_with_min_cost()
        if status != smcf.OPTIMAL:
            logger.warning("paid min-cost flow ended with status %s", status.name)
            return _empty(problem, False, f"paid min-cost flow status {status.name}")
        flows = np.asarray(smcf.flows(np.asarray(arc_ids)), dtype=np.int64)
        optimal_cost = int(smcf.optimal_cost())

    arc_points = flows[:n_arcs].copy()
    arc_points[has_over] += flows[n_arcs : n_arcs + n_over]

    used = np.flatnonzero(arc_points > 0)
    p_dem = problem.arc_demand[used].astype(np.int32)
    p_node = problem.arc_node[used].astype(np.int32)
    p_points = arc_points[used]
    p_impr = p_points * 1000 // problem.node_price[p_node]
    quality: F64 = problem.arc_quality[used]
    delivered = np.zeros(n_dem, dtype=np.int64)
    np.add.at(delivered, p_dem, p_points)
    under = points - delivered
    penalty_part = params.under_delivery_penalty * int(under.sum())
    return PaidResult(
        ok=True,
        detail="",
        demand=p_dem,
        node=p_node,
        points=p_points,
        impressions=p_impr,
        delivered=delivered,
        under=under,
        value=float(np.dot(quality, p_impr)),
        penalty=float(penalty_part),
        objective=float(optimal_cost + penalty_part),
        build_seconds=built,
        warm_rounds=warm_rounds,
        restricted=restricted,
    )


def _restricted(
    problem: Problem, tails: I32, heads: I32, caps: I64, costs: I64, a: int, b: int, n_dem: int, paidcap: I64,
    points: I64,
) -> tuple[I64, int] | None:  # fmt: skip
    """A cold solve without the overflow parts (arcs a..b) into nodes whose capped parts alone can fill
    them, certified for the whole network or finished by the simplex (paid_warm.restricted_flows); None
    when that would keep more than MAX_KEPT_OVERFLOW_SHARE of the overflow parts, or it fails (logged):
    the whole network is solved then.

    Overflow costs spread_penalty more than any value it adds, so an optimum uses it only to deliver
    points the capped parts cannot: mostly into nodes the capped parts cannot fill (on the service's own
    day, none at all). The guess only decides how fast; the certificate decides the answer."""
    capped_room = group_sums(problem.arc_node, caps[:a], paidcap.size)
    over_node = heads[a:b] - n_dem
    kept = capped_room[over_node] < paidcap[over_node]
    if int(kept.sum()) > MAX_KEPT_OVERFLOW_SHARE * (b - a):
        return None
    free = np.ones(b, dtype=bool)
    free[a:] = kept
    parts = Parts(tails[:b], heads[:b] - n_dem, caps[:b], costs[:b], paidcap, points)
    try:
        return restricted_flows(parts, free)
    except Exception:  # an optimisation only: whatever went wrong, the whole network is solved
        logger.exception("restricted paid solve failed; solving the whole network")
        return None
