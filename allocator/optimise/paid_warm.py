"""A warm re-solve of the paid tier from estimated node prices: fix what the prices settle, solve the rest,
verify, and repeat; exact, or None so that the caller solves cold.

The paid tier's optimum puts most arc parts at a bound: on the 1M-arc benchmark day, 615k of 1.98M parts
are full, 1.34M empty and only 21k in between. With node prices (potentials) near the optimal ones, the
reduced cost of a part, rc = k + dist_d - dist_s, says which bound it sits at, so only the parts whose rc
is near 0 need a solver: fixed parts become constants (the full ones leave the demands' points and the
nodes' capacities), and OR-Tools solves the small rest (max flow, then min cost, as paid_flow does).

Exactness does not rest on the estimate. After each reduced solve, a Bellman-Ford relaxation started at
the current prices gives potentials under which no residual arc of the reduced problem has a negative
reduced cost (the reduced optimum has no negative cycle). If every fixed part also agrees with them
(a full part with rc <= 0, an empty one with rc >= 0), every residual arc of the whole problem has a
non-negative reduced cost, which certifies the combined flow optimal for the whole problem. Parts that
disagree are freed and the rest is solved again. The under-delivery arcs are priced at
P = (V + 1) * (max|cost| + 1) in the certificate (V: demands, nodes and the sink), more than any chain of
V arcs can gain, so "optimal" here is the lexicographic optimum of paid_flow: the most points delivered,
then the least cost. An estimate that is not finite, or a price beyond ±P, is refused or clipped first,
so that every sum stays far inside int64.

Measured (docs/model.md "Warm re-solves", 1M arcs): from the prices of the same day, one round and a fifth
of the cold time; from those of a day whose capacities and points moved by up to 5 %, three rounds and
54 % of it; re-plans of a day whose morning ran at ±10 % of pace, 40-89 % of it. Prices
from a cold estimate (a solved sample of the demands) are not good enough: the rounds then cost more than
a cold solve, so this is for re-solves of a day that was solved before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import min_cost_flow

from allocator.domain import F64, I32, I64
from allocator.optimise.shortest_paths import csr, relax

logger = logging.getLogger(__name__)

MAX_ROUNDS = 4  # reduced solves before giving up (the measured re-solves needed 1 to 4)
MAX_FREE_SHARE = 0.4  # give up once this share of the parts is free in one round (measured: 5-35 %)
MAX_WORK = 1.0  # ... or once the rounds together would have solved this many times the parts (the waste
# of a warm start that does not settle stays about one cold solve's worth of arcs)
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


def reduced_solve(parts: Parts, free: np.ndarray, fixed: I64) -> I64 | None:
    """Flows of the free parts: max flow, then min cost, with the fixed parts' flows taken off the demands'
    points and the nodes' capacities (None: the solver did not reach an optimum)."""
    n_dem, n_nodes = parts.due.size, parts.node_cap.size
    sink = n_dem + n_nodes
    node_left = parts.node_cap - np.bincount(parts.node, weights=fixed, minlength=n_nodes).astype(np.int64)
    due_left = parts.due - np.bincount(parts.demand, weights=fixed, minlength=n_dem).astype(np.int64)
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
    used = np.bincount(parts.node, weights=flow, minlength=n_nodes).astype(np.int64)
    under = parts.due - np.bincount(parts.demand, weights=flow, minlength=n_dem).astype(np.int64)
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


def warm_flows(parts: Parts, prices: WarmPrices) -> tuple[I64, int] | None:
    """Per-part flows of the paid tier's lexicographic optimum, found from estimated node prices, and the
    rounds it took; None when the estimate does not settle it within MAX_ROUNDS, MAX_FREE_SHARE and
    MAX_WORK, or does not fit the parts (solve cold then)."""
    n_dem, n_nodes = parts.due.size, parts.node_cap.size
    n_parts = parts.cost.size
    if n_parts == 0 or prices.value.shape != (n_nodes,) or prices.relieves.shape != (n_nodes,):
        return None
    penalty = (n_dem + n_nodes + 2) * (int(np.abs(parts.cost).max()) + 1)
    if penalty >= 2**58:
        return None  # (potentials and reduced costs stay within a few penalties: int64 with room to spare)
    node_dist = prices.node_dist(penalty)
    if node_dist is None:
        return None
    dist = np.zeros(n_dem + n_nodes + 1, np.int64)
    dist[n_dem:-1] = node_dist
    dist[:n_dem] = demand_prices(parts, node_dist, penalty)
    rc = parts.cost + dist[parts.demand] - dist[parts.node + n_dem]
    free = np.abs(rc) <= BAND
    full = ~free & (rc < 0)  # fixed at their upper bound; the other parts that are not free, at 0
    worked = 0  # parts handed to the solver so far
    for rounds in range(1, MAX_ROUNDS + 1):
        # fixed parts alone must not overfill a node or a demand: let the solver choose there
        fixed = np.where(full, parts.upper, 0)
        crowded = np.bincount(parts.node, weights=fixed, minlength=n_nodes) > parts.node_cap
        overdue = np.bincount(parts.demand, weights=fixed, minlength=n_dem) > parts.due
        free |= full & (crowded[parts.node] | overdue[parts.demand])
        full &= ~free
        flow = np.where(full, parts.upper, 0)  # the fixed parts' flows; the free ones' come from the solver
        n_free = int(free.sum())
        worked += n_free
        if n_free > MAX_FREE_SHARE * n_parts or worked > MAX_WORK * n_parts:
            logger.info(
                "warm paid solve: %d of %d parts free in round %d; solving cold", n_free, n_parts, rounds
            )
            return None
        reduced = reduced_solve(parts, free, flow)
        if reduced is None:
            return None
        flow[free] = reduced
        certified = certify(parts, flow, dist, free, penalty)
        if certified is None:
            return None
        dist = certified
        rc = parts.cost + dist[parts.demand] - dist[parts.node + n_dem]
        # a fixed part disagrees when its residual arc would have a negative reduced cost
        wrong = ~free & (parts.upper > 0) & ((full & (rc > 0)) | (~full & (rc < 0)))
        if not bool(wrong.any()):
            return flow, rounds
        free |= wrong | (np.abs(rc) <= BAND)
        full &= ~free
    logger.info("warm paid solve: not settled in %d rounds; solving cold", MAX_ROUNDS)
    return None
