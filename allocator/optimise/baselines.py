"""Baselines for the paid tier, to compare the min-cost flow with (bench only; not used by the service).

Both take the paid arcs (sorted by demand), the points due and the nodes' paid capacity in points, and
return the points each arc carries (integers, never above the node's capacity or the demand's points).
"""

from __future__ import annotations

import numpy as np

from allocator.domain import I32, I64


def hwm(arc_demand: I32, arc_node: I32, demand_points: I64, node_points: I64) -> I64:
    """Yahoo's high-water-mark greedy: demands in decreasing contention order (points due over eligible
    supply) each take the same fraction of every eligible node's remaining capacity, just enough for
    their points (or all of it)."""
    n_dem = demand_points.size
    remaining = node_points.astype(np.int64).copy()
    eligible = np.bincount(arc_demand, weights=node_points[arc_node], minlength=n_dem)
    contention = np.divide(demand_points, eligible, out=np.full(n_dem, np.inf), where=eligible > 0)
    starts = np.searchsorted(arc_demand, np.arange(n_dem + 1))
    out = np.zeros(arc_demand.size, dtype=np.int64)
    for d in np.argsort(-contention, kind="stable"):
        lo, hi = starts[d], starts[d + 1]
        nodes = arc_node[lo:hi]
        rem = remaining[nodes]
        total = int(rem.sum())
        if total == 0 or demand_points[d] == 0:
            continue
        take = np.floor(rem * min(1.0, demand_points[d] / total)).astype(np.int64)
        out[lo:hi] = take
        remaining[nodes] -= take
    return out


def proportional(arc_demand: I32, arc_node: I32, demand_points: I64, node_points: I64) -> I64:
    """Proportional splitting (as in Revive Adserver's priority engine): each demand asks every eligible
    node for its share of the demand in proportion to the node's capacity; an oversold node scales all
    its requests down by the same factor."""
    n_dem, n_nodes = demand_points.size, node_points.size
    cap = node_points[arc_node].astype(np.float64)
    eligible = np.bincount(arc_demand, weights=cap, minlength=n_dem)
    request = demand_points[arc_demand] * cap / np.maximum(eligible[arc_demand], 1.0)
    asked = np.bincount(arc_node, weights=request, minlength=n_nodes)
    scale = np.minimum(1.0, np.divide(node_points, asked, out=np.ones(n_nodes), where=asked > 0))
    return np.floor(request * scale[arc_node]).astype(np.int64)
