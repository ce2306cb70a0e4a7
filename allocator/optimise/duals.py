"""Exact shadow prices of each node's paid capacity, from the residual graph of the optimal paid flow.

The paid tier is the min-cost flow of `paid_flow` (flow unit: one point). The shadow price of node s is

    lambda_s = optimal cost(K_s) - optimal cost(K_s + 1)  >= 0      (cost units per point)

with every arc capacity held fixed (representativeness caps and overflow capacities as solved), i.e. the
LP dual of node s's capacity row. Raising the capacity of the arc s -> T by one unit adds one residual arc
s -> T of cost 0; the best the new unit can do is the cheapest cycle s -> T -> ... -> s, so

    lambda_s = max(0, -dist(T -> s))

where dist is the shortest path from the sink T in the residual graph of *any* optimal flow (an optimal
flow's residual graph has no negative cycle; whichever optimal flow is used, the new optimum is at least
old + min(0, dist) because the difference of the two flows decomposes into residual cycles, of which only
one can use the new unit; and pushing one unit around that cycle attains it). The result is exact, in
integers, and independent of which optimal flow the solver returned.

Residual arcs (d: demand, s: node, T: sink; f flow, u capacity, k unit cost of an arc):

    d -> s    k      for each capped / overflow part with f < u     (k = c, or c + spread_penalty)
    s -> d   -k      for each part with f > 0
    T -> s    0      when the node's used points > 0                 (s -> T when used < K_s: never on a
    T -> d   -P      when demand d is under-delivered (u_d > 0)        shortest path from T, so dropped;
                                                                      likewise d -> T)

Arcs into T can never shorten a path from T (no negative cycle), so a shortest path from T leaves T once,
by a T -> s arc (the node gives up one point: a pure *value* improvement) or by a T -> d arc (demand d gets
one more point: the cycle cuts under-delivery by one point, lambda_s = P + the value change of the
rerouting). Which one is tracked exactly by a label carried along the shortest-path tree: that is
`relieves_under`. It agrees with reading the regime off the size of lambda_s (value regime below
P - (max |c| + spread_penalty)) whenever the rerouting chain is short, but a chain of several moves can
shift lambda_s by more than one arc's cost either way, so the label is the exact criterion. For such nodes
the reported value is the value part only, max(0, lambda_s - P): the penalty part is the flag itself.

Arcs into a node with spare capacity are dropped from the search: with its s -> T arc any path into it
closes a cycle, so it costs >= 0 (lambda_s = 0), and no shortest path needs to pass through it (if it
carries points, T -> s reaches it at cost 0; if not, it has no arc out). All this assumes an optimal plan
(the solver's are): a negative cycle among demands and full nodes is caught (DualsError), but this is a
sanity check, not a validator; cycles through the sink or a spare node go unnoticed.

Caps held fixed: re-solving with a larger K_s also recomputes the representativeness caps of every demand
eligible for s (cap_{d,s'} depends on K_s through E_d) and the overflow capacity K_s - cap of the arcs into
s, so that finite difference can differ from lambda_s when one of those arcs binds; lambda_s is the price
of the node's capacity row alone, the usual LP shadow price.

The plan only carries each (demand, node) pair's merged points; the split between the capped part (cost c)
and the overflow part (cost c + spread_penalty) is rebuilt here: within each pair the parts are filled
cheapest first. That is consistent with an optimal flow: any split of a pair's total among its parallel
parts is feasible (same node balances), and the cheapest-first split costs no more than the solver's split,
so it is itself optimal -- with spread_penalty >= 0 an optimal flow never needs the overflow while the
capped arc has room (moving a point from overflow back to the capped arc saves spread_penalty, or is
neutral when it is 0). Its residual graph therefore has no negative cycle and gives the exact prices above.
With the split known, only two residual arcs per pair can matter: forward through the cheapest part with
room, backward through the dearest part with flow (parallel arcs that cost more are dominated).

Shortest paths: the Bellman-Ford relaxation of shortest_paths.relax (rounds vectorised with numpy; in
practice the shortest-path tree is shallow, a few dozen rounds), which also carries the label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from allocator.domain import F64, I32, I64, Problem, SolveParams
from allocator.optimise.paid_flow import arc_caps_and_costs
from allocator.optimise.shortest_paths import csr, relax
from allocator.problem import node_paid_points

logger = logging.getLogger(__name__)

_INF = np.int64(np.iinfo(np.int64).max // 4)  # unreachable; INF + any arc cost stays in int64

Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PaidDuals:
    """Per supply node: the shadow price of one more point of paid capacity, and what it would buy.

    shadow_cost: lambda_s, decrease of the paid tier's optimal cost per extra point (cost units, >= 0).
    relieves_under: the best use of the extra point delivers one more otherwise undelivered point.
    value_per_mille: the value part of lambda_s in quality-weighted impressions per extra thousand
        impressions of paid capacity: lambda_s * price_s / value_scale, where for relieves_under nodes
        lambda_s is first reduced by the under-delivery penalty P (max(0, lambda_s - P): the value the
        rerouting adds on top of delivering the point, which is what the penalty does not already say).
    value_cost: lambda_s with the penalty P taken out where it relieves (lambda_s - P there, which may be
        negative: the rerouting can cost value), cost units per point: the node price a warm re-solve
        starts from (optimise/paid_warm.py).
    rounds: Bellman-Ford rounds used.
    """

    shadow_cost: I64
    relieves_under: Bools
    value_per_mille: F64
    rounds: int
    value_cost: I64


class DualsError(ValueError):
    """The plan does not fit the problem's paid arcs, or its residual graph has a negative cycle."""


