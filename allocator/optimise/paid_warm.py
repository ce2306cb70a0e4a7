"""A warm re-solve of the paid tier from estimated node prices: fix what the prices settle, solve the rest,
verify, and finish with the network simplex where the prices were wrong; exact, or None so that the
caller solves cold.

The paid tier's optimum puts most arc parts at a bound: on the 1M-arc benchmark day, 615k of 1.98M parts
are full, 1.34M empty and only 21k in between. With node prices (potentials) near the optimal ones, the
reduced cost of a part, rc = k + dist_d - dist_s, says which bound it sits at, so only the parts whose rc
is near 0 need a solver: fixed parts become constants (the full ones leave the demands' points and the
nodes' capacities), and OR-Tools solves the small rest (max flow, then min cost, as paid_flow does).

Exactness does not rest on the estimate. After the reduced solve, a Bellman-Ford relaxation started at
the current prices gives potentials under which no residual arc of the reduced problem has a negative
reduced cost (the reduced optimum has no negative cycle). If every fixed part also agrees with them
(a full part with rc <= 0, an empty one with rc >= 0), every residual arc of the whole problem has a
non-negative reduced cost, which certifies the combined flow optimal for the whole problem. Where parts
disagree, the combined flow (feasible: every demand's shortfall on its under-delivery arc) becomes the
starting basis of a primal network simplex over the whole network (network_simplex.Simplex.from_flow),
which pivots over the free and disagreeing parts, then over whatever part its potentials show wrong,
until none is; its answer is checked from the arrays (`optimal`: bounds, conservation, complementary
slackness) before it is used. OR-Tools cannot start from a flow, so each further reduced solve used to
cost most of the first one; the simplex repairs only what is wrong. The under-delivery arcs are priced
at P = (V + 1) * (max|cost| + 1) in the certificate and the simplex (V: demands, nodes and the sink),
more than any chain of V arcs can gain, so "optimal" here is the lexicographic optimum of paid_flow:
the most points delivered, then the least cost. An estimate that is not finite, or a price beyond ±P,
is refused or clipped first, so that every sum stays far inside int64.

Measured: docs/model.md "Warm re-solves". Prices from a cold estimate (a solved sample of the demands) are
not good enough (the reduced problem is then most of the network), so this is for re-solves of a day
that was solved before.

Cold solves use the same tail (`settle`) without prices (`restricted_flows`): OR-Tools solves the network
less the overflow parts paid_flow guesses unused, the certificate (relaxed from zero potentials) proves it
for the whole network, and the simplex brings in any left-out part worth using.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import min_cost_flow

from allocator.domain import F64, I32, I64
from allocator.optimise.flow_optimality import optimal
from allocator.optimise.shortest_paths import csr, relax

logger = logging.getLogger(__name__)

MAX_FREE_SHARE = 0.4  # solve cold when the estimate leaves more of the parts free (measured: 5-35 %)
SIMPLEX_PIVOTS_PER_NODE = 4  # the simplex finish's pivot budget per vertex (measured needs: 0.3 per vertex
# at 1M arcs moved by 5 %, 1.0 at 5M)
SIMPLEX_SECONDS_PER_PART = 1.2e-6  # ... and its time: about 40 % of what a cold solve takes per part here
# (2.9-3.5 us at 1M-5M arcs; measured finishes: 0.33 s of its 2.4 s at 1M arcs, 4.6 s of 12 s at 5M)
SIMPLEX_CHUNK = 1000  # pivots between two looks at the clock
SIMPLEX_ROUNDS = 20  # ... and at most this many scans of all parts for arcs that went wrong (measured: 2-4)
BAND = 50  # parts with |rc| <= BAND under the estimate start free (cost units per point)


@dataclass(frozen=True)
class Parts:
    """The paid tier's arc parts (capped and overflow) as one bipartite network, flow in points."""

    demand: I32  # (A,) tail: demand index
    node: I32  # (A,) head: node index
    upper: I64  # (A,) capacity of the part
    cost: I64  # (A,) unit cost of the part
    node_cap: I64  # (S,) paid capacity of each node in points
    due: I64  # (D,) points due of each demand


@dataclass(frozen=True)
class WarmPrices:
    """Estimated shadow prices of the nodes' paid capacity, from an earlier solve of a similar day.

    value: cost units per point, the price less the under-delivery penalty where the node relieves
    under-delivery (there it may be negative: PaidDuals.value_cost); relieves: the node's extra point
    would be delivered to an otherwise under-delivered demand (its price then carries the penalty too).
    """

    value: F64
    relieves: np.ndarray

    def node_dist(self, penalty: int) -> I64 | None:
        """Node potentials relative to the sink: minus the price (clipped to [-penalty, penalty]), the
        penalty included where it relieves; None when a price is not a finite number."""
        if not bool(np.all(np.isfinite(self.value))):
            return None
        price = np.rint(np.clip(self.value, -penalty, penalty)).astype(np.int64)
        return -price - np.where(self.relieves, penalty, 0)


