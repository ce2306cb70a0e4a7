"""The daily-promotion (free) pool: weighted lexicographic max-min fairness by water-filling.

Every node's free capacity is its reserved share plus the paid capacity the paid plan left unused, i.e.
capacity minus paid impressions. A common level t rises for all unfrozen merchants; merchant f may take
min(floor(w_f t), free_cap_f) impressions. Each round finds the largest feasible t with max-flow checks on
ONE SimpleMaxFlow built once from arrays (only the source-arc capacities change between checks):
probe a little above the last level (doubling the step while feasible) to get an infeasible t, then take
Newton steps from its min cut -- the level at which the cut's merchants exactly fill the cut's nodes, as in
parametric max-flow -- falling back to bisection (params.fairness_rel_tol, or half an impression of the
heaviest merchant) when a step stalls. The source side of the min cut at the infeasible t holds the
bottlenecked merchants: they freeze at floor(w_f t_feasible), as do merchants that reached their cap, and
the rest rise again, until everyone is frozen. At the deadline everyone still rising freezes at the
current feasible level (the plan stays valid; the caller reports TIME_LIMIT).

The result is lexicographically max-min up to integer rounding (each merchant is within one impression of
w_f times its level). Capacity still reachable after the last level may stay unused: a merchant never
takes more than its fair level.

Spreading. The max-flow's own split puts a merchant's whole allocation wherever the augmenting paths went
(often a single node), so the final per-(merchant, node) split comes from ONE SimpleMinCostFlow with the
totals y_f fixed: merchant f supplies y_f, arc (f, s) carries up to the soft representativeness cap
ceil(kappa * y_f * nodefree_s / eligible_free_f) at cost 0 and the rest of nodefree_s through a parallel
overflow arc at cost 1, and node s takes at most nodefree_s. The max-flow's split is a feasible flow of this
network, so it is feasible and the totals (hence the level) are unchanged; it only spreads each merchant
over its eligible free supply, as the paid tier does. Should that solve fail anyway, the max-flow's split
is kept and extras["free_spread_failed"] is 1.

free_level is the minimum of impressions / weight over the *included* merchants: those with at least one
eligible arc, a positive cap and a positive weight. The others get nothing and are counted in the extras.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from ortools.graph.python import max_flow, min_cost_flow

from allocator.domain import F64, I32, I64, Problem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FreeResult:
    """Free arcs with positive impressions, the max-min level, and whether the time limit cut it short."""

    merchant: I32
    node: I32
    impressions: I64
    level: float
    timed_out: bool
    extras: dict[str, float] = field(default_factory=dict)


def node_free_capacity(problem: Problem, paid_node: I32, paid_impressions: I64) -> I64:
    """Impressions each node can give the free pool: capacity minus the paid plan's impressions on it."""
    used = np.zeros(problem.node_capacity.size, dtype=np.int64)
    np.add.at(used, paid_node, paid_impressions)
    return np.maximum(problem.node_capacity - used, 0)


class _Network:
    """source -> merchant -> node -> sink, built once; feasibility checks only reset the source arcs."""

    def __init__(self, problem: Problem, node_free: I64) -> None:
        n_f, n_s = problem.free_weight.size, node_free.size
        self.n_f = n_f
        self.sink = n_f + n_s + 1
        self.mf = max_flow.SimpleMaxFlow()
        merchants = np.arange(1, n_f + 1, dtype=np.int32)
        nodes = np.arange(n_f + 1, n_f + n_s + 1, dtype=np.int32)
        # source -> merchant: its allowance at the current level (reset on every check)
        self.src_arcs = np.asarray(
            self.mf.add_arcs_with_capacity(np.zeros(n_f, np.int32), merchants, np.zeros(n_f, np.int64)),
            dtype=np.int32,
        )
        # merchant -> eligible node: one more than the node can take, so it is never saturated and a min
        # cut never runs through it (the cut's nodes are then exactly those reachable from its merchants)
        self.mid_arcs = np.asarray(
            self.mf.add_arcs_with_capacity(
                problem.free_arc_merchant.astype(np.int32) + 1,
                problem.free_arc_node.astype(np.int32) + n_f + 1,
                node_free[problem.free_arc_node].astype(np.int64) + 1,
            ),
            dtype=np.int32,
        )
        # node -> sink: the node's free capacity
        self.mf.add_arcs_with_capacity(nodes, np.full(n_s, self.sink, np.int32), node_free.astype(np.int64))
        self.solves = 0

    def feasible(self, caps: I64) -> bool:
        """Whether every merchant can receive its `caps` impressions at once."""
        self.mf.set_arcs_capacity(self.src_arcs, caps)
        status = self.mf.solve(0, self.sink)
        self.solves += 1
        if status != self.mf.OPTIMAL:
            raise RuntimeError(f"free-pool max flow status {status.name}")
        return bool(self.mf.optimal_flow() == int(caps.sum()))

    def cut(self) -> tuple[np.ndarray, np.ndarray]:
        """Source side of the last solve's min cut: (boolean mask of merchants, indices of nodes)."""
        side = np.asarray(self.mf.get_source_side_min_cut(), dtype=np.int64)
        mask = np.zeros(self.n_f, dtype=bool)
        mask[side[(side >= 1) & (side <= self.n_f)] - 1] = True
        return mask, side[(side > self.n_f) & (side < self.sink)] - self.n_f - 1


