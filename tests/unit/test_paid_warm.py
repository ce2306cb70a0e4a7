"""Warm re-solves of the paid tier (optimise/paid_warm.py): whatever the estimated prices, the result is
the cold solve's optimum (or the cold solve itself), and good prices settle it in few rounds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from allocator.domain import ProblemInputs, SolveParams
from allocator.optimise import paid_warm, solve
from allocator.optimise.duals import paid_duals
from allocator.optimise.paid_flow import solve_paid
from allocator.optimise.paid_warm import WarmPrices
from allocator.problem import build_problem
from allocator.validate import assert_plan_feasible
from bench.solve import Spec, generate

from .test_properties import params_st, problem_inputs


def _own_prices(problem, params: SolveParams) -> WarmPrices:  # type: ignore[no-untyped-def]
    cold = solve_paid(problem, params)
    duals = paid_duals(problem, params, cold.demand, cold.node, cold.points, cold.under)
    return WarmPrices.from_per_mille(
        duals.value_per_mille, duals.relieves_under, problem.node_price, params.value_scale
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    problem_inputs(),
    params_st,
    st.integers(0, 2**32 - 1),
    st.sampled_from(["own", "random", "zero"]),
    st.sampled_from([0, 50]),
)
def test_a_warm_solve_is_the_cold_optimum_whatever_the_prices(
    inp: ProblemInputs, params: SolveParams, seed: int, kind: str, band: int
) -> None:
    problem = build_problem(inp, params)
    n_nodes = problem.node_capacity.size
    rng = np.random.default_rng(seed)
    if kind == "own":
        prices = _own_prices(problem, params)
    elif kind == "random":  # prices that fix parts wrongly: only the certificate keeps the answer exact
        prices = WarmPrices(rng.uniform(0, 3000, n_nodes), rng.random(n_nodes) < 0.2)
    else:
        prices = WarmPrices(np.zeros(n_nodes), np.zeros(n_nodes, dtype=bool))
    cold = solve(problem, params)
    with pytest.MonkeyPatch.context() as mp:  # small instances: let the rounds run rather than give up
        mp.setattr(paid_warm, "MAX_FREE_SHARE", 1.0)
        mp.setattr(paid_warm, "MAX_ROUNDS", 1000)
        mp.setattr(paid_warm, "BAND", band)
        warm = solve(problem, params, warm=prices)
    rounds = int(warm.extras["paid_warm_rounds"])
    event(f"{kind}: {'settled' if rounds else 'solved cold'}" if problem.arc_demand.size else "no paid arcs")
    assert_plan_feasible(inp, problem, warm)
    assert warm.objective == cold.objective
    assert int(warm.demand_under.sum()) == int(cold.demand_under.sum())


def test_the_plans_own_prices_settle_it_in_one_round_and_a_moved_day_in_a_few() -> None:
    params = SolveParams()
    problem = generate(Spec(3000, 600, 20, 0.9, 1))
    prices = _own_prices(problem, params)
    cold = solve_paid(problem, params)
    warm = solve_paid(problem, params, prices)
    assert warm.warm_rounds == 1
    assert warm.objective == cold.objective

    # the same day with capacities and points moved by up to 5 %: still exact, in a few rounds
    rng = np.random.default_rng(7)
    moved = dataclasses.replace(
        problem,
        node_capacity=(problem.node_capacity * rng.uniform(0.95, 1.05, 600)).astype(np.int64),
        demand_points=np.maximum(1, (problem.demand_points * rng.uniform(0.95, 1.05, 3000)).astype(np.int64)),
    )
    cold = solve_paid(moved, params)
    warm = solve_paid(moved, params, prices)
    assert 1 <= warm.warm_rounds <= 4
    assert warm.objective == cold.objective
    np.testing.assert_array_equal(warm.delivered, cold.delivered)


def test_prices_of_another_shape_fall_back_to_the_cold_solve() -> None:
    params = SolveParams()
    problem = generate(Spec(300, 60, 10, 0.9, 2))
    prices = WarmPrices(np.zeros(59), np.zeros(59, dtype=bool))
    warm = solve_paid(problem, params, prices)
    assert warm.warm_rounds == 0
    assert warm.objective == solve_paid(problem, params).objective
