"""Shadow prices of paid capacity (allocator/optimise/duals.py): hand-checked instances and two oracles.

Builders use price 1000 unless told: one point = one impression, and a point of quality q is worth 100 q
cost units (value_scale 100).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from ortools.graph.python import min_cost_flow

from allocator.domain import Channel, PlanStatus, Problem, ProblemInputs, SolveParams
from allocator.optimise import solve
from allocator.optimise.duals import DualsError, PaidDuals, paid_duals
from allocator.optimise.paid_flow import arc_caps_and_costs, effective_params, solve_paid
from allocator.problem import build_problem, node_paid_points

from .builders import HOME, PAY, SEARCH, inputs, node, red, rules


def hand_params(**overrides: float) -> SolveParams:
    """The parameters the hand computations in this module assume (kappa 2, spread penalty 1), whatever
    the service's defaults are."""
    return SolveParams(**{"kappa": 2.0, "spread_penalty": 1, **overrides})  # type: ignore[arg-type]


PENALTY = hand_params().under_delivery_penalty  # the effective penalty of every instance here


def _duals(problem: Problem, params: SolveParams) -> PaidDuals:
    paid = solve_paid(problem, params)
    assert paid.ok
    return paid_duals(problem, params, paid.demand, paid.node, paid.points, paid.under)


# ---- hand-checked ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kappa", "shadow"), [(1000.0, 50), (2.0, 49)])
def test_binding_node_is_worth_the_marginal_demands_gain(kappa: float, shadow: int) -> None:
    # Node 0 (HOME, 100 points) is worth 200 a point to a (quality 2) and 100 to b; node 1 (PAY, price
    # 2000: 2000 points) is worth 50 a point to both. Node 0 takes a's 80 and 20 of b; b's other 30 go to
    # node 1. One more point on node 0 moves one point of b, the marginal demand, from node 1 (50) to node 0.
    # With kappa 1000 the caps never bind: 100 - 50 = 50. With kappa 2 b's cap on node 0 is
    # ceil(2 * 50 * 100 / 2100) = 5 points, so its 20 points there are 5 capped + 15 overflow and the extra
    # point is overflow: 99 - 50 = 49 (checks the rebuilt capped / overflow split).
    reds = [
        red(80, channels=(HOME, PAY), quality=((HOME, 2.0),), rid="a"),
        red(50, channels=(HOME, PAY), rid="b"),
    ]
    inp = inputs([node(capacity=100, channel=HOME), node(capacity=1000, channel=PAY, price=2000)], reds)
    params = hand_params(kappa=kappa)
    problem = build_problem(inp, params)
    plan = solve(problem, params)
    assert plan.status == PlanStatus.OPTIMAL and plan.demand_delivered.tolist() == [80, 50]
    duals = _duals(problem, params)
    assert duals.shadow_cost.tolist() == [shadow, 0]
    assert duals.relieves_under.tolist() == [False, False]
    # quality-weighted impressions per extra thousand impressions: shadow * price / value_scale
    assert plan.node_shadow_value_per_mille is not None and plan.node_relieves_under is not None
    assert plan.node_shadow_value_per_mille.tolist() == [shadow * 1000 / 100, 0.0]
    assert plan.node_relieves_under.tolist() == [False, False]


def test_node_with_spare_capacity_is_worth_nothing() -> None:
    inp = inputs([node(capacity=100), node(capacity=10, hour=11)], [red(30, rid="a"), red(25, rid="b")])
    params = hand_params()
    problem = build_problem(inp, params)
    plan = solve(problem, params)
    assert plan.status == PlanStatus.OPTIMAL
    duals = _duals(problem, params)
    # node 1 may be full (a cheap place to put points) but node 0 has room at the same value
    assert duals.shadow_cost.tolist() == [0, 0]
    assert plan.node_shadow_value_per_mille is not None and plan.node_relieves_under is not None
    assert plan.node_shadow_value_per_mille.tolist() == [0.0, 0.0]
    assert plan.node_relieves_under.tolist() == [False, False]


