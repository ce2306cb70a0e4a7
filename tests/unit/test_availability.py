"""Availability is exact: the quoted points can be redeemed with no under-delivery; one more point cannot."""

from __future__ import annotations

import dataclasses
import functools
import random

import numpy as np

from allocator.domain import Channel, Plan, Problem, ProblemInputs, Program, Redemption, SolveParams
from allocator.optimise import solve
from allocator.optimise.availability import (
    ROOM_LIMIT,
    hypothetical_nodes,
    most_points_for_flight,
    residual_room,
)
from allocator.problem import build_problem

from .builders import D0, D1, HOME, PAY, SEARCH, inputs, node, red, rules

PARAMS = SolveParams()


def plan_of(inp: ProblemInputs) -> tuple[Problem, Plan]:
    problem = build_problem(inp, PARAMS)
    return problem, solve(problem, PARAMS)


def quote(
    inp: ProblemInputs, program: Program, channels: set[Channel], regions: set[str]
) -> tuple[list[int], int]:
    problem, plan = plan_of(inp)
    chosen = hypothetical_nodes(inp, problem, program, channels, regions)
    rooms = residual_room(problem, plan.paid_demand, plan.paid_node, plan.paid_points, chosen)
    return rooms, most_points_for_flight(rooms)


def under_with(inp: ProblemInputs, extra: Redemption) -> tuple[int, int]:
    """(under-delivery of the extra redemption, under-delivery of everyone else) once it is added."""
    grown = dataclasses.replace(inp, redemptions=(*inp.redemptions, extra))
    problem, plan = plan_of(grown)
    mine = problem.source_of_demands() == len(inp.redemptions)
    return int(plan.demand_under[mine].sum()), int(plan.demand_under[~mine].sum())


def test_room_counts_rerouting_but_never_takes_from_committed() -> None:
    # Node a (HOME) 100, node b (PAY) 100, price 1000: one point per impression. A committed redemption
    # of 100 points may use either node; the plan may sit on HOME. A HOME-only newcomer still has 100.
    nodes = [node(capacity=100, channel=HOME), node(capacity=100, channel=PAY)]
    inp = inputs(nodes, [red(100, channels=(HOME, PAY), rid="old")])
    rooms, most = quote(inp, Program.STAR_PLAN, {HOME}, {"north"})
    assert rooms == [100] and most == 100
    # A second committed one pinned to PAY: now only one of the two nodes is free for the newcomer.
    inp = inputs(nodes, [red(100, channels=(HOME, PAY), rid="old"), red(60, channels=(PAY,), rid="pay")])
    rooms, most = quote(inp, Program.STAR_PLAN, {HOME}, {"north"})
    assert most == 40
    # The program rule applies: LUOMA may not buy SEARCH, so a SEARCH-only question has no room.
    inp = inputs([node(capacity=100, channel=SEARCH)])
    assert quote(inp, Program.LUOMA_PLAN, {SEARCH}, {"north"}) == ([0], 0)


def test_flight_over_days_is_bounded_by_the_tightest_day() -> None:
    nodes = [node(capacity=50, date=D0), node(capacity=31, date=D1)]
    inp = inputs(nodes, dates=(D0, D1))
    rooms, most = quote(inp, Program.STAR_PLAN, {HOME}, {"north"})
    assert rooms == [50, 31]
    assert most == 62  # 63 would owe 31 then 32: the second day has 31
    # the other way round, 63 fits: 31 on the tight first day, 32 on the second
    assert most_points_for_flight([31, 50]) == 63


def test_quotes_are_exact_on_random_instances() -> None:
    rng = random.Random(11)
    regions = ["north", "south"]
    checked = 0
    for _ in range(60):
        dates = (D0,) if rng.random() < 0.5 else (D0, D1)
        nodes = [
            node(
                capacity=rng.randint(0, 60),
                channel=rng.choice([HOME, PAY, SEARCH]),
                region=rng.choice(regions),
                date=rng.choice(dates),
                price=1000,
                hour=h,
            )
            for h in range(rng.randint(1, 6))
        ]
        reds = [
            red(
                rng.randint(1, 80),
                channels=tuple(rng.sample([HOME, PAY, SEARCH], rng.randint(1, 3))),
                regions=tuple(rng.sample(regions, rng.randint(1, 2))),
                start=dates[0],
                end=rng.choice(dates),
                quality=((HOME, rng.choice([0.5, 1.0, 2.0])),),
                rid=f"r{i}",
            )
            for i in range(rng.randint(0, 5))
        ]
        inp = inputs(nodes, reds, dates=dates, rule=rules())
        channels = set(rng.sample([HOME, PAY, SEARCH], rng.randint(1, 3)))
        where = set(rng.sample(regions, rng.randint(1, 2)))
        _, most = quote(inp, Program.STAR_PLAN, channels, where)
        _, base_under = plan_of(inp)
        base = int(base_under.demand_under.sum())

        chans, first, last = tuple(channels), dates[0], dates[-1]
        newcomer = functools.partial(
            red, channels=chans, regions=tuple(where), start=first, end=last, rid="new"
        )

        if most > 0:
            mine, others = under_with(inp, newcomer(most))
            assert (mine, others) == (0, base), (most, mine, others, base)
        mine, others = under_with(inp, newcomer(most + 1))
        assert mine + others > base, (most, mine, others, base)
        checked += 1
    assert checked == 60


def test_most_points_for_flight_is_exact() -> None:
    for rooms in ([5], [5, 5], [5, 4], [4, 5], [7, 3, 9], [0, 10], [10, 10, 9]):
        best = most_points_for_flight(rooms)
        n = len(rooms)

        def fits(x: int, rooms: list[int] = rooms, n: int = n) -> bool:
            return all(x * (k + 1) // n - x * k // n <= r for k, r in enumerate(rooms))

        assert fits(best) and not any(fits(x) for x in range(best + 1, best + 3 * n + 2))


def test_rooms_past_int64_are_quoted_up_to_the_redemption_limit() -> None:
    """Found by review: a day's paid capacity can pass 2^63 (10,000 nodes of 10^15 points), where the
    residual network's "infinite" source capacity wrapped negative and every quote was 0. Rooms are exact
    below ROOM_LIMIT (the most points a redemption may carry) and ROOM_LIMIT above it."""
    regions = tuple(f"r{g}" for g in range(417))
    nodes = [node(10**12, price=10**6, hour=h, region=g) for g in regions for h in range(24)][:10_000]
    problem, plan = plan_of(inputs(nodes, [red(10**6, regions=regions)]))
    whole, one = np.arange(10_000, dtype=np.int32), np.array([5], np.int32)
    rooms = residual_room(problem, plan.paid_demand, plan.paid_node, plan.paid_points, [whole, one])
    assert rooms == [ROOM_LIMIT, ROOM_LIMIT]
    # below the limit the quote is exact: K_s = 10^9 points, all of it (the plan's points there can move)
    small = dataclasses.replace(problem, node_capacity=problem.node_capacity // 10**6)
    assert residual_room(small, plan.paid_demand, plan.paid_node, plan.paid_points, [one]) == [10**9]


def test_a_flight_is_quoted_up_to_the_redemption_limit() -> None:
    assert most_points_for_flight([ROOM_LIMIT] * 3) == ROOM_LIMIT
    assert most_points_for_flight([10**13, 10**12 // 2]) == ROOM_LIMIT
    assert most_points_for_flight([10**13, 10**11]) == 2 * 10**11  # 2*10^11 + 1 owes 10^11 + 1 on day 2
