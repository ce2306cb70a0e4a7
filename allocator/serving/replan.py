"""Intraday re-planning as a pure function: the rest of a day, from what was delivered.

Given the day's inputs and a snapshot of the delivered counts, the re-plan's problem keeps the hour
windows from `from_hour` on, with each node's capacity less what it already carried; each redemption is
due its day's points less what it was delivered (rounded up, so nothing is ever delivered twice), and each
daily-promotion merchant's quota shrinks by its free impressions. Merchants behind their pace therefore
carry more remaining demand, and the under-delivery penalty puts them first, as HWM's feedback does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from allocator.domain import I64, Problem, ProblemInputs, SolveParams, SupplyNode
from allocator.problem import build_problem, points_due

NodeId = tuple[int, int, str]  # (channel, hour, region)


@dataclass(frozen=True)
class Delivered:
    """A snapshot of one date's counts: per node and line, and per line over the whole day."""

    node_lines: Mapping[NodeId, Mapping[str, int]]  # line field -> impressions; "_n": the node's total
    day_budget: Mapping[str, int]  # "p:<redemption>" -> millipoints, "f:<merchant>" -> impressions

    def node_total(self, node: NodeId) -> int:
        return int(self.node_lines.get(node, {}).get("_n", 0))

    def points_of(self, redemption_id: str) -> int:
        """Points delivered to a redemption on the day, rounded up."""
        return -(-int(self.day_budget.get(f"p:{redemption_id}", 0)) // 1000)

    def free_of(self, merchant_id: str) -> int:
        return int(self.day_budget.get(f"f:{merchant_id}", 0))


@dataclass(frozen=True)
class Replan:
    """The re-plan's inputs and problem, and what the serving lines need on top of its plan."""

    inputs: ProblemInputs
    problem: Problem
    node_limit: I64  # published capacity of each kept node (the serving cap on the node's total)
    demand_budget: I64  # each demand's full points due of the day (the serving cap on its points)


def replan_problem(
    inputs: ProblemInputs, date: dt.date, from_hour: int, delivered: Delivered, params: SolveParams
) -> Replan:
    """The problem of the rest of `date` (hours >= from_hour) after `delivered`."""
    kept: list[SupplyNode] = []
    limits: list[int] = []
    for n in inputs.nodes:
        if n.date != date or n.hour < from_hour:
            continue
        left = max(0, n.capacity - delivered.node_total((int(n.channel), n.hour, n.region)))
        kept.append(dataclasses.replace(n, capacity=left))
        limits.append(n.capacity)
    redemptions = []
    full_due: dict[str, int] = {}
    for r in inputs.redemptions:
        if not r.flight_start <= date <= r.flight_end:
            continue
        due = points_due(r, [date])
        # delivered in full: kept, due 0, so it plans no line but its merchant stays in the plan (asked
        # what it gets, it is answered "nothing more today", not NOT_FOUND as if it had no redemption)
        left = max(0, due - delivered.points_of(r.redemption_id))
        full_due[r.redemption_id] = due
        # the same redemption as a one-day flight due what is left, so the validator checks it as such
        redemptions.append(dataclasses.replace(r, points=left, flight_start=date, flight_end=date))
    eligibility = tuple(e for e in inputs.eligibility if e.valid_from <= date <= e.valid_to)
    sub = ProblemInputs(
        dates=(date,),
        nodes=tuple(kept),
        redemptions=tuple(redemptions),
        eligibility=eligibility,
        rules=inputs.rules,
    )
    problem = build_problem(sub, params)
    free_used = np.array(
        [delivered.free_of(eligibility[i].merchant_id) for i in problem.source_of_free().tolist()],
        dtype=np.int64,
    )
    problem = dataclasses.replace(problem, free_cap=np.maximum(problem.free_cap - free_used, 0))
    budget = np.array(
        [full_due[redemptions[i].redemption_id] for i in problem.source_of_demands().tolist()],
        dtype=np.int64,
    )
    return Replan(sub, problem, np.array(limits, dtype=np.int64), budget)


def line_bases(
    replan: Replan,
    delivered: Delivered,
    paid_demand: np.ndarray,
    paid_node: np.ndarray,
    free_merchant: np.ndarray,
    free_node: np.ndarray,
) -> tuple[I64, I64]:
    """Impressions each plan arc's line had already been shown on its node at the snapshot.

    A line's serving cap is this base plus the re-plan's new impressions, so what was shown before the
    re-plan is neither lost nor counted again.
    """
    nodes, reds, eligs = replan.inputs.nodes, replan.inputs.redemptions, replan.inputs.eligibility
    src, fsrc = replan.problem.source_of_demands(), replan.problem.source_of_free()

    def count(node: int, line: str) -> int:
        n = nodes[node]
        return int(delivered.node_lines.get((int(n.channel), n.hour, n.region), {}).get(line, 0))

    paid = np.array(
        [
            count(s, f"p:{reds[src[d]].redemption_id}")
            for d, s in zip(paid_demand.tolist(), paid_node.tolist(), strict=True)
        ],
        dtype=np.int64,
    )
    free = np.array(
        [
            count(s, f"f:{eligs[fsrc[f]].merchant_id}")
            for f, s in zip(free_merchant.tolist(), free_node.tolist(), strict=True)
        ],
        dtype=np.int64,
    )
    return paid, free