def test_under_delivery_makes_the_binding_node_relieve_it() -> None:
    # One HOME node of 100 points, a (quality 2) 80 points and b 50: b gets 20 and misses 30 points. One
    # more point delivers one more point of b: the penalty P saved plus b's value there, 100.
    # The PAY node is reachable by nobody: nothing.
    reds = [red(80, quality=((HOME, 2.0),), rid="a"), red(50, rid="b")]
    inp = inputs([node(capacity=100, channel=HOME), node(capacity=50, channel=PAY)], reds)
    params = hand_params()
    problem = build_problem(inp, params)
    plan = solve(problem, params)
    assert plan.status == PlanStatus.PARTIAL and plan.demand_under.tolist() == [0, 30]
    duals = _duals(problem, params)
    assert duals.shadow_cost.tolist() == [PENALTY + 100, 0]
    assert duals.relieves_under.tolist() == [True, False]
    assert plan.node_relieves_under is not None and plan.node_relieves_under.tolist() == [True, False]
    # the value part only: (lambda - P) * price / value_scale = 100 * 1000 / 100
    assert plan.node_shadow_value_per_mille is not None
    assert plan.node_shadow_value_per_mille.tolist() == [1000.0, 0.0]


def test_the_penalty_is_the_effective_one() -> None:
    # Price 1 point per mille: a point is 1000 impressions, worth 100000 q. The paid tier raises the penalty
    # to 1000 x (300000 + 1); b (quality 1) misses 30 points, so lambda = that penalty + 100000.
    reds = [red(80, quality=((HOME, 3.0),), rid="a"), red(50, rid="b")]
    inp = inputs([node(capacity=100_000, price=1)], reds)
    params = hand_params()
    problem = build_problem(inp, params)
    penalty = effective_params(problem, params).under_delivery_penalty
    assert penalty == 1000 * 300_001 > params.under_delivery_penalty
    duals = _duals(problem, params)
    assert duals.shadow_cost.tolist() == [penalty + 100_000]
    assert duals.relieves_under.tolist() == [True]
    assert duals.value_per_mille.tolist() == [100_000 * 1 / 100]


def test_no_paid_arcs_gives_zeros_and_a_failed_solve_gives_none() -> None:
    params = hand_params()
    problem = build_problem(inputs([node()], [red(5, channels=(SEARCH,), regions=("south",))]), params)
    plan = solve(problem, params)
    assert plan.node_shadow_value_per_mille is not None and plan.node_relieves_under is not None
    assert plan.node_shadow_value_per_mille.tolist() == [0.0] and plan.node_relieves_under.tolist() == [False]
    huge = build_problem(inputs([node()], [red(10**13)]), params)  # overflows the solver's costs: FAILED
    plan = solve(huge, params)
    assert plan.status == PlanStatus.FAILED
    assert plan.node_shadow_value_per_mille is None and plan.node_relieves_under is None


def test_a_plan_that_is_not_optimal_or_does_not_fit_is_refused() -> None:
    # Both nodes full (HOME 100 points, PAY 50); a (quality 2 on HOME) 80 points, b 70. The optimum puts
    # a's 80 on HOME; the plan below gives HOME to b instead: the residual cycle a -> HOME -> b -> PAY -> a
    # gains 100.
    reds = [
        red(80, channels=(HOME, PAY), quality=((HOME, 2.0),), rid="a"),
        red(70, channels=(HOME, PAY), rid="b"),
    ]
    inp = inputs([node(capacity=100, channel=HOME), node(capacity=50, channel=PAY)], reds)
    params = hand_params(kappa=1000.0)
    problem = build_problem(inp, params)
    i32, i64 = np.int32, np.int64
    no_under = np.zeros(2, i64)
    dem, nod, pts = np.array([0, 0, 1], i32), np.array([0, 1, 0], i32), np.array([30, 50, 70], i64)
    with pytest.raises(DualsError, match="negative cycle"):
        paid_duals(problem, params, dem, nod, pts, no_under)
    optimal = paid_duals(problem, params, np.array([0, 1, 1], i32), np.array([0, 0, 1], i32),
                         np.array([80, 20, 50], i64), no_under)  # fmt: skip
    assert optimal.shadow_cost.tolist() == [0, 0]  # all delivered, and b is worth 100 on either node
    assert optimal.relieves_under.tolist() == [False, False]
    with pytest.raises(DualsError, match="no paid arc"):
        paid_duals(problem, params, np.array([0], i32), np.array([5], i32), np.array([1], i64), no_under)
    with pytest.raises(DualsError, match="more points"):
        paid_duals(problem, params, np.array([0], i32), np.array([0], i32), np.array([101], i64), no_under)


