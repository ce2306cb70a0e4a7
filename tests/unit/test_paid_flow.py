"""The paid tier on instances whose optimum is known by hand (price 1000: one point = one impression)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from allocator.domain import PlanStatus, Program, SolveParams
from allocator.optimise import solve
from allocator.optimise.paid_flow import arc_caps_and_costs
from allocator.problem import build_problem, node_paid_points
from allocator.validate import assert_plan_feasible
from bench.oracle import paid_lp_objective
from bench.solve import Spec, generate

from .builders import HOME, PAY, SEARCH, inputs, node, red


def hand_params(**overrides: float) -> SolveParams:
    """The parameters the hand computations in this module assume (kappa 2, spread penalty 1), whatever
    the service's defaults are."""
    return SolveParams(**{"kappa": 2.0, "spread_penalty": 1, **overrides})  # type: ignore[arg-type]


def _solve(inp, params=None):  # type: ignore[no-untyped-def]
    params = params or hand_params()
    problem = build_problem(inp, params)
    plan = solve(problem, params)
    assert_plan_feasible(inp, problem, plan)
    assert plan.objective == paid_lp_objective(problem, params)
    return problem, plan


def _points(plan) -> dict[tuple[int, int], int]:  # type: ignore[no-untyped-def]
    return {
        (int(d), int(s)): int(p)
        for d, s, p in zip(plan.paid_demand, plan.paid_node, plan.paid_points, strict=True)
    }


def test_two_demands_compete_for_one_node_and_the_better_quality_wins() -> None:
    inp = inputs([node(capacity=100)], [red(80, quality=((HOME, 2.0),), rid="a"), red(50, rid="b")])
    _, plan = _solve(inp)
    assert _points(plan) == {(0, 0): 80, (1, 0): 20}
    assert plan.demand_delivered.tolist() == [80, 20]
    assert plan.demand_under.tolist() == [0, 30]
    assert plan.status == PlanStatus.PARTIAL
    assert plan.penalty == 30 * 10_000_000
    assert plan.objective == -200 * 80 - 100 * 20 + 30 * 10_000_000
    assert plan.value == 2.0 * 80 + 1.0 * 20


def test_quality_steers_a_demand_to_the_better_channel() -> None:
    inp = inputs(
        [node(channel=HOME), node(channel=PAY)], [red(50, channels=(HOME, PAY), quality=((PAY, 1.5),))]
    )
    _, plan = _solve(inp)
    assert _points(plan) == {(0, 1): 50}
    assert plan.status == PlanStatus.OPTIMAL and plan.value == 75.0


def test_representativeness_caps_spread_delivery_but_are_soft() -> None:
    nodes = [node(hour=9), node(hour=10)]
    _, plan = _solve(inputs(nodes, [red(100)]), hand_params(kappa=1.0))
    assert _points(plan) == {(0, 0): 50, (0, 1): 50}  # each node's cap is ceil(1 * 100 * 100/200) = 50
    _, plan = _solve(inputs(nodes, [red(150)]), hand_params(kappa=0.5))
    # caps of 38 points per node; the other 74 points flow over the caps at +1 each, none undelivered
    assert plan.demand_under.tolist() == [0]
    assert plan.objective == -100 * 150 + 74


def test_program_rule_forbids_a_channel() -> None:
    inp = inputs([node(channel=SEARCH)], [red(10, channels=(SEARCH,), program=Program.LUOMA_PLAN)])
    problem, plan = _solve(inp)
    assert problem.arc_demand.size == 0
    assert plan.demand_under.tolist() == [10] and plan.paid_points.size == 0
    assert plan.status == PlanStatus.PARTIAL