def loads(parts: Parts, flow: I64) -> tuple[I64, I64]:
    """Points a per-part flow puts on each node and delivers to each demand."""
    on_node = np.bincount(parts.node, weights=flow, minlength=parts.node_cap.size).astype(np.int64)
    to_demand = np.bincount(parts.demand, weights=flow, minlength=parts.due.size).astype(np.int64)
    return on_node, to_demand


def reduced_solve(parts: Parts, free: np.ndarray, fixed: I64) -> I64 | None:
    """Flows of the free parts: max flow, then min cost, with the fixed parts' flows taken off the demands'
    points and the nodes' capacities (None: the solver did not reach an optimum)."""
    n_dem, n_nodes = parts.due.size, parts.node_cap.size
    sink = n_dem + n_nodes
    on_node, to_demand = loads(parts, fixed)
    node_left, due_left = parts.node_cap - on_node, parts.due - to_demand
    fi = np.flatnonzero(free)
    tails = np.concatenate([parts.demand[fi], np.arange(n_dem, sink)]).astype(np.int32)
    heads = np.concatenate([parts.node[fi] + n_dem, np.full(n_nodes, sink)]).astype(np.int32)
    caps = np.concatenate([parts.upper[fi], node_left])
    costs = np.concatenate([parts.cost[fi], np.zeros(n_nodes, np.int64)])
    smcf = min_cost_flow.SimpleMinCostFlow()
    ids = smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    supplies = np.zeros(sink + 1, np.int64)
    supplies[:n_dem] = due_left
    supplies[sink] = -int(due_left.sum())
    smcf.set_nodes_supplies(np.arange(sink + 1, dtype=np.int32), supplies)
    if smcf.solve_max_flow_with_min_cost() != smcf.OPTIMAL:
        return None
    return np.asarray(smcf.flows(np.asarray(ids)), dtype=np.int64)[: fi.size]


def demand_prices(parts: Parts, node_dist: I64, penalty: int) -> I64:
    """Each demand's potential under the node potentials: minus the price of its marginal part when it
    fills its parts cheapest first (price k - dist_s), or minus the under-delivery penalty when they do
    not hold its points."""
    n_dem = parts.due.size
    price = parts.cost - node_dist[parts.node]
    lo = int(price.min())
    span = int(price.max()) - lo + 1
    if n_dem * span < 2**62:  # one int64 key, demand then price: a tenth of lexsort's time
        order = np.argsort(parts.demand.astype(np.int64) * span + (price - lo), kind="stable")
    else:
        order = np.lexsort((price, parts.demand))
    dem, pr, up = parts.demand[order], price[order], parts.upper[order]
    cum = np.cumsum(up)
    start = np.searchsorted(dem, np.arange(n_dem))
    before = cum - up - np.r_[0, cum][start][dem]  # capacity of the demand's cheaper parts
    marginal = (before < parts.due[dem]) & (before + up >= parts.due[dem])
    out = np.full(n_dem, -penalty, np.int64)
    out[dem[marginal]] = -pr[marginal]
    return out


def certify(parts: Parts, flow: I64, dist: I64, free: np.ndarray, penalty: int) -> I64 | None:
    """Potentials (vertices: demands, nodes, the sink last) under which every residual arc of the free
    parts, the node -> sink arcs and the under-delivery arcs has a non-negative reduced cost, relaxed from
    `dist`; None when there are none (the flow is not optimal on its free parts)."""
    n_dem, n_nodes = parts.due.size, parts.node_cap.size
    sink = n_dem + n_nodes
    used, delivered = loads(parts, flow)
    under = parts.due - delivered
    fi = np.flatnonzero(free)
    d, s, k, x, u = parts.demand[fi], parts.node[fi] + n_dem, parts.cost[fi], flow[fi], parts.upper[fi]
    nodes, dems = np.arange(n_dem, sink), np.arange(n_dem)
    room, has = used < parts.node_cap, used > 0
    short, got = under > 0, under < parts.due

    def at_sink(mask: np.ndarray) -> I64:
        return np.full(int(mask.sum()), sink, np.int64)

    tails = np.concatenate([d[x < u], s[x > 0], nodes[room], at_sink(has), dems[got], at_sink(short)])
    heads = np.concatenate([s[x < u], d[x > 0], at_sink(room), nodes[has], at_sink(got), dems[short]])
    zero_room, zero_has = np.zeros(int(room.sum()), np.int64), np.zeros(int(has.sum()), np.int64)
    costs = np.concatenate(
        [
            k[x < u],
            -k[x > 0],
            zero_room,
            zero_has,
            np.full(int(got.sum()), penalty),
            np.full(int(short.sum()), -penalty),
        ]
    )
    order, starts, counts = csr(tails, sink + 1)
    if order is not None:
        heads, costs = heads[order], costs[order]
    out = dist.copy()
    return None if relax(starts, counts, heads, costs, out, np.arange(sink + 1)) is None else out


