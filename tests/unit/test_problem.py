"""build_problem and points_due on hand-checkable records."""

from __future__ import annotations

import datetime as dt

import numpy as np

from allocator.domain import Program, SolveParams
from allocator.problem import build_problem, node_paid_points, points_due

from .builders import D0, D1, HOME, PAY, SEARCH, elig, inputs, node, red, rules


def test_points_due_cumulative_flooring_adds_up_over_the_flight() -> None:
    r = red(10, start=D0, end=D0 + dt.timedelta(days=2))
    days = [points_due(r, [D0 + dt.timedelta(days=k)]) for k in range(3)]
    assert days == [3, 3, 4]
    assert points_due(r, [D0, D1, D0 + dt.timedelta(days=2)]) == 10
    assert points_due(r, [D0, D1]) == 6
    assert points_due(r, [D0 - dt.timedelta(days=1), D0 + dt.timedelta(days=3)]) == 0
    assert points_due(r, [D0, D0]) == 3  # a date counts once


def test_nodes_reserve_the_floor_of_the_free_share() -> None:
    p = build_problem(
        inputs([node(capacity=105, price=40), node(capacity=9)], rule=rules(share=0.1)), SolveParams()
    )
    assert p.node_free_reserved.tolist() == [10, 0]
    assert node_paid_points(p).tolist() == [(95 * 40) // 1000, 9]


def test_paid_arcs_follow_flight_channel_program_region_and_capacity() -> None:
    nodes = [
        node(channel=HOME),  # 0 eligible
        node(channel=SEARCH),  # 1 channel not allowed for LUOMA
        node(channel=PAY, region="south"),  # 2 wrong region
        node(channel=PAY, date=D1),  # 3 outside the flight (D0 only)
        node(channel=PAY, capacity=0),  # 4 no paid capacity
        node(channel=PAY),  # 5 eligible
    ]
    r = red(50, channels=(HOME, PAY, SEARCH), program=Program.LUOMA_PLAN, quality=((PAY, 1.5),))
    p = build_problem(inputs(nodes, [r, red(5, channels=(SEARCH,))], dates=(D0, D1)), SolveParams())
    assert p.arc_demand.tolist() == [0, 0, 1]
    assert p.arc_node.tolist() == [0, 5, 1]
    assert p.arc_quality.tolist() == [1.0, 1.5, 1.0]
    assert p.demand_points.tolist() == [50, 5]
    assert p.demand_program.tolist() == [2, 1]


def test_free_arcs_and_caps() -> None:
    nodes = [
        node(channel=HOME),
        node(channel=PAY, date=D1),
        node(channel=SEARCH, region="south"),
        node(capacity=0),
    ]
    eligs = [
        elig(weight=1.5, start=D0, end=D1, channels=()),  # nodes 0 and 1 (shared channels), two days
        elig(weight=1.0, regions=("south",), channels=(HOME,)),  # channel filter excludes node 2
        elig(weight=0.25, regions=("south",), channels=(SEARCH,), end=D1),
    ]
    p = build_problem(
        inputs(nodes, eligs=eligs, dates=(D0, D1), rule=rules(share=0.1, quota=10)), SolveParams()
    )
    # one free entry per (merchant, valid planned day): e0 D0, e0 D1, e1 D0, e2 D0, e2 D1
    assert p.source_of_free().tolist() == [0, 0, 1, 2, 2]
    assert p.free_day is not None and p.free_day.tolist() == [d.toordinal() for d in (D0, D1, D0, D0, D1)]
    assert p.free_arc_merchant.tolist() == [0, 1, 3]
    assert p.free_arc_node.tolist() == [0, 1, 2]
    assert p.free_cap.tolist() == [15, 15, 10, 3, 3]  # the daily quota; round half up: 2.5 -> 3
    np.testing.assert_allclose(p.free_weight, [1.5, 1.5, 1.0, 0.25, 0.25])


def test_empty_inputs_build_empty_arrays() -> None:
    p = build_problem(inputs([]), SolveParams())
    assert p.node_capacity.size == p.arc_demand.size == p.free_weight.size == 0
    assert p.arc_demand.dtype == np.int32 and p.free_cap.dtype == np.int64


def test_a_flight_over_planned_days_is_one_demand_per_day() -> None:
    """Multi-day flights are paced by day: each day's demand owes that day's share, on that day's nodes."""
    nodes = [node(date=D0), node(date=D1), node(date=D1, channel=PAY)]
    r = red(101, channels=(HOME, PAY), start=D0, end=D1)
    p = build_problem(inputs(nodes, [r, red(7)], dates=(D0, D1)), SolveParams())
    assert p.demand_points.tolist() == [50, 51, 7]
    assert p.source_of_demands().tolist() == [0, 0, 1]
    assert p.demand_day is not None
    assert p.demand_day.tolist() == [D0.toordinal(), D1.toordinal(), D0.toordinal()]
    assert p.arc_demand.tolist() == [0, 1, 1, 2]
    assert p.arc_node.tolist() == [0, 1, 2, 0]