# ---- oracles on random instances ---------------------------------------------------------------

_CHANNELS = [HOME, PAY, SEARCH]


def _random_inputs(
    rng: np.random.Generator, cap_range: tuple[int, int], due_max: int, prices: list[int], max_reds: int = 7
) -> ProblemInputs:
    n_nodes = int(rng.integers(1, 6))
    nodes = [
        node(
            capacity=int(rng.integers(*cap_range)),
            channel=_CHANNELS[int(rng.integers(3))],
            region=("north", "south")[int(rng.integers(2))],
            price=int(rng.choice(prices)),
            hour=int(rng.integers(24)),
        )
        for _ in range(n_nodes)
    ]
    reds = []
    for i in range(int(rng.integers(1, max_reds + 1))):
        chans = tuple(c for c in _CHANNELS if rng.random() < 0.6) or (HOME,)
        regions = tuple(r for r in ("north", "south") if rng.random() < 0.7) or ("north",)
        quality = tuple((c, float(rng.choice([0.5, 1.0, 1.7, 3.0]))) for c in chans)
        reds.append(red(int(rng.integers(1, due_max + 1)), chans, regions, quality=quality, rid=f"r{i}"))
    share = float(rng.choice([0.0, 0.1]))
    return inputs(nodes, reds, rule=rules(share=share, luoma=tuple(Channel)))


def _fixed_caps_cost(problem: Problem, params: SolveParams, grow: int | None = None) -> int:
    """Optimal cost of the paid network with the representativeness caps as solved; node `grow` gets one
    more point."""
    cap, _, cost = arc_caps_and_costs(problem, params)
    penalty = effective_params(problem, params).under_delivery_penalty
    n_dem, n_nodes = problem.demand_points.size, problem.node_capacity.size
    sink = n_dem + n_nodes
    paidcap = node_paid_points(problem).copy()
    if grow is not None:
        paidcap[grow] += 1
    ad, an = problem.arc_demand.astype(np.int32), problem.arc_node.astype(np.int32) + n_dem
    smcf = min_cost_flow.SimpleMinCostFlow()
    smcf.add_arcs_with_capacity_and_unit_cost(
        np.concatenate([ad, ad, np.arange(n_dem, sink), np.arange(n_dem)]).astype(np.int32),
        np.concatenate([an, an, np.full(n_nodes + n_dem, sink)]).astype(np.int32),
        # overflow parts unbounded: their bound K_s - cap only mirrors the node's capacity, which grows
        np.concatenate([cap, np.full_like(cap, 10**12), paidcap, problem.demand_points]).astype(np.int64),
        np.concatenate(
            [cost, cost + params.spread_penalty, np.zeros(n_nodes), np.full(n_dem, penalty)]
        ).astype(np.int64),
    )
    points = problem.demand_points.astype(np.int64)
    supplies = np.concatenate([points, np.zeros(n_nodes, np.int64), [-int(points.sum())]]).astype(np.int64)
    smcf.set_nodes_supplies(np.arange(sink + 1, dtype=np.int32), supplies)
    assert smcf.solve() == smcf.OPTIMAL
    return int(smcf.optimal_cost())


