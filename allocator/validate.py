"""Solver-independent plan validation against the stored records.

Eligibility is checked from the records (redemptions, eligibility entries, rules, nodes), not from the
Problem's arc arrays, so a bug in building the arcs is caught too. Everything here is plain numpy.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

import numpy as np

from allocator.domain import Plan, Problem, ProblemInputs
from allocator.problem import points_due

_MAX_MESSAGES_PER_CHECK = 5


class PlanInvalid(AssertionError):
    """A plan breaks a hard constraint; `errors` lists what."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _report(errors: list[str], mask: np.ndarray, what: str, ids: np.ndarray | None = None) -> None:
    bad = np.flatnonzero(mask)
    if bad.size:
        shown = (ids[bad] if ids is not None else bad)[:_MAX_MESSAGES_PER_CHECK].tolist()
        errors.append(f"{what}: {bad.size} violations, e.g. at {shown}")


def _integral(errors: list[str], plan: Plan) -> None:
    for name in (
        "paid_demand",
        "paid_node",
        "paid_points",
        "paid_impressions",
        "free_merchant",
        "free_node",
        "free_impressions",
        "demand_delivered",
        "demand_under",
    ):
        arr = np.asarray(getattr(plan, name))
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            errors.append(f"{name} is not an integer array ({arr.dtype})")
        elif arr.size and arr.min() < 0:
            errors.append(f"{name} has negative entries")