def simplex_finish(
    parts: Parts, flow: I64, dist: I64, search: np.ndarray, penalty: int, *, quiet: bool = False
) -> I64 | None:
    """Per-part flows of the lexicographic optimum, continued from `flow` (feasible: every demand's
    shortfall goes to its under-delivery arc) by the network simplex: a basis is built from the flow
    and `dist`, pivots run over the parts in `search` (and the node -> sink and under-delivery arcs), and
    whatever part then has a negative reduced cost joins them, until none has. None (logged): the basis
    could not be built in time (its cycles), the pivots, the time or the rounds ran out, or the result
    failed its check; never a flow that is not optimal. quiet: no log line when it finishes."""
    deadline = time.perf_counter() + SIMPLEX_SECONDS_PER_PART * parts.cost.size
    n_dem, n_nodes = parts.due.size, parts.node_cap.size
    n_parts = parts.cost.size
    sink = n_dem + n_nodes
    used, delivered = loads(parts, flow)
    tails = np.concatenate([parts.demand, np.arange(n_dem, sink), np.arange(n_dem)]).astype(np.int32)
    heads = np.concatenate([parts.node + n_dem, np.full(n_dem + n_nodes, sink)]).astype(np.int32)
    caps = np.concatenate([parts.upper, parts.node_cap, parts.due])
    costs = np.concatenate([parts.cost, np.zeros(n_nodes, np.int64), np.full(n_dem, penalty, np.int64)])
    flows = np.concatenate([flow, used, parts.due - delivered])
    # int32, as the simplex takes it: run() would otherwise copy it at every chunk
    scope = np.concatenate([np.flatnonzero(search), np.arange(n_parts, tails.size)]).astype(np.int32)
    rc = costs[scope] + dist[tails[scope]] - dist[heads[scope]]
    connectors = scope[np.argsort(np.abs(rc), kind="stable")]
    # imported here: numba compiles or loads machine code, and if it cannot, only this path fails
    from allocator.optimise.network_simplex import Simplex

    sx = Simplex.from_flow(sink + 1, tails, heads, caps, costs, flows, dist, connectors)
    if sx is None:
        logger.info("paid solve: the flow's inner cycles were not cancelled in time; solving cold")
        return None
    budget = SIMPLEX_PIVOTS_PER_NODE * (sink + 1)
    for _ in range(SIMPLEX_ROUNDS):
        while not sx.run(scope, min(SIMPLEX_CHUNK, budget - sx.pivots)):
            if sx.pivots >= budget:
                logger.info("paid solve: simplex over %d pivots; solving cold", budget)
                return None
            if time.perf_counter() > deadline:
                logger.info("paid solve: simplex over its time (%d pivots); solving cold", sx.pivots)
                return None
        wrong = sx.violations()
        if wrong.size == 0:
            break
        scope = np.concatenate([scope, wrong.astype(np.int32)])
    else:
        logger.info("paid solve: simplex not settled in %d rounds; solving cold", SIMPLEX_ROUNDS)
        return None
    if not quiet:
        logger.info("paid solve: the simplex finished in %d pivots over %d arcs", sx.pivots, scope.size)
    out = sx.flow[: tails.size]
    if not optimal(tails, heads, caps, costs, out, sx.potential(), sink, parts.due):
        logger.error("paid solve: the simplex's flow failed its optimality check; solving cold")
        return None
    return out[:n_parts].copy()


def prepare_or_log() -> None:
    """prepare(), its failure logged rather than raised: the warm path falls back to cold solves alone."""
    try:
        prepare()
    except Exception:
        logger.exception("the network simplex did not warm up; warm re-solves will solve cold if it fails")


def prepare() -> None:
    """Load (or, the first time on a machine, compile: about 4 s) the network simplex's machine code, so
    that the first warm re-solve of a process does not pay for it (the solver process calls this at start)."""
    parts = Parts(
        np.array([0, 0, 1], np.int32),
        np.array([0, 1, 1], np.int32),
        np.array([2, 2, 2], np.int64),
        np.array([-3, -1, -2], np.int64),
        np.array([2, 2], np.int64),
        np.array([2, 2], np.int64),
    )
    flow = np.array([0, 2, 0], np.int64)  # feasible, not optimal: part 0 is the cheaper way for demand 0
    penalty = 100
    dist = np.zeros(5, np.int64)
    got = simplex_finish(parts, flow, dist, np.ones(3, bool), penalty, quiet=True)
    if got is None or got.tolist() != [2, 0, 2]:
        raise AssertionError(f"the network simplex failed its own warm-up: {got}")