def solve_free(
    problem: Problem, node_free: I64, rel_tol: float, deadline: float | None, kappa: float = 2.0
) -> FreeResult:
    """Water-fill the free pool over `node_free` impressions; stop at `deadline` (perf_counter seconds).

    The totals are then spread over each merchant's eligible free supply with soft caps of factor `kappa`.
    """
    w: F64 = problem.free_weight
    cap: I64 = problem.free_cap.astype(np.int64)
    n_f = w.size
    has_arc = np.bincount(problem.free_arc_merchant, minlength=n_f) > 0
    included = has_arc & (cap > 0) & (w > 0)
    extras = {
        "free_merchants_included": float(included.sum()),
        "free_merchants_without_arcs": float((~has_arc).sum()),
    }
    if not included.any():
        empty = np.zeros(0, np.int64)
        return FreeResult(empty.astype(np.int32), empty.astype(np.int32), empty, 0.0, False, extras)

    started = time.perf_counter()
    net = _Network(problem, node_free)
    extras["free_build_seconds"] = time.perf_counter() - started
    frozen = np.zeros(n_f, dtype=np.int64)
    active = included.copy()
    lo, rounds, timed_out = 0.0, 0, False

    def caps_at(t: float) -> I64:
        c = frozen.copy()
        c[active] = np.minimum(np.floor(w[active] * t), cap[active]).astype(np.int64)
        return c

    def newton(in_cut: np.ndarray, cut_nodes: np.ndarray) -> float | None:
        """Level at which the cut's merchants exactly fill the cut's nodes (continuous, caps respected).

        The cut's demand sum(min(w_f t, cap_f)) is piecewise linear in t with breakpoints cap_f / w_f; the
        root is found on its own segment, so a merchant capped at the infeasible level but not at the root
        is not counted as capped (that made the step too small, even negative, freezing the cut too early).
        """
        need = float(node_free[cut_nodes].sum()) - float(frozen[in_cut & ~active].sum())
        rising = in_cut & active
        ww, cc = w[rising], cap[rising].astype(np.float64)
        if ww.size == 0:
            return None
        order = np.argsort(cc / ww)
        ww, cc = ww[order], cc[order]
        brk = cc / ww
        capped_before = np.concatenate([[0.0], np.cumsum(cc)[:-1]])  # caps of merchants j < k
        weight_from = np.cumsum(ww[::-1])[::-1]  # weights of merchants j >= k
        reached = np.flatnonzero(capped_before + brk * weight_from >= need)  # demand at breakpoint k
        if reached.size == 0:
            return None  # the cut's merchants cannot fill it even all capped
        k = int(reached[0])
        return (need - float(capped_before[k])) / float(weight_from[k])

    def late() -> bool:
        return deadline is not None and time.perf_counter() > deadline

    while active.any() and not (timed_out := late()):
        rounds += 1
        rem = float(node_free.sum() - frozen.sum())
        bound = min(float((cap[active] / w[active]).max()), (rem + active.sum() + 1) / float(w[active].sum()))
        bound = max(bound, lo)
        # below this width every allowance at hi is within one impression of the one at lo
        width = max(rel_tol * bound, 0.5 / float(w[active].max()))
        in_cut = np.zeros(n_f, dtype=bool)
        hi: float | None = None
        step: float | None = None
        # 1. an infeasible level: probe a little above lo, doubling the step while feasible
        grow = 0.01
        cand = bound if lo == 0 else min(bound, lo * (1 + grow))
        while hi is None and not (timed_out := late()):
            if net.feasible(caps_at(cand)):
                lo = cand
                if cand >= bound:
                    break  # every active merchant reaches its cap (or the bound): no bottleneck left
                grow *= 2
                cand = min(bound, lo * (1 + grow))
            else:
                hi = cand
                in_cut, cut_nodes = net.cut()
                step = newton(in_cut, cut_nodes)
        # 2. Newton steps from the latest cut (bisection when they stall) until the cut cannot rise
        while hi is not None and hi - lo > width and not (timed_out := late()):
            if step is not None and step <= lo + rel_tol * bound:
                break  # the cut's merchants fill its nodes at lo already: they freeze
            cand = step if step is not None and step < hi else 0.5 * (lo + hi)
            if net.feasible(caps_at(cand)):
                lo = cand
            else:
                hi = cand
                in_cut, cut_nodes = net.cut()
                step = newton(in_cut, cut_nodes)
        if timed_out:
            break
        c = caps_at(lo)
        freeze = active & ((c >= cap) | in_cut)
        if not freeze.any():  # cannot happen in exact arithmetic; never loop forever
            logger.warning("free pool: no merchant froze at level %g; freezing all", lo)
            freeze = active.copy()
        frozen[freeze] = c[freeze]
        active &= ~freeze

    if timed_out:
        logger.warning("free pool stopped by the time limit at level %g after %d rounds", lo, rounds)
        frozen = caps_at(lo)
        active[:] = False

    if not net.feasible(frozen):
        logger.error("free pool: frozen allowances are not feasible; this is a bug")
    flows = np.asarray(net.mf.flows(net.mid_arcs), dtype=np.int64)
    got = np.zeros(n_f, dtype=np.int64)
    np.add.at(got, problem.free_arc_merchant, flows)
    level = float((got[included] / w[included]).min())
    extras.update(free_rounds=float(rounds), free_maxflow_solves=float(net.solves))
    flows = _spread(problem, node_free, got, flows, kappa, extras)
    used = np.flatnonzero(flows > 0)
    merchant = problem.free_arc_merchant[used].astype(np.int32)
    return FreeResult(
        merchant, problem.free_arc_node[used].astype(np.int32), flows[used], level, timed_out, extras
    )


