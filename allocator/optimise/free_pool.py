"""The daily-promotion (free) pool: exact weighted lexicographic max-min fairness by decomposition.

Every node's free capacity is its reserved share plus the paid capacity the paid plan left unused, i.e.
capacity minus paid impressions. Merchant f at level t may take min(w_f t, cap_f) impressions; the fair
allocation is the lexicographically max-min vector of levels (the lexicographically optimal base of the
polymatroid the bipartite network defines, Fujishige's decomposition algorithm).

A subproblem is a set of merchants M with the set of nodes N they may still use. Its *balanced level* t is the
one at which the merchants' allowances fill N exactly: sum over M of min(w_f t, cap_f) = free(N) (piecewise
linear in t, solved on its own segment; all merchants capped when even their caps do not fill N). ONE max flow
(source -> merchant at floor(w_f t D) -> eligible node -> sink at D times the node's free capacity, i.e.
impressions counted in 1/D parts, D = 2^SCALE_BITS, so a bottleneck below one impression is not hidden by the
floors) decides it: if every allowance is served, all of M share level t (the capped ones keep their cap) and
the subproblem is a *leaf*. If not, the source side of the min cut is the bottleneck set S: its nodes N(S)
cannot carry S's allowances, so every merchant of S ends strictly below t and uses all of N(S), and every
other merchant ends at t or above and never needs N(S). The subproblem splits into (S, N(S)) and (M minus S, N
minus N(S)), each solved the same way. Subproblems are disjoint, so the max flows of one depth of the
recursion together cost about one max flow over the whole network, and there are as many leaves as distinct
levels. (The previous water-filling re-solved the whole network two or three times for every level: 239 max
flows for 79 levels at the 1M-arc benchmark, 14 s; this takes about one per leaf and split, each on a
shrinking part.)

Integer rounding. A leaf gives each merchant floor(w_f t) (one max flow of those floors, which the flow in
1/D parts shows are served), so up to one impression per merchant of its nodes may be left. The leaf
then tops those up: a second max flow on the residual network of the first
(without the source arcs' reverse arcs, so nobody loses anything) gives at most one more impression to
merchants below their cap. The result: no merchant below its cap can gain an impression without a merchant
at or below its level losing one (tests/unit/test_properties.py checks exactly that with scipy's max flow).

Spreading. A max flow's own split puts a merchant's whole allocation wherever the augmenting paths went
(often a single node), so the final per-(merchant, node) split comes from ONE SimpleMinCostFlow with the
totals y_f fixed: merchant f supplies y_f, arc (f, s) carries up to the soft representativeness cap
ceil(kappa * y_f * nodefree_s / eligible_free_f) at cost 0 and the rest of nodefree_s through a parallel
overflow arc at cost 1, and node s takes at most nodefree_s. The leaves' max flows together are a feasible
flow of this network, so the totals (hence the levels) are unchanged; it only spreads each merchant over
its eligible free supply, as the paid tier does. The capped parts alone are tried first (one max flow):
when they carry every total, that split costs 0, an optimum of the min-cost flow, which then is not run.

Time limit. The deadline is checked before every max flow. Subproblems not yet solved when it passes keep
an allocation known to be feasible for them: the T side of a split keeps the allowances its merchants were
fully served at in the parent's max flow (the cut's sink side is fully served and uses no node of N(S));
the S side gets nothing. The plan stays valid; the caller reports TIME_LIMIT.

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
from allocator.optimise.caps import group_sums, spread_caps

logger = logging.getLogger(__name__)

# The bottleneck test counts impressions in parts of 1/2^SCALE_BITS (fewer where int64 needs it).
SCALE_BITS = 20


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


@dataclass(frozen=True)
class _Sub:
    """A subproblem: merchants (ids), the free arcs between them and their usable nodes, those nodes, and
    allowances known to be feasible here should the deadline stop the solve before it."""

    merchants: I64
    arcs: I64
    nodes: I64
    safe: I64


def balanced_level(w: F64, cap: I64, free: int) -> float:
    """The level t at which sum(min(w_f t, cap_f)) == free (inf when even every cap does not reach free).

    The sum is piecewise linear in t with breakpoints cap_f / w_f; the root is found on its own segment.
    """
    cc = cap.astype(np.float64)
    if cc.sum() <= free:
        return float("inf")
    brk = cc / w
    order = np.argsort(brk)
    ww, cc, brk = w[order], cc[order], brk[order]
    capped_before = np.concatenate([[0.0], np.cumsum(cc)[:-1]])  # caps of merchants j < k
    weight_from = np.cumsum(ww[::-1])[::-1]  # weights of merchants j >= k
    k = int(np.flatnonzero(capped_before + brk * weight_from >= free)[0])  # demand at breakpoint k
    return max(0.0, (free - float(capped_before[k])) / float(weight_from[k]))


class _Decomposition:
    """The recursion of the module docstring over the free arcs of one problem."""

    def __init__(self, problem: Problem, node_free: I64) -> None:
        self.w: F64 = problem.free_weight
        self.cap: I64 = problem.free_cap.astype(np.int64)
        self.arc_m = problem.free_arc_merchant.astype(np.int64)
        self.arc_n = problem.free_arc_node.astype(np.int64)
        self.node_free = node_free.astype(np.int64)
        self.n_f, self.n_s = self.w.size, node_free.size
        self.sink = self.n_f + self.n_s + 1
        self.totals = np.zeros(self.n_f, dtype=np.int64)
        self.leaves = 0
        self.solves = 0
        self.topped_up = 0

    def _scale(self, sub: _Sub) -> int:
        """The resolution of the bottleneck test: impressions are counted in 1/scale parts, as many as
        int64 capacities allow (at most 2^SCALE_BITS)."""
        total = int(self.node_free[sub.nodes].sum()) + 1
        return max(1, min(1 << SCALE_BITS, (1 << 61) // total))

    def _max_flow(self, sub: _Sub, allow: I64, scale: int = 1) -> tuple[max_flow.SimpleMaxFlow, bool]:
        """One max flow of `sub` with `allow` on the source arcs and node capacities times `scale`;
        whether every allowance is served."""
        mf = max_flow.SimpleMaxFlow()
        mf.add_arcs_with_capacity(
            np.zeros(sub.merchants.size, np.int32), (sub.merchants + 1).astype(np.int32), allow
        )
        # merchant -> node: one more than the node can take, so a min cut never runs through it (the cut's
        # nodes are then exactly those its merchants can reach)
        heads = self.arc_n[sub.arcs]
        mf.add_arcs_with_capacity(
            (self.arc_m[sub.arcs] + 1).astype(np.int32),
            (heads + self.n_f + 1).astype(np.int32),
            self.node_free[heads] * scale + 1,
        )
        mf.add_arcs_with_capacity(
            (sub.nodes + self.n_f + 1).astype(np.int32),
            np.full(sub.nodes.size, self.sink, np.int32),
            self.node_free[sub.nodes] * scale,
        )
        status = mf.solve(0, self.sink)
        self.solves += 1
        if status != mf.OPTIMAL:
            raise RuntimeError(f"free-pool max flow status {status.name}")
        return mf, bool(mf.optimal_flow() == int(allow.sum()))

    def _leaf(self, sub: _Sub, allow: I64) -> None:
        self.totals[sub.merchants] = allow
        self.leaves += 1

    def _top_up(self, sub: _Sub, allow: I64, mf: max_flow.SimpleMaxFlow) -> I64:
        """`allow` plus at most one impression each from what the leaf's nodes have left (the floors').

        A max flow on the residual network of the leaf's served flow `mf`, without the source arcs' reverse
        arcs: it can only add to the served flow, so every merchant keeps its allowance.
        """
        m, n_arcs = sub.merchants.size, sub.arcs.size
        takers = np.flatnonzero(allow < self.cap[sub.merchants])
        if takers.size == 0:
            return allow
        used = np.asarray(mf.flows(np.arange(m, m + n_arcs, dtype=np.int32)), dtype=np.int64)
        heads = self.arc_n[sub.arcs]
        spare = self.node_free[sub.nodes] - np.bincount(heads, weights=used, minlength=self.n_s)[
            sub.nodes
        ].astype(np.int64)
        if not (spare > 0).any():
            return allow
        tails_m = (self.arc_m[sub.arcs] + 1).astype(np.int32)
        heads_n = (heads + self.n_f + 1).astype(np.int32)
        back = np.flatnonzero(used > 0)
        open_nodes = np.flatnonzero(spare > 0)
        res = max_flow.SimpleMaxFlow()
        res.add_arcs_with_capacity(
            np.zeros(takers.size, np.int32),
            (sub.merchants[takers] + 1).astype(np.int32),
            np.ones(takers.size, np.int64),
        )
        res.add_arcs_with_capacity(tails_m, heads_n, self.node_free[heads] + 1)
        res.add_arcs_with_capacity(heads_n[back], tails_m[back], used[back])
        res.add_arcs_with_capacity(
            (sub.nodes[open_nodes] + self.n_f + 1).astype(np.int32),
            np.full(open_nodes.size, self.sink, np.int32),
            spare[open_nodes],
        )
        self.solves += 1
        if res.solve(0, self.sink) != res.OPTIMAL:
            raise RuntimeError("free-pool top-up max flow failed")
        out = allow.copy()
        out[takers] += np.asarray(res.flows(np.arange(takers.size, dtype=np.int32)), dtype=np.int64)
        self.topped_up += int(out.sum() - allow.sum())
        return out

    def run(self, root: _Sub, deadline: float | None) -> bool:
        """Solve every subproblem from `root`; True when the deadline cut it short."""
        stack = [root]
        while stack:
            sub = stack.pop()
            if deadline is not None and time.perf_counter() > deadline:
                for rest in [sub, *stack]:
                    self.totals[rest.merchants] = rest.safe
                return True
            w, cap = self.w[sub.merchants], self.cap[sub.merchants]
            level = balanced_level(w, cap, int(self.node_free[sub.nodes].sum()))
            if level == float("inf"):  # every cap fits in total: integers decide it exactly
                scale, allow = 1, cap.copy()
                fine = allow
            else:
                scale = self._scale(sub)
                allow = np.minimum(np.floor(w * level), cap).astype(np.int64)
                fine = np.minimum(np.floor(w * level * scale), cap * float(scale)).astype(np.int64)
            mf, served = self._max_flow(sub, fine, scale)
            if served:
                if level != float("inf"):
                    if scale > 1:  # then the floors are served too; their flow is the top-up's base
                        mf, whole = self._max_flow(sub, allow)
                        if not whole:
                            raise RuntimeError("free pool: the floors of a served level were not served")
                    allow = self._top_up(sub, allow, mf)
                self._leaf(sub, allow)
                continue
            side = np.asarray(mf.get_source_side_min_cut(), dtype=np.int64)
            in_cut = np.zeros(self.n_f + 1, dtype=bool)
            in_cut[side[(side >= 1) & (side <= self.n_f)] - 1] = True
            cut_nodes = np.zeros(self.n_s, dtype=bool)
            cut_nodes[side[(side > self.n_f) & (side < self.sink)] - self.n_f - 1] = True
            s_mask = in_cut[sub.merchants]
            if s_mask.all() or not s_mask.any():  # not in exact arithmetic; keep what the flow served
                logger.warning(
                    "free pool: a cut of %d merchants did not split; keeping the flow", s_mask.size
                )
                served_now = np.asarray(mf.flows(np.arange(sub.merchants.size, dtype=np.int32)), np.int64)
                floors = served_now // scale  # floors of a feasible flow in 1/scale parts: feasible
                base, whole = self._max_flow(sub, floors)
                # then, as for a served level, up to one impression more each from what is left
                self._leaf(sub, self._top_up(sub, floors, base) if whole else floors)
                continue
            arc_in_s = in_cut[self.arc_m[sub.arcs]]
            t_arcs = sub.arcs[~arc_in_s & ~cut_nodes[self.arc_n[sub.arcs]]]
            t_nodes = sub.nodes[~cut_nodes[sub.nodes]]
            # nodes no merchant of T can reach stay unused: nobody outside T can reach them either
            reach = np.zeros(self.n_s, dtype=bool)
            reach[self.arc_n[t_arcs]] = True
            t_nodes = t_nodes[reach[t_nodes]]
            t_sub = _Sub(sub.merchants[~s_mask], t_arcs, t_nodes, allow[~s_mask])
            s_sub = _Sub(
                sub.merchants[s_mask],
                sub.arcs[arc_in_s],
                sub.nodes[cut_nodes[sub.nodes]],
                np.zeros(int(s_mask.sum()), np.int64),
            )
            stack.extend((t_sub, s_sub))  # the bottleneck first: lower levels are settled first
        return False


def solve_free(problem: Problem, node_free: I64, deadline: float | None, kappa: float = 2.0) -> FreeResult:
    """Divide the free pool over `node_free` impressions fairly; stop at `deadline` (perf_counter seconds).

    The totals are then topped up and spread over each merchant's eligible free supply with soft caps of
    factor `kappa` (see the module docstring).
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
    dec = _Decomposition(problem, node_free)
    merchants = np.flatnonzero(included).astype(np.int64)
    arcs = np.flatnonzero(included[problem.free_arc_merchant]).astype(np.int64)
    nodes = np.unique(problem.free_arc_node[arcs]).astype(np.int64)
    timed_out = dec.run(_Sub(merchants, arcs, nodes, np.zeros(merchants.size, np.int64)), deadline)
    if timed_out:
        logger.warning("free pool stopped by the time limit after %d leaves", dec.leaves)
    extras.update(
        free_rounds=float(dec.leaves),
        free_maxflow_solves=float(dec.solves),
        free_decompose_seconds=time.perf_counter() - started,
    )
    got = dec.totals
    extras["free_topped_up"] = float(dec.topped_up)
    flows = _spread(problem, node_free, got, kappa, extras)
    level = float((got[included] / w[included]).min())
    used = np.flatnonzero(flows > 0)
    merchant = problem.free_arc_merchant[used].astype(np.int32)
    return FreeResult(
        merchant, problem.free_arc_node[used].astype(np.int32), flows[used], level, timed_out, extras
    )