Arcs = tuple[I64, I64, I64]  # tails, heads, costs


def _pair_totals(keys: I64, plan_keys: I64, plan_points: I64) -> I64:
    """Points of the plan on each (sorted, distinct) pair key; DualsError if the plan uses a missing pair."""
    pos = np.searchsorted(keys, plan_keys)
    if plan_keys.size and (
        bool(np.any(pos >= keys.size)) or bool(np.any(keys[np.minimum(pos, keys.size - 1)] != plan_keys))
    ):
        raise DualsError("the plan has paid points on a (demand, node) pair with no paid arc")
    total = np.zeros(keys.size, dtype=np.int64)
    np.add.at(total, pos, plan_points)
    return total


def _residual_arcs(
    problem: Problem,
    params: SolveParams,
    caps_and_costs: tuple[I64, I64, I64],
    paid_demand: I32,
    paid_node: I32,
    paid_points: I64,
) -> tuple[Arcs, Arcs]:
    """The residual demand -> node arcs (forward) and node -> demand arcs (backward) of the optimal flow
    whose capped / overflow split is rebuilt cheapest first (see the module docstring); caps_and_costs is
    paid_flow.arc_caps_and_costs(problem, params)."""
    n_nodes = problem.node_capacity.size
    cap, pc, cost = caps_and_costs
    ad = problem.arc_demand.astype(np.int64)
    an = problem.arc_node.astype(np.int64)
    keys = ad * n_nodes + an
    plan_keys = paid_demand.astype(np.int64) * n_nodes + paid_node.astype(np.int64)
    plan_points = paid_points.astype(np.int64)
    spread = params.spread_penalty
    # The two parts of every arc, the cheaper one first (the capped part unless spread_penalty < 0). The
    # overflow part's bound K_s - cap only mirrors the node's own capacity (s -> T already limits what
    # reaches s): it moves with K_s, so it is unbounded here, or a node filled by one demand would look
    # free of charge to grow.
    unbounded = np.full_like(cap, _INF)
    cap1, cap2 = (cap, unbounded) if spread >= 0 else (unbounded, cap)
    cost1, cost2 = (cost, cost + spread) if spread >= 0 else (cost + spread, cost)

    sorted_keys = keys.size < 2 or bool(np.all(keys[1:] >= keys[:-1]))
    if not sorted_keys:
        order = np.argsort(keys, kind="stable")
        keys, ad, an, pc = keys[order], ad[order], an[order], pc[order]
        cap1, cap2, cost1, cost2 = cap1[order], cap2[order], cost1[order], cost2[order]
    if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])):
        # one arc per pair (build_problem's arcs): fill its cheaper part, then the other
        total = _pair_totals(keys, plan_keys, plan_points)
        f1 = np.minimum(total, cap1)
        f2 = total - f1
        if bool(np.any(total > pc)):
            raise DualsError("the plan puts more points on a (demand, node) pair than its arcs carry")
        room1 = f1 < cap1
        fwd = room1 | (f2 < cap2)
        fwd_cost = np.where(room1, cost1, cost2)
        has2 = f2 > 0
        bwd = has2 | (f1 > 0)
        bwd_cost = np.where(has2, cost2, cost1)
        return (ad[fwd], an[fwd], fwd_cost[fwd]), (an[bwd], ad[bwd], -bwd_cost[bwd])

    # Repeated pairs (hand-made problems): every part of a pair, sorted by cost, filled cheapest first.
    part_key = np.repeat(keys, 2)
    part_cap = np.stack([cap1, cap2], axis=1).ravel()
    part_cost = np.stack([cost1, cost2], axis=1).ravel()
    order = np.lexsort((part_cost, part_key))
    part_pc = np.repeat(pc, 2)[order]
    part_key, part_cap, part_cost = part_key[order], part_cap[order], part_cost[order]
    unbounded_part = part_cap >= _INF
    part_cap = np.minimum(part_cap, part_pc)  # no part carries more than the node: keeps the sums in int64
    first = np.r_[True, part_key[1:] != part_key[:-1]]
    starts = np.flatnonzero(first)
    pair_of_part = np.cumsum(first) - 1
    total = _pair_totals(part_key[starts], plan_keys, plan_points)
    if bool(np.any(total > part_pc[starts])):
        raise DualsError("the plan puts more points on a (demand, node) pair than its arcs carry")
    excl = np.cumsum(part_cap) - part_cap
    before = excl - excl[starts][pair_of_part]  # capacity of the cheaper parts of the same pair
    pair_total = total[pair_of_part]
    flow = np.clip(pair_total - before, 0, part_cap)
    # the cheapest part with room is where the fill stopped; the dearest part with flow is the last filled
    fwd = ((flow < part_cap) | unbounded_part) & (before <= pair_total)
    bwd = (flow > 0) & (before + part_cap >= pair_total)
    pd, pn = part_key // n_nodes, part_key % n_nodes
    return (pd[fwd], pn[fwd], part_cost[fwd]), (pn[bwd], pd[bwd], -part_cost[bwd])


