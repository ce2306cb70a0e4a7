"""Independent LP oracles (HiGHS via scipy) for the paid tier and the free pool's first max-min level.

Written from the model definition, not from the flow's arc arrays: if the min-cost flow's graph is built
wrongly, its optimum differs from these. The paid LP is a network LP (totally unimodular), so its optimum
equals the integral flow's optimum exactly.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from allocator.domain import Problem, SolveParams
from allocator.optimise.caps import group_sums, spread_caps


def paid_lp_objective(problem: Problem, params: SolveParams) -> float:
    """Optimal cost of the paid tier as an LP over x (capped part), y (overflow part), u (under-delivery).

    min  sum c_ds x_ds + (c_ds + spread) y_ds + penalty u_d
    s.t. sum_s x_ds + y_ds + u_d = points_d           (every point due is delivered or under-delivered)
         sum_d x_ds + y_ds <= floor((cap_s - reserved_s) price_s / 1000)       (node paid capacity)
         0 <= x_ds <= ceil(kappa points_d paid_s / sum_{s' eligible for d} paid_s'),
         0 <= y_ds <= max(paid_s - that cap, 0),  0 <= u_d <= points_d
    with c_ds = -round_half_up(value_scale * quality_ds * 1000 / price_s).
    """
    n_dem, n_nodes, n_arcs = problem.demand_points.size, problem.node_capacity.size, problem.arc_demand.size
    points = problem.demand_points.astype(np.float64)
    if n_arcs == 0:  # nothing can be delivered: every point due is under-delivered
        return float(params.under_delivery_penalty * int(problem.demand_points.sum()))
    paid = ((problem.node_capacity - problem.node_free_reserved) * problem.node_price) // 1000
    d, s = problem.arc_demand.astype(np.int64), problem.arc_node.astype(np.int64)
    pc = paid[s]
    # the caps as the model defines them, in exact integers (the definition the solver uses: optimise/caps.py)
    xcap = spread_caps(params.kappa, problem.demand_points[d], pc, group_sums(d, pc, n_dem)[d])
    ycap = pc - xcap
    c = -np.floor(params.value_scale * problem.arc_quality * 1000.0 / problem.node_price[s] + 0.5)
    # the model's penalty rule: under-delivery dominates, at least 1000x the dearest arc's cost
    penalty = max(params.under_delivery_penalty, 1000 * (int(np.abs(c).max()) + params.spread_penalty))
    cost = np.concatenate([c, c + params.spread_penalty, np.full(n_dem, float(penalty))])
    bounds = np.column_stack([np.zeros(2 * n_arcs + n_dem), np.concatenate([xcap, ycap, points])])
    cols = np.arange(2 * n_arcs + n_dem)
    eq = sp.csr_matrix(
        (np.ones(cols.size), (np.concatenate([d, d, np.arange(n_dem)]), cols)), shape=(n_dem, cols.size)
    )
    ub = sp.csr_matrix(
        (np.ones(2 * n_arcs), (np.concatenate([s, s]), cols[: 2 * n_arcs])), shape=(n_nodes, cols.size)
    )
    res = linprog(
        cost, A_ub=ub, b_ub=paid.astype(np.float64), A_eq=eq, b_eq=points, bounds=bounds, method="highs"
    )
    if res.status != 0:
        raise RuntimeError(f"paid LP oracle failed: {res.message}")
    return float(res.fun)


def free_lp_level(problem: Problem, node_free: np.ndarray) -> float:
    """The free pool's first max-min level: max t s.t. flows fit the nodes, w_f t <= y_f <= free_cap_f.

    Only merchants with at least one arc, a positive cap and a positive weight take part (as in the
    solver's free_level); with none, the level is 0.
    """
    n_f, n_nodes = problem.free_weight.size, node_free.size
    has_arc = np.bincount(problem.free_arc_merchant, minlength=n_f) > 0
    included = has_arc & (problem.free_cap > 0) & (problem.free_weight > 0)
    if not included.any():
        return 0.0
    keep = included[problem.free_arc_merchant]
    m, s = problem.free_arc_merchant[keep].astype(np.int64), problem.free_arc_node[keep].astype(np.int64)
    n_arcs = m.size
    inc = np.flatnonzero(included)
    row_of = np.full(n_f, -1)
    row_of[inc] = np.arange(inc.size)
    # variables: z (one per kept arc), then t
    node_rows = sp.csr_matrix((np.ones(n_arcs), (s, np.arange(n_arcs))), shape=(n_nodes, n_arcs + 1))
    take = sp.csr_matrix((np.ones(n_arcs), (row_of[m], np.arange(n_arcs))), shape=(inc.size, n_arcs + 1))
    wt = sp.csr_matrix(
        (problem.free_weight[inc], (np.arange(inc.size), np.full(inc.size, n_arcs))),
        shape=(inc.size, n_arcs + 1),
    )
    a_ub = sp.vstack([node_rows, wt - take, take]).tocsr()
    b_ub = np.concatenate([node_free.astype(np.float64), np.zeros(inc.size), problem.free_cap[inc]])
    cost = np.zeros(n_arcs + 1)
    cost[-1] = -1.0
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"free LP oracle failed: {res.message}")
    return float(res.x[-1])
