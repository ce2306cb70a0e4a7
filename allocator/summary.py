"""Headline figures of a plan: per program, per channel, and the free pool's fairness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allocator.domain import Channel, Plan, Problem, Program


@dataclass(frozen=True)
class ProgramFigures:
    program: Program
    redemptions: int
    points_due: int
    points_delivered: int
    points_under_delivered: int
    impressions: int


@dataclass(frozen=True)
class ChannelFigures:
    channel: Channel
    capacity_impressions: int
    paid_impressions: int
    free_impressions: int
    fill_rate: float  # (paid + free) / capacity, 0.0 without capacity


@dataclass(frozen=True)
class PlanFigures:
    programs: tuple[ProgramFigures, ...]  # one per Program, in enum order
    channels: tuple[ChannelFigures, ...]  # one per Channel, in enum order
    free_impressions: int
    free_merchants: int  # distinct merchants with at least one eligible free arc
    free_min_level: float
    free_jain: float  # Jain's index of impressions per unit weight among merchants with arcs
    arcs: int  # paid arcs of the problem
    demands: int  # paid demands: (redemption, planned day) pairs
    nodes: int


def jain_index(x: np.ndarray) -> float:
    """(sum x)^2 / (n * sum x^2); 1.0 when n == 0 or all x are zero."""
    x = np.asarray(x, dtype=np.float64)
    sq = float(np.dot(x, x))
    return 1.0 if x.size == 0 or sq == 0.0 else float(x.sum() ** 2 / (x.size * sq))


def plan_figures(problem: Problem, plan: Plan) -> PlanFigures:
    """Aggregate `plan` over programs, channels and the free pool."""
    d_impr = np.bincount(
        plan.paid_demand, weights=plan.paid_impressions, minlength=problem.demand_points.size
    )
    source = problem.source_of_demands()
    programs = []
    for p in Program:
        m = problem.demand_program == int(p)
        due, delivered = int(problem.demand_points[m].sum()), int(plan.demand_delivered[m].sum())
        under, impressions = int(plan.demand_under[m].sum()), int(d_impr[m].sum())
        redemptions = int(np.unique(source[m]).size)  # a multi-day flight is one demand per day
        programs.append(ProgramFigures(p, redemptions, due, delivered, under, impressions))
    n_nodes = problem.node_capacity.size
    paid_node = np.bincount(plan.paid_node, weights=plan.paid_impressions, minlength=n_nodes)
    free_node = np.bincount(plan.free_node, weights=plan.free_impressions, minlength=n_nodes)
    channels = []
    for c in Channel:
        m = problem.node_channel == int(c)
        cap, paid, free = (
            int(problem.node_capacity[m].sum()),
            int(paid_node[m].sum()),
            int(free_node[m].sum()),
        )
        channels.append(ChannelFigures(c, cap, paid, free, (paid + free) / cap if cap else 0.0))
    n_free = problem.free_weight.size
    with_arcs = np.bincount(problem.free_arc_merchant, minlength=n_free) > 0
    got = np.bincount(plan.free_merchant, weights=plan.free_impressions, minlength=n_free)
    per_weight = got[with_arcs] / problem.free_weight[with_arcs]
    return PlanFigures(
        programs=tuple(programs),
        channels=tuple(channels),
        free_impressions=int(plan.free_impressions.sum()),
        free_merchants=int(np.unique(problem.source_of_free()[with_arcs]).size),
        free_min_level=plan.free_level,
        free_jain=jain_index(per_weight),
        arcs=int(problem.arc_demand.size),
        demands=int(problem.demand_points.size),
        nodes=n_nodes,
    )
