"""The validator catches deliberately corrupted plans."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from allocator.domain import SolveParams
from allocator.optimise import solve
from allocator.problem import build_problem
from allocator.validate import PlanInvalid, assert_plan_feasible, validation_errors

from .builders import D0, D1, elig, inputs, node, red


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
