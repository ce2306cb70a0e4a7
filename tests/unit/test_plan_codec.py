"""A solved plan survives encode/decode, and the views answer from it exactly."""

from __future__ import annotations

import datetime as dt

import numpy as np

from allocator.domain import Channel, Eligibility, ProblemInputs, Program, Redemption, SolveParams, SupplyNode
from allocator.optimise import solve
from allocator.plan_codec import PlanView, build_stored_plan, decode_plan, encode_plan
from allocator.problem import build_problem
from allocator.rules import load_rules

D1, D2 = dt.date(2026, 12, 1), dt.date(2026, 12, 2)


def inputs() -> ProblemInputs:
    nodes = tuple(
        SupplyNode(date=d, hour=h, channel=c, region=r, capacity=2_000, price=40)
        for d in (D1, D2)
        for h in (9, 12)
        for c in (Channel.HOMEPAGE_CARD, Channel.PAYMENT_SUCCESS)
        for r in ("n", "s")
    )
    reds = (
        Redemption("rdm-a", "m-a", Program.STAR_PLAN, 101, (Channel.HOMEPAGE_CARD,), D1, D2, ("n",)),
        Redemption("rdm-b", "m-b", Program.LUOMA_PLAN, 50, (Channel.PAYMENT_SUCCESS,), D1, D1, ("s",)),
        Redemption("rdm-c", "m-a", Program.STAR_PLAN, 20, (Channel.PAYMENT_SUCCESS,), D2, D2, ("s",)),
    )
    eligs = (Eligibility("f-1", 2.0, ("n", "s"), D1, D2),)
    return ProblemInputs(dates=(D1, D2), nodes=nodes, redemptions=reds, eligibility=eligs, rules=load_rules())


def test_round_trip_and_merchant_view() -> None:
    inp = inputs()
    problem = build_problem(inp, SolveParams())
    plan = solve(problem, SolveParams())
    stored = build_stored_plan(inp, problem, plan)
    decoded = decode_plan(encode_plan(stored))
    assert set(decoded.arrays) == set(stored.arrays)
    for name, arr in stored.arrays.items():
        np.testing.assert_array_equal(decoded.arrays[name], arr)

    view = PlanView(decoded)
    day1, day2 = view.merchant_day("m-a", D1), view.merchant_day("m-a", D2)
    # rdm-a: 101 points over two days -> 50 then 51; rdm-c: 20 points on day 2.
    assert (day1.points_due, day2.points_due) == (50, 71)
    assert day1.points_delivered + day2.points_delivered == 121
    assert {c.redemption_id for c in day2.paid} == {"rdm-a", "rdm-c"}
    assert all(c.impressions == c.points * 1000 // 40 for c in day1.paid + day2.paid)
    assert view.merchant_day("f-1", D1).free and view.has_merchant("f-1") and not view.has_merchant("nobody")

    node = view.node(D1, 12, int(Channel.PAYMENT_SUCCESS), "s")
    assert node is not None
    entries = view.node_entries(node)
    assert [e.impressions for e in entries] == sorted((e.impressions for e in entries), reverse=True)
    assert sum(e.impressions for e in entries) <= 2_000
