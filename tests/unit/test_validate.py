"""The validator catches deliberately corrupted plans."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from allocator.domain import SolveParams
from allocator.optimise import solve
from allocator.problem import build_problem
from allocator.validate import PlanInvalid, assert_plan_feasible, validation_errors

from .builders import D0, D1, elig, inputs, node, red, rules


def _case():  # type: ignore[no-untyped-def]
    nodes = [node(capacity=100), node(capacity=100, region="south"), node(capacity=100, date=D1)]
    inp = inputs(nodes, [red(60)], [elig(1.0)], dates=(D0, D1))
    problem = build_problem(inp, SolveParams())
    plan = solve(problem, SolveParams())
    assert validation_errors(inp, problem, plan) == []
    return inp, problem, plan


def _fails(inp, problem, plan, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PlanInvalid) as err:
        assert_plan_feasible(inp, problem, plan)
    assert any(text in e for e in err.value.errors), err.value.errors


def test_over_capacity_is_caught() -> None:
    inp, problem, plan = _case()
    _fails(inp, problem, replace(plan, free_impressions=plan.free_impressions + 100), "above node capacity")


def test_ineligible_region_is_caught() -> None:
    inp, problem, plan = _case()
    _fails(inp, problem, replace(plan, paid_node=np.full_like(plan.paid_node, 1)), "paid arc not eligible")
    _fails(inp, problem, replace(plan, free_node=np.full_like(plan.free_node, 1)), "free arc not eligible")


def test_wrong_flight_date_is_caught() -> None:
    inp, problem, plan = _case()
    _fails(inp, problem, replace(plan, paid_node=np.full_like(plan.paid_node, 2)), "paid arc not eligible")


def test_points_and_impressions_are_checked() -> None:
    inp, problem, plan = _case()
    _fails(inp, problem, replace(plan, demand_under=plan.demand_under + 1), "delivered + under")
    _fails(inp, problem, replace(plan, paid_impressions=plan.paid_impressions - 1), "floor(points")
    _fails(inp, problem, replace(plan, paid_points=plan.paid_points.astype(np.float64)), "not an integer")
    _fails(inp, problem, replace(plan, free_impressions=-plan.free_impressions), "negative")


def test_points_past_the_paid_capacity_in_points_are_caught() -> None:
    """Found by review: at a price above 1000 an arc of one point delivers 0 impressions, so three such
    arcs on a node of K_s = 2 points broke no impression check."""
    inp = inputs([node(capacity=1, price=2000)], [red(1, rid="a"), red(1, rid="b"), red(1, rid="c")])
    problem = build_problem(inp, SolveParams())
    plan = solve(problem, SolveParams())
    assert validation_errors(inp, problem, plan) == [] and plan.demand_delivered.tolist() == [1, 1, 0]
    three = replace(
        plan,
        paid_demand=np.array([0, 1, 2], np.int32),
        paid_node=np.zeros(3, np.int32),
        paid_points=np.ones(3, np.int64),
        paid_impressions=np.zeros(3, np.int64),
        demand_delivered=np.ones(3, np.int64),
        demand_under=np.zeros(3, np.int64),
    )
    _fails(inp, problem, three, "paid points above the node's paid capacity in points")


def test_the_reserved_share_comes_from_the_records_not_the_problem() -> None:
    """A Problem built with a wrong reserved share cannot vouch for a plan that eats into the real one."""
    nodes = [node(capacity=100)]
    inp = inputs(nodes, [red(100)], rule=rules(share=0.3))
    problem = build_problem(inp, SolveParams())
    plan = solve(problem, SolveParams())
    assert validation_errors(inp, problem, plan) == [] and plan.demand_delivered.tolist() == [70]
    forged = replace(problem, node_free_reserved=np.zeros(1, np.int64))
    more = replace(
        plan,
        paid_points=np.array([80], np.int64),
        paid_impressions=np.array([80], np.int64),
        demand_delivered=np.array([80], np.int64),
        demand_under=np.array([20], np.int64),
        free_merchant=np.zeros(0, np.int32),
        free_node=np.zeros(0, np.int32),
        free_impressions=np.zeros(0, np.int64),
    )
    _fails(inp, forged, more, "paid impressions above the paid capacity")