def validation_errors(inputs: ProblemInputs, problem: Problem, plan: Plan) -> list[str]:
    """Every hard-constraint violation of `plan` (empty when the plan is feasible)."""
    errors: list[str] = []
    _integral(errors, plan)
    if errors:
        return errors
    n_nodes, n_dem, n_free = len(inputs.nodes), problem.demand_points.size, len(inputs.eligibility)
    n_entries = problem.free_weight.size
    pd, ps = plan.paid_demand.astype(np.int64), plan.paid_node.astype(np.int64)
    fm, fs = plan.free_merchant.astype(np.int64), plan.free_node.astype(np.int64)
    if (pd.size and pd.max() >= n_dem) or (ps.size and ps.max() >= n_nodes):
        return ["paid arc index out of range"]
    if (fm.size and fm.max() >= n_entries) or (fs.size and fs.max() >= n_nodes):
        return ["free arc index out of range"]

    # capacity: paid within the paid share (in impressions and in points); paid + free within the node.
    # The reserved share comes from the records and the rules, not from the Problem.
    capacity = np.array([n.capacity for n in inputs.nodes], dtype=np.int64)
    price = np.array([n.price for n in inputs.nodes], dtype=np.int64)
    share = inputs.rules.free_share
    reserved = np.array(
        [min(max(math.floor(n.capacity * share.get(n.channel, 0.0)), 0), n.capacity) for n in inputs.nodes],
        dtype=np.int64,
    )
    paid_points_cap = (capacity - reserved) * price // 1000  # K_s; below 2^63 within the API's limits
    paid = np.zeros(n_nodes, np.int64)
    np.add.at(paid, ps, plan.paid_impressions)
    points_on = np.zeros(n_nodes, np.int64)
    np.add.at(points_on, ps, plan.paid_points)
    free = np.zeros(n_nodes, np.int64)
    np.add.at(free, fs, plan.free_impressions)
    _report(errors, paid > capacity - reserved, "paid impressions above the paid capacity")
    _report(errors, points_on > paid_points_cap, "paid points above the node's paid capacity in points")
    _report(errors, paid + free > capacity, "paid + free impressions above node capacity")
    _report(
        errors,
        plan.paid_impressions != plan.paid_points * 1000 // price[ps],
        "paid impressions != floor(points * 1000 / price)",
    )

    # points: each demand is a redemption on one planned day (or on all of them); its due points come
    # from the records, and a redemption's demands add up to what it owes over the planned dates
    source = problem.source_of_demands().astype(np.int64)
    demand_days: list[dt.date | None] = (
        [dt.date.fromordinal(int(x)) for x in problem.demand_day]
        if problem.demand_day is not None
        else [None] * n_dem
    )
    day_sets = [list(inputs.dates) if day is None else [day] for day in demand_days]
    due = np.array(
        [points_due(inputs.redemptions[r], ds) for r, ds in zip(source.tolist(), day_sets, strict=True)],
        dtype=np.int64,
    )
    _report(errors, problem.demand_points != due, "demand points != the records' points due")
    owed = np.array([points_due(r, inputs.dates) for r in inputs.redemptions], dtype=np.int64)
    split = np.bincount(source, weights=due, minlength=len(inputs.redemptions)).astype(np.int64)
    _report(errors, split != owed, "a redemption's daily demands do not add up to its points due")
    by_demand = np.zeros(n_dem, dtype=np.int64)
    np.add.at(by_demand, pd, plan.paid_points)
    _report(errors, plan.demand_delivered + plan.demand_under != due, "delivered + under != points due")
    _report(errors, plan.demand_delivered != by_demand, "delivered != sum of the demand's paid points")
    _report(errors, by_demand > due, "paid points above points due")

    # paid eligibility from the records
    dates = set(inputs.dates)
    bad = np.zeros(pd.size, dtype=bool)
    for i, (d, s) in enumerate(zip(pd.tolist(), ps.tolist(), strict=True)):
        r, node = inputs.redemptions[int(source[d])], inputs.nodes[s]
        allowed = inputs.rules.program_channels.get(r.program, frozenset())
        bad[i] = not (
            node.date in dates
            and (demand_days[d] is None or node.date == demand_days[d])
            and r.flight_start <= node.date <= r.flight_end
            and node.channel in r.channels
            and node.channel in allowed
            and node.region in r.regions
        )
    _report(
        errors,
        bad,
        "paid arc not eligible (day, flight, channel, program rule or region)",
        np.arange(pd.size),
    )

    # free eligibility from the records (entry f is a merchant on one day, or on all planned dates), and
    # each entry's cap: the daily quota times the days it covers
    free_channels = {c for c, s in inputs.rules.free_share.items() if s > 0}
    free_src = problem.source_of_free().astype(np.int64)
    free_days: list[dt.date | None] = (
        [dt.date.fromordinal(int(x)) for x in problem.free_day]
        if problem.free_day is not None
        else [None] * len(free_src)
    )
    if (fm.size and fm.max() >= len(free_src)) or (free_src.size and free_src.max() >= n_free):
        return [*errors, "free entry index out of range"]
    bad = np.zeros(fm.size, dtype=bool)
    for i, (f, s) in enumerate(zip(fm.tolist(), fs.tolist(), strict=True)):
        e, node = inputs.eligibility[int(free_src[f])], inputs.nodes[s]
        channels = set(e.channels) if e.channels else free_channels
        bad[i] = not (
            node.date in dates
            and (free_days[f] is None or node.date == free_days[f])
            and e.valid_from <= node.date <= e.valid_to
            and node.channel in channels
            and node.region in e.regions
        )
    _report(errors, bad, "free arc not eligible (day, validity, channel or region)", np.arange(fm.size))
    per_entry: dict[int, int] = defaultdict(int)
    for f, x in zip(fm.tolist(), plan.free_impressions.tolist(), strict=True):
        per_entry[f] += x
    quota = inputs.rules.free_quota_per_weight
    over = []
    for f, x in per_entry.items():
        e = inputs.eligibility[int(free_src[f])]
        n_days = 1 if free_days[f] is not None else sum(e.valid_from <= d <= e.valid_to for d in dates)
        if x > int(np.floor(e.weight * quota + 0.5)) * n_days:
            over.append(e.merchant_id)
    if over:
        errors.append(
            f"free impressions above the daily quota for merchants {over[:_MAX_MESSAGES_PER_CHECK]}"
        )
    return errors


def assert_plan_feasible(inputs: ProblemInputs, problem: Problem, plan: Plan) -> None:
    """Raise PlanInvalid listing every violated hard constraint of `plan`."""
    errors = validation_errors(inputs, problem, plan)
    if errors:
        raise PlanInvalid(errors)
