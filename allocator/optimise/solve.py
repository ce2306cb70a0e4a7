"""Solve a Problem: the paid tier (min-cost flow), then the free pool on what the paid plan leaves."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from allocator.domain import Plan, PlanStatus, Problem, SolveParams
from allocator.optimise.duals import DualsError, PaidDuals, paid_duals
from allocator.optimise.free_pool import FreeResult, node_free_capacity, solve_free
from allocator.optimise.paid_flow import PaidResult, solve_paid
from allocator.optimise.paid_warm import WarmPrices

logger = logging.getLogger(__name__)


def _no_free(extras: dict[str, float]) -> FreeResult:
    empty = np.zeros(0, dtype=np.int64)
    return FreeResult(empty.astype(np.int32), empty.astype(np.int32), empty, 0.0, False, extras)


def _shadow_prices(problem: Problem, params: SolveParams, paid: PaidResult) -> PaidDuals | None:
    """Per node: value per extra thousand paid impressions, whether it would relieve under-delivery, and
    the price a warm re-solve starts from (PaidDuals).

    None when the paid tier failed or the duals cannot be computed (logged; the plan stays valid).
    """
    if not paid.ok:
        return None
    try:
        return paid_duals(problem, params, paid.demand, paid.node, paid.points, paid.under)
    except DualsError as exc:
        logger.error("paid shadow prices not computed: %s", exc)
        return None


def solve(
    problem: Problem,
    params: SolveParams,
    on_phase: Callable[[str], None] | None = None,
    warm: WarmPrices | None = None,
) -> Plan:
    """Plan `problem`: paid points first (exact min-cost flow), then the free pool (max-min fair).

    on_phase, when given, is called with "PAID_FLOW" and "FREE_POOL" as each stage starts (progress).
    warm: the nodes' shadow prices from an earlier solve of a similar day (a re-plan): the paid tier is
    then re-solved warm (paid_warm; the same optimum, found faster, or solved cold when it does not settle).
    Never raises on solver trouble: a failed paid tier gives an empty FAILED plan with a detail; the free
    pool running past params.time_limit_s gives a valid TIME_LIMIT plan. build_seconds is the time spent
    building the two solver graphs from the arrays, solve_seconds the rest (both time.perf_counter).
    """
    start = time.perf_counter()
    deadline = start + params.time_limit_s
    if on_phase is not None:
        on_phase("PAID_FLOW")
    paid = solve_paid(problem, params, warm)
    paid_done = time.perf_counter()
    duals = _shadow_prices(problem, params, paid)
    duals_done = time.perf_counter()
    if not paid.ok:
        free = _no_free({})
    else:
        if on_phase is not None:
            on_phase("FREE_POOL")
        node_free = node_free_capacity(problem, paid.node, paid.impressions)
        try:
            free = solve_free(problem, node_free, deadline, params.kappa)
        except RuntimeError as exc:  # a max-flow failure: keep the paid plan, give nothing free
            logger.error("free pool failed: %s", exc)
            free = _no_free({"free_failed": 1.0})
    end = time.perf_counter()

    under_total = int(paid.under.sum())
    if not paid.ok:
        status, detail = PlanStatus.FAILED, paid.detail
    elif free.timed_out:
        status, detail = PlanStatus.TIME_LIMIT, "free-pool fairness stopped by the time limit"
    elif under_total > 0:
        status, detail = PlanStatus.PARTIAL, f"{under_total} paid points cannot be delivered"
    else:
        status, detail = PlanStatus.OPTIMAL, ""
    if status == PlanStatus.TIME_LIMIT and under_total > 0:
        detail += f"; {under_total} paid points cannot be delivered"

    build = paid.build_seconds + float(free.extras.get("free_build_seconds", 0.0))
    extras = dict(free.extras)
    extras["paid_seconds"] = paid_done - start
    extras["paid_warm_rounds"] = float(paid.warm_rounds)
    extras["paid_restricted"] = float(paid.restricted)
    extras["duals_seconds"] = duals_done - paid_done
    extras["free_seconds"] = end - duals_done
    return Plan(
        status=status,
        status_detail=detail,
        paid_demand=paid.demand,
        paid_node=paid.node,
        paid_points=paid.points,
        paid_impressions=paid.impressions,
        free_merchant=free.merchant,
        free_node=free.node,
        free_impressions=free.impressions,
        demand_delivered=paid.delivered,
        demand_under=paid.under,
        free_level=free.level,
        value=paid.value,
        penalty=paid.penalty,
        objective=paid.objective,
        build_seconds=build,
        solve_seconds=end - start - build,
        extras=extras,
        node_shadow_value_per_mille=None if duals is None else duals.value_per_mille,
        node_relieves_under=None if duals is None else duals.relieves_under,
        node_warm_price=None if duals is None else duals.value_cost,
    )