def _spread(
    problem: Problem, node_free: I64, totals: I64, fallback: I64, kappa: float, extras: dict[str, float]
) -> I64:
    """Per free arc, the impressions of a min-cost flow that gives merchant f exactly totals[f], spread.

    Arc (f, s): up to ceil(kappa * totals_f * nodefree_s / eligible_free_f) (clipped to nodefree_s) at cost 0,
    the rest of nodefree_s on a parallel overflow arc at cost 1; node s -> sink at most nodefree_s.
    `fallback` (the max-flow's split, which has the same totals) is returned if the solve fails.
    """
    total = int(totals.sum())
    if total == 0:
        return fallback
    started = time.perf_counter()
    n_f, n_s = totals.size, node_free.size
    sink = n_f + n_s
    fm = problem.free_arc_merchant.astype(np.int64)
    fn = problem.free_arc_node.astype(np.int64)
    nf = node_free.astype(np.int64)[fn]
    eligible = np.zeros(n_f, dtype=np.int64)
    np.add.at(eligible, fm, nf)
    tot = totals[fm]
    cap = np.minimum(np.ceil(kappa * tot * nf / np.maximum(eligible[fm], 1)), nf).astype(np.int64)
    # Exact reductions of that network (same optimal cost, same totals): merchant f has no in-arcs and
    # supplies totals_f, so no arc out of it carries more than totals_f, and overflow (cost 1 > 0) is
    # only worth using once the capped part is full. A merchant with a zero total keeps no arc at all.
    reach = np.minimum(nf, tot)
    cap = np.minimum(cap, tot)
    over = reach - cap
    live = np.flatnonzero(tot > 0)
    has_over = live[over[live] > 0]
    n_live, n_over = live.size, has_over.size
    n_all = n_live + n_over + n_s
    tails = np.empty(n_all, np.int32)
    heads = np.empty(n_all, np.int32)
    caps = np.empty(n_all, np.int64)
    costs = np.zeros(n_all, np.int64)
    a, b = n_live, n_live + n_over
    tails[:a], heads[:a], caps[:a] = fm[live], fn[live] + n_f, cap[live]
    tails[a:b], heads[a:b], caps[a:b] = fm[has_over], fn[has_over] + n_f, over[has_over]
    costs[a:b] = 1
    tails[b:], heads[b:], caps[b:] = np.arange(n_f, sink), sink, node_free
    supplies = np.zeros(sink + 1, np.int64)
    supplies[:n_f] = totals
    supplies[sink] = -total
    smcf = min_cost_flow.SimpleMinCostFlow()
    arc_ids = np.asarray(smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs), dtype=np.int32)
    smcf.set_nodes_supplies(np.arange(sink + 1, dtype=np.int32), supplies)
    extras["free_build_seconds"] = extras.get("free_build_seconds", 0.0) + time.perf_counter() - started
    status = smcf.solve()
    extras["free_spread_seconds"] = time.perf_counter() - started
    if status != smcf.OPTIMAL:
        logger.error("free pool: spreading min-cost flow status %s; keeping the max-flow split", status.name)
        extras["free_spread_failed"] = 1.0
        return fallback
    flows = np.asarray(smcf.flows(arc_ids[:b]), dtype=np.int64)
    spread = np.zeros(fm.size, np.int64)
    spread[live] = flows[:a]
    spread[has_over] += flows[a:b]
    extras["free_spread_overflow"] = float(flows[a:b].sum())
    return spread
