"""How many more points a supply can take without taking any from committed redemptions.

On the residual network of an optimal paid plan, a max flow from a new source (connected to the nodes a
hypothetical redemption could use) to the sink is the exact room left: augmenting paths may reroute
committed demands between their eligible nodes but never reduce what any of them receives (their
under-delivery arcs are left out, and an optimal plan has no augmenting path for its under-delivered
demands, so the room takes nothing they could have had).
"""

from __future__ import annotations

import numpy as np
from ortools.graph.python import max_flow

from allocator.domain import I32, I64, MAX_REDEMPTION_POINTS, Channel, Problem, ProblemInputs, Program
from allocator.problem import node_paid_points

ROOM_LIMIT = MAX_REDEMPTION_POINTS  # the most points one redemption may carry: rooms are quoted up to it


def residual_room(
    problem: Problem, paid_demand: I32, paid_node: I32, paid_points: I64, source_nodes: list[I32]
) -> list[int]:
    """For each index array in source_nodes: the max flow from those supply nodes to the sink, or
    ROOM_LIMIT where it is at least that.

    The network is built once from arrays; each question only changes the source arcs' capacities.
    """
    n_dem, n_nodes = problem.demand_points.size, problem.node_capacity.size
    sink, source = n_dem + n_nodes, n_dem + n_nodes + 1
    paidcap = node_paid_points(problem)
    used = np.bincount(paid_node, weights=paid_points, minlength=n_nodes).astype(np.int64)
    # committed flow on every eligible (demand, node) pair, 0 where the plan puts nothing
    flow = np.zeros(problem.arc_demand.size, dtype=np.int64)
    if paid_points.size:
        key_arcs = problem.arc_demand.astype(np.int64) * n_nodes + problem.arc_node
        key_paid = paid_demand.astype(np.int64) * n_nodes + paid_node
        order = np.argsort(key_arcs)
        pos = order[np.searchsorted(key_arcs, key_paid, sorter=order)]
        flow[pos] = paid_points
    nodes = np.arange(n_nodes, dtype=np.int32) + n_dem
    dem = problem.arc_demand.astype(np.int32)
    head = problem.arc_node.astype(np.int32) + n_dem
    back = np.flatnonzero(flow > 0)
    tails = np.concatenate([
        np.full(n_nodes, source, np.int32),  # 1. new source -> node (opened per question)
        nodes,  # 2. node -> sink: the paid capacity the plan leaves
        dem,  # 3. committed demand -> eligible node: room to reroute onto it
        head[back],  # 4. node -> committed demand: undo part of its flow there (it goes elsewhere)
    ])  # fmt: skip
    heads = np.concatenate([nodes, np.full(n_nodes, sink, np.int32), head, dem[back]])
    caps = np.concatenate([
        np.zeros(n_nodes, np.int64),
        np.maximum(paidcap - used, 0),
        np.maximum(paidcap[problem.arc_node] - flow, 0),
        flow[back],
    ])  # fmt: skip
    graph = max_flow.SimpleMaxFlow()
    arcs = graph.add_arcs_with_capacity(tails, heads, caps)
    source_arcs = np.asarray(arcs[:n_nodes])
    rooms = []
    for chosen in source_nodes:
        capacity = np.zeros(n_nodes, np.int64)
        # each opened source arc carries at most ROOM_LIMIT: a cut of value below it holds no source arc,
        # so rooms below the limit are exact, and no flow the solver adds up can pass int64 (a day's paid
        # capacity can: 100,000 nodes of up to 10^15 points)
        capacity[chosen] = ROOM_LIMIT
        graph.set_arcs_capacity(source_arcs, capacity)
        status = graph.solve(source, sink)
        if status != graph.OPTIMAL:
            raise RuntimeError(f"residual max flow ended with status {status}")
        rooms.append(min(int(graph.optimal_flow()), ROOM_LIMIT))
    return rooms


def hypothetical_nodes(
    inputs: ProblemInputs, problem: Problem, program: Program, channels: set[Channel], regions: set[str]
) -> list[I32]:
    """Per planned date: the nodes a redemption of `program` with these channels and regions could use."""
    allowed = channels & set(inputs.rules.program_channels.get(program, frozenset()))
    paidcap = node_paid_points(problem)
    return [
        np.array(
            [
                i
                for i, n in enumerate(inputs.nodes)
                if n.date == day and n.channel in allowed and n.region in regions and paidcap[i] > 0
            ],
            dtype=np.int32,
        )
        for day in inputs.dates
    ]


def most_points_for_flight(room_by_day: list[int]) -> int:
    """Largest X <= ROOM_LIMIT whose pro-rata daily dues floor(X(k+1)/n) - floor(Xk/n) fit every day's room.

    With m the smallest room, X = n*m always fits (every day owes m); X = n*m + r owes m+1 on r of the
    days, which fits only if those days have the room: try r from n-1 down.
    """
    n = len(room_by_day)
    if n == 0:
        return 0
    m = min(room_by_day)
    for r in range(n - 1, -1, -1):
        x = min(n * m + r, ROOM_LIMIT)  # (ROOM_LIMIT <= n*m always fits: no day owes more than m)
        dues = [x * (k + 1) // n - x * k // n for k in range(n)]
        if all(d <= room for d, room in zip(dues, room_by_day, strict=True)):
            return x
    return n * m  # pragma: no cover - r = 0 always fits
