"""Build the optimisation Problem (numpy arrays) from the stored records.

The records are small Python objects; the solver wants flat arrays. Nodes are grouped once by
(channel, region, date) into index arrays, so every redemption's and every merchant's eligible arcs are a
concatenation of a few of those groups rather than a scan over all nodes.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from allocator.domain import (
    I64,
    Channel,
    Eligibility,
    Problem,
    ProblemInputs,
    Redemption,
    Rules,
    SolveParams,
    SupplyNode,
)

_CHANNEL_SLOTS = max(int(c) for c in Channel) + 1  # lookup tables indexed by the Channel value

GroupKey = tuple[int, str, dt.date]


def points_due(redemption: Redemption, dates: Iterable[dt.date]) -> int:
    """Points of `redemption` due on `dates` (each counted once).

    The points are spread over the flight's n days pro rata with cumulative flooring, so the days of the
    whole flight add up to exactly `points`: day k (0-based) carries floor(P(k+1)/n) - floor(Pk/n).
    """
    n = (redemption.flight_end - redemption.flight_start).days + 1
    if n <= 0:
        return 0
    p = redemption.points
    offsets = {(d - redemption.flight_start).days for d in dates}
    return sum(p * (k + 1) // n - p * k // n for k in offsets if 0 <= k < n)


def free_reserved(capacity: I64, channel: np.ndarray, rules: Rules) -> I64:
    """Impressions of each node reserved for daily promotion: floor(capacity * free_share[channel])."""
    share = np.zeros(_CHANNEL_SLOTS)
    for c, s in rules.free_share.items():
        share[int(c)] = s
    reserved = np.floor(capacity * share[channel.astype(np.int64)]).astype(np.int64)
    return np.clip(reserved, 0, capacity)


def node_paid_points(problem: Problem) -> I64:
    """Paid capacity of each node in points: floor((capacity - reserved) * price / 1000)."""
    paid_impressions = problem.node_capacity - problem.node_free_reserved
    return (paid_impressions * problem.node_price) // 1000


def _group_nodes(nodes: Sequence[SupplyNode], dates: set[dt.date]) -> dict[GroupKey, np.ndarray]:
    """Index arrays (ascending) of the nodes on planned dates, keyed by (channel, region, date)."""
    groups: dict[GroupKey, list[int]] = defaultdict(list)
    for s, node in enumerate(nodes):
        if node.date in dates:
            groups[(int(node.channel), node.region, node.date)].append(s)
    return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}


def _gather(
    groups: dict[GroupKey, np.ndarray],
    channels: Iterable[int],
    regions: Iterable[str],
    dates: Sequence[dt.date],
) -> np.ndarray:
    """Sorted unique node indices in the union of the groups (channels x regions x dates), a new array.
    The groups are disjoint (a node has one channel, region and date) and each is sorted, so with each
    key taken once a sort is enough (np.unique's hashing cost 0.13 s of a 1.1M-arc day's build)."""
    parts = [
        groups[key]
        for c in set(channels)
        for r in set(regions)
        for d in set(dates)
        if (key := (c, r, d)) in groups
    ]
    if not parts:
        return np.zeros(0, dtype=np.int64)
    if len(parts) == 1:
        return parts[0].copy()
    return np.sort(np.concatenate(parts))


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def build_problem(inputs: ProblemInputs, params: SolveParams) -> Problem:
    """The Problem of `inputs`: node, paid-demand and free-merchant arrays with their eligible arcs.

    Paid arcs run from a redemption to every node on a planned date of its flight, in one of its channels
    that its program allows, in one of its regions, with positive paid capacity; free arcs from an eligible
    merchant to every node with capacity on a planned date of its validity, in one of its regions and
    channels (no channels listed: every channel with a reserved share). Arcs are sorted by tail then head.
    `params` is accepted for symmetry with the solve (the arrays do not depend on it today).
    """
    del params
    rules = inputs.rules
    dates = sorted(set(inputs.dates))
    date_set = set(dates)
    nodes = inputs.nodes
    n_nodes = len(nodes)

    capacity = np.fromiter((n.capacity for n in nodes), dtype=np.int64, count=n_nodes)
    price = np.fromiter((n.price for n in nodes), dtype=np.int64, count=n_nodes)
    channel = np.fromiter((int(n.channel) for n in nodes), dtype=np.int8, count=n_nodes)
    reserved = free_reserved(capacity, channel, rules)
    paid_points = ((capacity - reserved) * price) // 1000
    groups = _group_nodes(nodes, date_set)

    # paid arcs: (redemption, planned day of its flight) -> eligible node of that day with paid capacity
    reds = inputs.redemptions
    demand_src: list[int] = []
    demand_day: list[int] = []
    demand_pts: list[int] = []
    demand_prog: list[int] = []
    arc_d: list[np.ndarray] = []
    arc_s: list[np.ndarray] = []
    arc_q: list[np.ndarray] = []
    for r_index, r in enumerate(reds):
        allowed = {int(c) for c in r.channels} & {int(c) for c in rules.program_channels.get(r.program, ())}
        quality = np.ones(_CHANNEL_SLOTS)
        for c in Channel:
            quality[int(c)] = r.quality_of(c)
        for day in (x for x in dates if r.flight_start <= x <= r.flight_end):
            d = len(demand_src)
            demand_src.append(r_index)
            demand_day.append(day.toordinal())
            demand_pts.append(points_due(r, [day]))
            demand_prog.append(int(r.program))
            idx = _gather(groups, allowed, r.regions, [day])
            idx = idx[paid_points[idx] > 0]
            arc_d.append(np.full(idx.size, d, dtype=np.int64))
            arc_s.append(idx)
            arc_q.append(quality[channel[idx].astype(np.int64)])
    demand_points = np.array(demand_pts, dtype=np.int64)
    demand_program = np.array(demand_prog, dtype=np.int8)

    # free arcs: (eligible merchant, valid planned day) -> node of that day with capacity, in its regions
    # and channels; the daily quota applies to each day, so fairness is per day too
    elig: Sequence[Eligibility] = inputs.eligibility
    free_channels = {int(c) for c, s in rules.free_share.items() if s > 0}
    free_src: list[int] = []
    free_day: list[int] = []
    farc_f: list[np.ndarray] = []
    farc_s: list[np.ndarray] = []
    for e_index, e in enumerate(elig):
        chans = {int(c) for c in e.channels} if e.channels else free_channels
        for day in (x for x in dates if e.valid_from <= x <= e.valid_to):
            f = len(free_src)
            free_src.append(e_index)
            free_day.append(day.toordinal())
            idx = _gather(groups, chans, e.regions, [day])
            idx = idx[capacity[idx] > 0]
            farc_f.append(np.full(idx.size, f, dtype=np.int64))
            farc_s.append(idx)
    free_weight = np.array([elig[i].weight for i in free_src], dtype=np.float64)
    daily_quota = np.floor(free_weight * rules.free_quota_per_weight + 0.5).astype(np.int64)  # half up

    return Problem(
        node_capacity=capacity,
        node_price=price,
        node_channel=channel,
        node_free_reserved=reserved,
        demand_points=demand_points,
        demand_program=demand_program,
        arc_demand=_concat(arc_d, np.int32),
        arc_node=_concat(arc_s, np.int32),
        arc_quality=_concat(arc_q, np.float64),
        free_weight=free_weight,
        free_cap=daily_quota,
        free_arc_merchant=_concat(farc_f, np.int32),
        free_arc_node=_concat(farc_s, np.int32),
        demand_source=np.array(demand_src, dtype=np.int32),
        demand_day=np.array(demand_day, dtype=np.int32),
        free_source=np.array(free_src, dtype=np.int32),
        free_day=np.array(free_day, dtype=np.int32),
    )