def test_impressions_are_floored_and_paid_capacity_is_in_points() -> None:
    inp = inputs([node(capacity=1000, price=30)], [red(7), red(40, rid="b")])
    _, plan = _solve(inp)
    assert int(plan.paid_points.sum()) == 30  # floor(1000 * 30 / 1000) points fit the node
    assert plan.demand_under.sum() == 17
    np.testing.assert_array_equal(plan.paid_impressions, plan.paid_points * 1000 // 30)


def test_empty_problem_is_a_valid_optimal_plan() -> None:
    for inp in (inputs([]), inputs([node()]), inputs([], [red(5)])):
        _, plan = _solve(inp)
        assert plan.paid_points.size == plan.free_impressions.size == 0
    assert solve(build_problem(inputs([]), hand_params()), hand_params()).status == PlanStatus.OPTIMAL


def test_a_synthetic_bench_instance_matches_the_oracle_and_beats_the_baselines() -> None:
    from allocator.optimise.baselines import hwm, proportional
    from allocator.problem import node_paid_points
    from bench.solve import Spec, generate

    problem = generate(Spec(merchants=300, nodes=60, arcs_per_merchant=8, contention=1.1, seed=3))
    params = hand_params()
    plan = solve(problem, params)
    assert plan.objective == paid_lp_objective(problem, params)
    paid = node_paid_points(problem)
    for baseline in (hwm, proportional):
        points = baseline(problem.arc_demand, problem.arc_node, problem.demand_points, paid)
        per_node = np.bincount(problem.arc_node, weights=points, minlength=paid.size)
        per_demand = np.bincount(problem.arc_demand, weights=points, minlength=problem.demand_points.size)
        assert points.min() >= 0 and (per_node <= paid).all() and (per_demand <= problem.demand_points).all()
        assert per_demand.sum() <= plan.demand_delivered.sum()


def test_costs_that_would_overflow_are_a_failed_plan_not_a_wrong_one() -> None:
    """Points near the API's limit at a huge penalty cannot be costed in int64: say so, allocate nothing."""
    from allocator.domain import PlanStatus
    from allocator.optimise import solve
    from allocator.problem import build_problem

    from .builders import inputs, node, red

    inp = inputs([node(capacity=10**9)], [red(10**12, rid="a"), red(10**12, rid="b")])
    params = hand_params()
    plan = solve(build_problem(inp, params), params)
    assert plan.status == PlanStatus.FAILED and "numeric range" in plan.status_detail
    assert plan.paid_points.size == 0 and plan.demand_under.tolist() == [10**12, 10**12]


def test_penalty_dominates_even_for_dear_arcs() -> None:
    """Quality 1000 at price 1 makes a point worth 1e8 cost units: the penalty rises above it."""
    from allocator.domain import PlanStatus
    from allocator.optimise import solve
    from allocator.problem import build_problem

    from .builders import HOME, inputs, node, red

    nodes = [node(capacity=10, price=1000)]
    reds = [red(5, rid="cheap"), red(5, quality=((HOME, 1000.0),), rid="dear")]
    params = hand_params()
    plan = solve(build_problem(inputs(nodes, reds), params), params)
    assert plan.status == PlanStatus.OPTIMAL and plan.demand_delivered.tolist() == [5, 5]


def test_tightened_graph_keeps_the_oracle_optimum_for_every_spread_penalty() -> None:
    """The solver drops overflow arcs that cannot be used and bounds arcs by the points due (exact)."""
    from bench.solve import Spec, generate

    problem = generate(Spec(merchants=300, nodes=60, arcs_per_merchant=8, contention=1.1, seed=5))
    for spread, kappa in ((0, 2.0), (1, 0.5), (7, 1.0), (1, 2.0)):
        params = hand_params(kappa=kappa, spread_penalty=spread)
        plan = solve(problem, params)
        assert plan.objective == paid_lp_objective(problem, params)
        assert (plan.demand_delivered + plan.demand_under == problem.demand_points).all()


@pytest.mark.parametrize("scale", [1, 10**11], ids=["small", "sums past 2**53"])
def test_representativeness_caps_are_exact_integers_whatever_the_sizes(scale: int) -> None:
    """cap = ceil(kappa * points * paidcap_s / eligible_d), clipped to paidcap_s, against Python's integers,
    also where the eligible sums pass 2**53."""
    problem = generate(Spec(merchants=40, nodes=12, arcs_per_merchant=5, contention=0.9, seed=3))
    problem = dataclasses.replace(problem, node_capacity=problem.node_capacity * scale)
    params = SolveParams(kappa=1.0)
    cap, pc, _ = arc_caps_and_costs(problem, params)
    paid = node_paid_points(problem).tolist()
    eligible = [0] * problem.demand_points.size
    for d, s in zip(problem.arc_demand.tolist(), problem.arc_node.tolist(), strict=True):
        eligible[d] += paid[s]
    assert (int(pc.sum()) >= 2**53) == (scale > 1)
    for i, (d, s) in enumerate(zip(problem.arc_demand.tolist(), problem.arc_node.tolist(), strict=True)):
        points = int(problem.demand_points[d])
        want = min(-(-points * paid[s] // max(eligible[d], 1)), paid[s])  # ceil in integers, kappa 1
        assert int(cap[i]) == want, (i, int(cap[i]), want)