def _spread(problem: Problem, node_free: I64, totals: I64, kappa: float, extras: dict[str, float]) -> I64:
    """Per free arc, the impressions of a min-cost flow that gives merchant f exactly totals[f], spread.

    Arc (f, s): up to ceil(kappa * totals_f * nodefree_s / eligible_free_f) (clipped to nodefree_s) at cost 0,
    the rest of nodefree_s on a parallel overflow arc at cost 1; node s -> sink at most nodefree_s. When
    the capped arcs alone carry every total (one max flow, _split), their split is that optimum (cost 0)
    and the min-cost flow is not run. Should the solve fail, a max flow's split over every arc is used
    and extras["free_spread_failed"] is 1.
    """
    total = int(totals.sum())
    if total == 0:
        return np.zeros(problem.free_arc_merchant.size, np.int64)
    started = time.perf_counter()
    n_f, n_s = totals.size, node_free.size
    sink = n_f + n_s
    fm = problem.free_arc_merchant.astype(np.int64)
    fn = problem.free_arc_node.astype(np.int64)
    nf = node_free.astype(np.int64)[fn]
    eligible = group_sums(fm, nf, n_f)
    tot = totals[fm]
    cap = spread_caps(kappa, tot, nf, eligible[fm])
    # Exact reductions of that network (same optimal cost, same totals): merchant f has no in-arcs and
    # supplies totals_f, so no arc out of it carries more than totals_f, and overflow (cost 1 > 0) is
    # only worth using once the capped part is full. A merchant with a zero total keeps no arc at all.
    reach = np.minimum(nf, tot)
    cap = np.minimum(cap, tot)
    over = reach - cap
    live = np.flatnonzero(tot > 0)
    tried = time.perf_counter()
    within = _split(n_f, n_s, fm[live], fn[live], cap[live], totals, node_free)  # the capped arcs alone
    attempt = extras["free_spread_within_caps_seconds"] = time.perf_counter() - tried
    if within is not None:  # no overflow at all: cost 0, the least there is; no min-cost flow needed
        spread = np.zeros(fm.size, np.int64)
        spread[live] = within
        extras["free_spread_overflow"] = 0.0
        extras["free_spread_seconds"] = time.perf_counter() - started
        return spread
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
    # building the min-cost flow's graph (the max flow tried before it is solve time, as the others are)
    extras["free_build_seconds"] = (
        extras.get("free_build_seconds", 0.0) + time.perf_counter() - started - attempt
    )
    status = smcf.solve()
    extras["free_spread_seconds"] = time.perf_counter() - started
    if status != smcf.OPTIMAL:
        logger.error("free pool: spreading min-cost flow status %s; keeping a max-flow split", status.name)
        extras["free_spread_failed"] = 1.0
        return _plain_split(problem, node_free, totals)
    flows = np.asarray(smcf.flows(arc_ids[:b]), dtype=np.int64)
    spread = np.zeros(fm.size, np.int64)
    spread[live] = flows[:a]
    spread[has_over] += flows[a:b]
    extras["free_spread_overflow"] = float(flows[a:b].sum())
    return spread


