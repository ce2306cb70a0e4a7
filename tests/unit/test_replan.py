"""The intraday re-plan's problem (pure): remaining capacity, remaining due, line bases."""

from __future__ import annotations

import numpy as np

from allocator.domain import ProblemInputs, SolveParams
from allocator.optimise import solve
from allocator.serving.replan import Delivered, line_bases, replan_problem
from allocator.validate import assert_plan_feasible
from tests.unit.builders import D0, HOME, elig, node, red, rules


def day() -> ProblemInputs:
    nodes = tuple(node(capacity=1000, hour=h) for h in range(8, 12))
    reds = (red(2000, rid="a"), red(600, rid="b"), red(300, rid="c"))
    return ProblemInputs((D0,), nodes, reds, (elig(mid="f"),), rules(share=0.1))


def test_replan_keeps_later_hours_less_what_was_delivered() -> None:
    delivered = Delivered(
        node_lines={(int(HOME), 10, "north"): {"_n": 250, "p:a": 200, "f:f": 50}},
        day_budget={"p:a": 900_500, "p:c": 300_000, "f:f": 120},  # a: 900.5 points, c: all of it
    )
    rp = replan_problem(day(), D0, 10, delivered, SolveParams())
    assert [n.hour for n in rp.inputs.nodes] == [10, 11]
    assert [n.capacity for n in rp.inputs.nodes] == [750, 1000]  # the current hour less what it carried
    assert rp.node_limit.tolist() == [1000, 1000]
    due = {r.redemption_id: r.points for r in rp.inputs.redemptions}
    assert due == {"a": 2000 - 901, "b": 600, "c": 0}  # rounded up; c was delivered in full: due 0
    assert sorted(rp.demand_budget.tolist()) == [300, 600, 2000]  # the serving cap is still the full due
    assert rp.problem.free_cap.tolist() == [1000 - 120]
    plan = solve(rp.problem, SolveParams())
    assert_plan_feasible(rp.inputs, rp.problem, plan)
    # 1,699 points are left but the paid share of what is left is (750 - 75) + (1000 - 100) = 1,575
    assert int(plan.demand_delivered.sum()) == 1575
    paid_base, free_base = line_bases(
        rp, delivered, plan.paid_demand, plan.paid_node, plan.free_merchant, plan.free_node
    )
    src = rp.problem.source_of_demands()
    # c stays in the plan (its merchant is answered "nothing more today"), with no arc: no line to serve
    c_demand = next(i for i, r in enumerate(src.tolist()) if rp.inputs.redemptions[r].redemption_id == "c")
    assert c_demand not in plan.paid_demand.tolist() and plan.demand_under[c_demand] == 0
    for d, s, base in zip(plan.paid_demand, plan.paid_node, paid_base, strict=True):
        rid = rp.inputs.redemptions[src[d]].redemption_id
        assert base == (200 if (rid, rp.inputs.nodes[s].hour) == ("a", 10) else 0)
    assert set(free_base.tolist()) <= {0, 50}


def test_replan_with_nothing_delivered_is_the_plan_of_the_remaining_hours() -> None:
    rp = replan_problem(day(), D0, 8, Delivered({}, {}), SolveParams())
    assert [n.capacity for n in rp.inputs.nodes] == [1000] * 4
    assert np.array_equal(rp.problem.demand_points, np.array([2000, 600, 300]))