def warm_flows(parts: Parts, prices: WarmPrices) -> tuple[I64, int] | None:
    """Per-part flows of the paid tier's lexicographic optimum, found from estimated node prices, and how:
    1 when the reduced solve settled it, 2 when the network simplex finished it; None (solve cold then)
    when the estimate does not fit the parts or leaves more than MAX_FREE_SHARE of them free, the reduced
    solve fails, or the simplex gives up (simplex_finish)."""
    n_dem, n_nodes = parts.due.size, parts.node_cap.size
    n_parts = parts.cost.size
    if n_parts == 0 or prices.value.shape != (n_nodes,) or prices.relieves.shape != (n_nodes,):
        return None
    penalty = _penalty(parts)  # (potentials and reduced costs stay within a few penalties: int64 with room)
    if penalty is None:
        return None
    node_dist = prices.node_dist(penalty)
    if node_dist is None:
        return None
    dist = np.zeros(n_dem + n_nodes + 1, np.int64)
    dist[n_dem:-1] = node_dist
    dist[:n_dem] = demand_prices(parts, node_dist, penalty)
    rc = parts.cost + dist[parts.demand] - dist[parts.node + n_dem]
    free = np.abs(rc) <= BAND
    full = ~free & (rc < 0)  # fixed at their upper bound; the other parts that are not free, at 0
    # fixed parts alone must not overfill a node or a demand: let the solver choose there
    on_node, to_demand = loads(parts, np.where(full, parts.upper, 0))
    crowded, overdue = on_node > parts.node_cap, to_demand > parts.due
    free |= full & (crowded[parts.node] | overdue[parts.demand])
    full &= ~free
    n_free = int(free.sum())
    if n_free > MAX_FREE_SHARE * n_parts:
        logger.info("warm paid solve: %d of %d parts free; solving cold", n_free, n_parts)
        return None
    return settle(parts, free, full, dist, penalty)


def _penalty(parts: Parts) -> int | None:
    """The under-delivery price of the certificate and the simplex, (V + 1) * (max|cost| + 1) with V the
    demands, nodes and sink; None when sums of a few of them could leave int64."""
    penalty = (parts.due.size + parts.node_cap.size + 2) * (int(np.abs(parts.cost).max()) + 1)
    return None if penalty >= 2**58 else penalty


def settle(
    parts: Parts, free: np.ndarray, full: np.ndarray, dist: I64, penalty: int
) -> tuple[I64, int] | None:
    """The lexicographic optimum with the parts not `free` fixed (`full` ones at their upper bound, the
    others at 0): OR-Tools solves the free parts, a certificate relaxed from `dist` proves the result
    optimal for the whole network (1), or the simplex finishes it where fixed parts disagree (2); None when
    the reduced solve, the certificate or the simplex fails (the caller then solves cold)."""
    flow = np.where(full, parts.upper, 0)  # the fixed parts' flows; the free ones' come from the solver
    reduced = reduced_solve(parts, free, flow)
    if reduced is None:
        logger.warning("paid solve: the reduced solve reached no optimum; solving cold")
        return None
    flow[free] = reduced
    certified = certify(parts, flow, dist, free, penalty)
    if certified is None:
        logger.warning("paid solve: the reduced solve's flow has no certificate; solving cold")
        return None
    rc = parts.cost + certified[parts.demand] - certified[parts.node + parts.due.size]
    # a fixed part disagrees when its residual arc would have a negative reduced cost
    wrong = ~free & (parts.upper > 0) & ((full & (rc > 0)) | (~full & (rc < 0)))
    if not bool(wrong.any()):
        return flow, 1
    finished = simplex_finish(parts, flow, certified, free | wrong, penalty)
    if finished is None:
        return None
    return finished, 2


def restricted_flows(parts: Parts, free: np.ndarray) -> tuple[I64, int] | None:
    """The lexicographic optimum of the whole network from a solve of the `free` parts alone (the others
    empty), certified or finished as `settle` does (1 or 2); None: solve the whole network instead. For a
    cold solve that leaves out arcs an optimum seldom uses (paid_flow: overflow parts into nodes whose
    capped parts alone can fill them): where the certificate shows one of them worth using, the simplex
    brings it in."""
    if parts.cost.size == 0:
        return None
    penalty = _penalty(parts)
    if penalty is None:
        return None
    dist = np.zeros(parts.due.size + parts.node_cap.size + 1, np.int64)
    return settle(parts, free, np.zeros(parts.cost.size, dtype=bool), dist, penalty)
