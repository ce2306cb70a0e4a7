"""Warm re-solves of the paid tier (optimise/paid_warm.py): whatever the estimated prices, the result is
the cold solve's optimum (or the cold solve itself), and good prices settle it in few rounds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ortools.graph.python import min_cost_flow

from allocator.domain import ProblemInputs, SolveParams
from allocator.optimise import network_simplex, paid_flow, paid_warm, solve
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
    return WarmPrices(duals.value_cost.astype(np.float64), duals.relieves_under)


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
    with pytest.MonkeyPatch.context() as mp:  # small instances: let the simplex run rather than give up
        mp.setattr(paid_warm, "MAX_FREE_SHARE", 1.0)
        mp.setattr(paid_warm, "SIMPLEX_PIVOTS_PER_NODE", 10**6)
        mp.setattr(paid_warm, "BAND", band)
        warm = solve(problem, params, warm=prices)
    rounds = int(warm.extras["paid_warm_rounds"])
    how = {0: "solved cold", 1: "settled by the reduced solve", 2: "finished by the simplex"}[rounds]
    event(f"{kind}: {how}" if problem.arc_demand.size else "no paid arcs")
    assert_plan_feasible(inp, problem, warm)
    assert warm.objective == cold.objective
    assert int(warm.demand_under.sum()) == int(cold.demand_under.sum())


@pytest.mark.parametrize("contention", [0.9, 1.3])
def test_the_plans_own_prices_settle_it_and_a_moved_day_is_finished_by_the_simplex(contention: float) -> None:
    params = SolveParams()
    problem = generate(Spec(3000, 600, 20, contention, 1))
    prices = _own_prices(problem, params)
    cold = solve_paid(problem, params)
    warm = solve_paid(problem, params, prices)
    # (contended: prices of relieving nodes carry the penalty, and the simplex may settle the ties)
    assert 1 <= warm.warm_rounds <= (1 if contention < 1 else 2)
    assert warm.objective == cold.objective

    # the same day with capacities and points moved by up to 5 %: still exact, the simplex repairing it
    rng = np.random.default_rng(7)
    moved = dataclasses.replace(
        problem,
        node_capacity=(problem.node_capacity * rng.uniform(0.95, 1.05, 600)).astype(np.int64),
        demand_points=np.maximum(1, (problem.demand_points * rng.uniform(0.95, 1.05, 3000)).astype(np.int64)),
    )
    cold = solve_paid(moved, params)
    warm = solve_paid(moved, params, prices)
    assert warm.warm_rounds == 2
    assert warm.objective == cold.objective
    assert int(warm.delivered.sum()) == int(cold.delivered.sum())  # (which demand is short may tie)


@pytest.mark.parametrize("refusal", ["pivot budget", "time", "rounds", "optimality check", "basis"])
def test_a_simplex_finish_that_gives_up_falls_back_to_the_cold_solve(refusal: str) -> None:
    """Never a flow that is not optimal: when the simplex runs out of pivots, time or rounds, cannot build
    its basis, or its answer fails the check from the arrays, the solve is the cold one."""
    params = SolveParams()
    problem = generate(Spec(3000, 600, 20, 0.9, 1))
    prices = _own_prices(problem, params)
    rng = np.random.default_rng(7)
    moved = dataclasses.replace(
        problem,
        node_capacity=(problem.node_capacity * rng.uniform(0.95, 1.05, 600)).astype(np.int64),
        demand_points=np.maximum(1, (problem.demand_points * rng.uniform(0.95, 1.05, 3000)).astype(np.int64)),
    )
    assert solve_paid(moved, params, prices).warm_rounds == 2  # (the simplex finishes this one)
    with pytest.MonkeyPatch.context() as mp:
        if refusal == "pivot budget":
            mp.setattr(paid_warm, "SIMPLEX_PIVOTS_PER_NODE", 0)
        elif refusal == "time":  # (the clock is read between chunks: one pivot each)
            mp.setattr(paid_warm, "SIMPLEX_SECONDS_PER_PART", 0.0)
            mp.setattr(paid_warm, "SIMPLEX_CHUNK", 1)
        elif refusal == "rounds":
            mp.setattr(paid_warm, "SIMPLEX_ROUNDS", 0)
        elif refusal == "optimality check":
            mp.setattr(paid_warm, "optimal", lambda *args: False)
        else:
            mp.setattr(network_simplex, "_cancel_interior_cycles", lambda *args: -1)
        warm = solve_paid(moved, params, prices)
    assert warm.warm_rounds == 0
    assert warm.objective == solve_paid(moved, params).objective


@pytest.mark.parametrize(
    "value",
    [np.zeros(59), np.full(60, np.nan), np.full(60, np.inf), np.full(60, -np.inf)],
    ids=["another shape", "nan", "inf", "-inf"],
)
def test_prices_that_do_not_fit_fall_back_to_the_cold_solve(value: np.ndarray) -> None:
    params = SolveParams()
    problem = generate(Spec(300, 60, 10, 0.9, 2))
    warm = solve_paid(problem, params, WarmPrices(value, np.zeros(value.size, dtype=bool)))
    assert warm.warm_rounds == 0
    assert warm.objective == solve_paid(problem, params).objective


def _cold(parts: paid_warm.Parts) -> tuple[int, int]:
    """Points delivered and cost of the lexicographic optimum, straight from OR-Tools (the reference)."""
    n_dem, n_nodes = parts.due.size, parts.node_cap.size
    sink = n_dem + n_nodes
    smcf = min_cost_flow.SimpleMinCostFlow()
    smcf.add_arcs_with_capacity_and_unit_cost(
        np.concatenate([parts.demand, np.arange(n_dem, sink)]).astype(np.int32),
        np.concatenate([parts.node + n_dem, np.full(n_nodes, sink)]).astype(np.int32),
        np.concatenate([parts.upper, parts.node_cap]),
        np.concatenate([parts.cost, np.zeros(n_nodes, np.int64)]),
    )
    supplies = np.concatenate([parts.due, np.zeros(n_nodes, np.int64), [-int(parts.due.sum())]])
    smcf.set_nodes_supplies(np.arange(sink + 1, dtype=np.int32), supplies)
    assert smcf.solve_max_flow_with_min_cost() == smcf.OPTIMAL
    return int(smcf.maximum_flow()), int(smcf.optimal_cost())


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 3]))
def test_warm_flows_are_the_lexicographic_optimum_on_random_networks(seed: int, band: int) -> None:
    """Any bipartite network (zero capacities, zero points, overflow-like parallel parts) and any prices:
    a settled warm solve delivers the most points at the least cost, within every bound."""
    rng = np.random.default_rng(seed)
    n_dem, n_nodes = int(rng.integers(1, 7)), int(rng.integers(1, 6))
    n_parts = int(rng.integers(1, 16))
    parts = paid_warm.Parts(
        demand=np.sort(rng.integers(0, n_dem, n_parts)).astype(np.int32),
        node=rng.integers(0, n_nodes, n_parts).astype(np.int32),
        upper=rng.integers(0, 6, n_parts).astype(np.int64),
        cost=rng.integers(-10, 11, n_parts).astype(np.int64),
        node_cap=rng.integers(0, 9, n_nodes).astype(np.int64),
        due=rng.integers(0, 11, n_dem).astype(np.int64),
    )
    prices = WarmPrices(rng.uniform(0, 30, n_nodes), rng.random(n_nodes) < 0.3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paid_warm, "MAX_FREE_SHARE", 1.0)
        mp.setattr(paid_warm, "SIMPLEX_PIVOTS_PER_NODE", 10**6)
        mp.setattr(paid_warm, "BAND", band)
        settled = paid_warm.warm_flows(parts, prices)
    assert settled is not None
    flow, how = settled
    event({1: "settled by the reduced solve", 2: "finished by the simplex"}[how])
    assert bool(np.all((flow >= 0) & (flow <= parts.upper)))
    assert bool(np.all(np.bincount(parts.node, weights=flow, minlength=n_nodes) <= parts.node_cap))
    assert bool(np.all(np.bincount(parts.demand, weights=flow, minlength=n_dem) <= parts.due))
    assert (int(flow.sum()), int(np.dot(flow, parts.cost))) == _cold(parts)


@pytest.mark.parametrize("scale", [1, 2**58], ids=["one sort key", "lexsort (key would overflow)"])
def test_demand_prices_are_the_price_of_each_demands_marginal_part(scale: int) -> None:
    rng = np.random.default_rng(3)
    n_dem, n_nodes, n_parts = 6, 4, 30
    parts = paid_warm.Parts(
        demand=rng.integers(0, n_dem, n_parts).astype(np.int32),
        node=rng.integers(0, n_nodes, n_parts).astype(np.int32),
        upper=rng.integers(1, 5, n_parts).astype(np.int64),
        cost=rng.integers(-10, 11, n_parts).astype(np.int64),
        node_cap=np.full(n_nodes, 100, np.int64),
        due=np.array([0, 1, 5, 9, 200, 3], np.int64),
    )
    node_dist = -rng.integers(0, 4, n_nodes).astype(np.int64) * scale
    penalty = 7
    got = paid_warm.demand_prices(parts, node_dist, penalty)
    for d in range(n_dem):  # fill the demand's parts cheapest first: the part that reaches its points
        mine = np.flatnonzero(parts.demand == d)
        price = parts.cost[mine] - node_dist[parts.node[mine]]
        filled, want = 0, -penalty
        for i in np.argsort(price, kind="stable"):
            filled += int(parts.upper[mine][i])
            if parts.due[d] > 0 and filled >= parts.due[d]:
                want = -int(price[i])
                break
        assert got[d] == want, d


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_a_solve_of_some_parts_is_certified_or_finished_to_the_whole_networks_optimum(
    seed: int, keep: float
) -> None:
    """restricted_flows leaves random parts out of the solve: the certificate must find every one worth
    using (or the simplex bring it in), so the answer is the whole network's lexicographic optimum."""
    rng = np.random.default_rng(seed)
    n_dem, n_nodes = int(rng.integers(1, 12)), int(rng.integers(1, 8))
    n_parts = int(rng.integers(1, 40))
    parts = paid_warm.Parts(
        rng.integers(0, n_dem, n_parts).astype(np.int32),
        rng.integers(0, n_nodes, n_parts).astype(np.int32),
        rng.integers(0, 30, n_parts).astype(np.int64),
        rng.integers(-500, 500, n_parts).astype(np.int64),
        rng.integers(0, 60, n_nodes).astype(np.int64),
        rng.integers(1, 50, n_dem).astype(np.int64),
    )
    whole = paid_warm.reduced_solve(parts, np.ones(n_parts, dtype=bool), np.zeros(n_parts, np.int64))
    assert whole is not None
    free = rng.random(n_parts) < keep
    with pytest.MonkeyPatch.context() as mp:  # small networks: let the simplex run rather than give up
        mp.setattr(paid_warm, "SIMPLEX_PIVOTS_PER_NODE", 10**6)
        got = paid_warm.restricted_flows(parts, free)
    assert got is not None
    flow, how = got
    event({1: "certified", 2: "finished by the simplex"}[how])
    assert np.all((flow >= 0) & (flow <= parts.upper))
    on_node, to_demand = paid_warm.loads(parts, flow)
    assert np.all(on_node <= parts.node_cap) and np.all(to_demand <= parts.due)
    assert int(flow.sum()) == int(whole.sum())  # the most points delivered ...
    assert int(np.dot(flow, parts.cost)) == int(np.dot(whole, parts.cost))  # ... then the least cost


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem_inputs(), params_st)
def test_a_cold_solve_without_the_overflow_it_guesses_unused_is_the_whole_networks_optimum(
    inp: ProblemInputs, params: SolveParams
) -> None:
    problem = build_problem(inp, params)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paid_flow, "MAX_KEPT_OVERFLOW_SHARE", 1.0)
        mp.setattr(paid_warm, "SIMPLEX_PIVOTS_PER_NODE", 10**6)
        got = solve_paid(problem, params)
        mp.setattr(paid_flow, "RESTRICT_OVERFLOW", False)
        whole = solve_paid(problem, params)
    event({0: "whole network", 1: "certified", 2: "finished by the simplex"}[got.restricted])
    assert whole.restricted == 0
    assert got.objective == whole.objective
    assert int(got.under.sum()) == int(whole.under.sum())