def _split(
    n_f: int, n_s: int, merchant: np.ndarray, node: np.ndarray, arc_cap: I64, totals: I64, node_free: I64
) -> I64 | None:
    """Per arc (merchant -> node, at most arc_cap), a split that gives every merchant exactly its total
    within the nodes' free capacity: one max flow, source -> merchant (its total) -> node -> sink (the
    node's free capacity); None when these arcs cannot carry all of it."""
    source, sink = n_f + n_s, n_f + n_s + 1
    mf = max_flow.SimpleMaxFlow()
    mf.add_arcs_with_capacity(np.full(n_f, source, np.int32), np.arange(n_f, dtype=np.int32), totals)
    mid = np.asarray(
        mf.add_arcs_with_capacity(merchant.astype(np.int32), (node + n_f).astype(np.int32), arc_cap),
        dtype=np.int32,
    )
    mf.add_arcs_with_capacity(
        np.arange(n_f, n_f + n_s, dtype=np.int32), np.full(n_s, sink, np.int32), node_free.astype(np.int64)
    )
    if mf.solve(source, sink) != mf.OPTIMAL or mf.optimal_flow() != int(totals.sum()):
        return None
    return np.asarray(mf.flows(mid), dtype=np.int64)


def _plain_split(problem: Problem, node_free: I64, totals: I64) -> I64:
    """Any feasible per-arc split of `totals` (one max flow), for when the spreading solve fails."""
    node = problem.free_arc_node.astype(np.int64)
    arc_cap = node_free[node].astype(np.int64)  # (no cap of its own: the node's free capacity)
    got = _split(totals.size, node_free.size, problem.free_arc_merchant, node, arc_cap, totals, node_free)
    if got is None:
        raise RuntimeError("free pool: the fair totals have no feasible split")
    return got