def _check_conversion(problem: Problem, params: SolveParams, duals: PaidDuals) -> None:
    lam = duals.shadow_cost
    penalty = effective_params(problem, params).under_delivery_penalty
    np.testing.assert_array_equal(duals.relieves_under, lam > penalty // 2)  # small instances: short paths
    value = np.where(duals.relieves_under, np.maximum(lam - penalty, 0), lam)
    np.testing.assert_array_equal(duals.value_per_mille, value * problem.node_price / params.value_scale)


def _scrambled(problem: Problem, rng: np.random.Generator) -> Problem:
    """The same problem with its paid arcs shuffled and, sometimes, some of them repeated."""
    e = problem.arc_demand.size
    idx = rng.permutation(e)
    if e and rng.random() < 0.5:
        idx = np.concatenate([idx, rng.choice(e, size=int(rng.integers(1, e + 1)))])
        rng.shuffle(idx)
    return replace(
        problem,
        arc_demand=problem.arc_demand[idx],
        arc_node=problem.arc_node[idx],
        arc_quality=problem.arc_quality[idx] * rng.choice([1.0, 0.5], size=idx.size),
    )


def test_shadow_prices_equal_the_fixed_caps_finite_difference() -> None:
    """Exact LP duals: lambda_s = cost(K) - cost(K + 1 on s), with every arc capacity held as solved (any
    price, reserved share, kappa and spread penalty; arcs in build order, shuffled, or repeated)."""
    rng = np.random.default_rng(20260105)
    checked = relieving = valued = 0
    for trial in range(250):
        inp = _random_inputs(rng, (0, 60), 60, [1000, 500, 2000, 333])
        params = hand_params(
            kappa=float(rng.choice([0.5, 1.0, 2.0])), spread_penalty=int(rng.choice([0, 1, 7]))
        )
        problem = build_problem(inp, params)
        if trial % 3 == 2:
            problem = _scrambled(problem, rng)
        paid = solve_paid(problem, params)
        base = _fixed_caps_cost(problem, params)
        assert base == paid.objective
        duals = paid_duals(problem, params, paid.demand, paid.node, paid.points, paid.under)
        for s in range(problem.node_capacity.size):
            assert duals.shadow_cost[s] == base - _fixed_caps_cost(problem, params, grow=s), (trial, s)
            checked += 1
        _check_conversion(problem, params, duals)
        relieving += int(duals.relieves_under.sum())
        valued += int(((duals.shadow_cost > 0) & ~duals.relieves_under).sum())
    assert checked > 500 and relieving > 20 and valued > 20  # both regimes are exercised


def test_shadow_prices_equal_the_re_solved_finite_difference() -> None:
    """lambda_s = solve_paid's cost drop when node s's capacity grows by one impression = one point (price
    1000). Re-solving also recomputes the representativeness caps, so the instances keep them still: kappa
    tiny (every cap 1 point) or huge (every cap = K_s), and every demand below every node's K_s, so that no
    arc's capacity can bind before or after; then the re-solve is exactly the fixed-caps perturbation. A few
    more points can only gain less per point (the optimal cost is convex in K_s)."""
    rng = np.random.default_rng(7)
    checked = relieving = valued = 0
    for trial in range(150):
        inp = _random_inputs(rng, (8, 20), 7, [1000], max_reds=10)
        params = hand_params(kappa=float(rng.choice([1e-9, 1e6])), spread_penalty=int(rng.choice([0, 1, 7])))
        problem = build_problem(inp, params)
        paid = solve_paid(problem, params)
        duals = paid_duals(problem, params, paid.demand, paid.node, paid.points, paid.under)
        for s in range(problem.node_capacity.size):
            drops = []
            for k in (1, 2, 3):
                grown = problem.node_capacity.copy()
                grown[s] += k
                assert (
                    node_paid_points(replace(problem, node_capacity=grown))[s]
                    == node_paid_points(problem)[s] + k
                )
                drops.append(
                    int(paid.objective - solve_paid(replace(problem, node_capacity=grown), params).objective)
                )
            assert duals.shadow_cost[s] == drops[0], (trial, s)
            assert drops[1] <= 2 * drops[0] and drops[2] <= 3 * drops[0]
            checked += 1
        _check_conversion(problem, params, duals)
        relieving += int(duals.relieves_under.sum())
        valued += int(((duals.shadow_cost > 0) & ~duals.relieves_under).sum())
    assert checked > 300 and relieving > 10 and valued > 10


def test_a_node_filled_by_one_under_delivered_demand_relieves_it() -> None:
    """Regression: the demand's arc into the node is as large as the node, so growing the node must grow
    the arc too (its overflow bound mirrors the node's capacity); else the price came out 0."""
    nodes = [node(capacity=45, hour=h) for h in range(3)]
    params = hand_params()
    problem = build_problem(inputs(nodes, [red(200)]), params)
    paid = solve_paid(problem, params)
    assert paid.under.tolist() == [200 - 3 * 45]
    duals = paid_duals(problem, params, paid.demand, paid.node, paid.points, paid.under)
    assert duals.relieves_under.tolist() == [True, True, True]
    penalty = effective_params(problem, params).under_delivery_penalty
    _, _, cost = arc_caps_and_costs(problem, params)
    # one more point: delivered through the overflow part (cost c + spread) instead of the penalty
    assert duals.shadow_cost.tolist() == [penalty + int(-cost[0]) - params.spread_penalty] * 3