def paid_duals(
    problem: Problem,
    params: SolveParams,
    paid_demand: I32,
    paid_node: I32,
    paid_points: I64,
    demand_under: I64,
) -> PaidDuals:
    """Shadow prices of every node's paid capacity for an optimal paid plan (PaidResult / Plan arrays).

    Raises DualsError when the plan does not fit the problem's arcs or is not optimal (negative cycle).
    """
    n_dem = problem.demand_points.size
    n_nodes = problem.node_capacity.size
    n_vertices = n_dem + n_nodes  # the sink is implicit: it only starts paths
    cap, pc, cost = arc_caps_and_costs(problem, params)
    # effective_params(problem, params).under_delivery_penalty, without computing the caps a second time
    # (tests/unit/test_duals.py checks the two agree)
    penalty = params.under_delivery_penalty
    if cost.size:
        penalty = max(penalty, 1000 * (int(np.abs(cost).max()) + params.spread_penalty))

    (fd, fs, fc), (bs, bd, bc) = _residual_arcs(
        problem, params, (cap, pc, cost), paid_demand, paid_node, paid_points
    )
    used = np.zeros(n_nodes, dtype=np.int64)
    np.add.at(used, paid_node.astype(np.int64), paid_points.astype(np.int64))
    # arcs into nodes with spare capacity are dropped (see the module docstring)
    full = (used >= node_paid_points(problem))[fs]
    tails = np.concatenate([fd[full], n_dem + bs])
    heads = np.concatenate([n_dem + fs[full], bd])
    costs = np.concatenate([fc[full], bc])
    order, starts, counts = csr(tails, n_vertices)
    if order is not None:
        heads, costs = heads[order], costs[order]

    dist = np.full(n_vertices, _INF, dtype=np.int64)
    dist[n_dem:][used > 0] = 0  # T -> s, cost 0: node s gives up one point
    under = demand_under.astype(np.int64) > 0
    dist[:n_dem][under] = -penalty  # T -> d, cost -P: demand d takes one more point
    via_under = np.zeros(n_vertices, dtype=bool)
    via_under[:n_dem] = under

    found = relax(starts, counts, heads, costs, dist, np.flatnonzero(dist < _INF), via_under)
    if found is None:
        raise DualsError("negative cycle in the paid residual graph: the paid plan is not optimal")
    rounds = found

    node_dist = dist[n_dem:]
    shadow = np.where(node_dist < 0, -node_dist, 0).astype(np.int64)
    relieves = via_under[n_dem:] & (shadow > 0)
    value_cost = np.where(relieves, shadow - penalty, shadow)
    value = np.maximum(value_cost, 0)
    per_mille = value.astype(np.float64) * problem.node_price.astype(np.float64) / float(params.value_scale)
    return PaidDuals(shadow, relieves, per_mille, rounds, value_cost)
