"""Small builders of records for hand-checkable optimiser tests (price 1000: one point = one impression)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

from allocator.domain import (
    Channel,
    Eligibility,
    Problem,
    ProblemInputs,
    Program,
    Redemption,
    Rules,
    SupplyNode,
)

D0 = dt.date(2026, 1, 5)
D1 = D0 + dt.timedelta(days=1)
HOME, PAY, SEARCH = Channel.HOMEPAGE_CARD, Channel.PAYMENT_SUCCESS, Channel.SEARCH_RECOMMENDATION
ALL = (HOME, PAY, SEARCH)


def rules(share: float = 0.0, quota: int = 1000, luoma: tuple[Channel, ...] = (HOME, PAY)) -> Rules:
    return Rules(
        program_channels={Program.STAR_PLAN: frozenset(ALL), Program.LUOMA_PLAN: frozenset(luoma)},
        default_price={c: 1000 for c in ALL},
        free_share={c: share for c in ALL},
        free_quota_per_weight=quota,
    )


def node(
    capacity: int = 100,
    channel: Channel = HOME,
    region: str = "north",
    date: dt.date = D0,
    price: int = 1000,
    hour: int = 10,
) -> SupplyNode:
    return SupplyNode(date=date, hour=hour, channel=channel, region=region, capacity=capacity, price=price)


def red(
    points: int,
    channels: Sequence[Channel] = (HOME,),
    regions: Sequence[str] = ("north",),
    start: dt.date = D0,
    end: dt.date = D0,
    program: Program = Program.STAR_PLAN,
    quality: Sequence[tuple[Channel, float]] = (),
    rid: str = "r",
) -> Redemption:
    return Redemption(
        rid, f"m-{rid}", program, points, tuple(channels), start, end, tuple(regions), tuple(quality)
    )


def elig(
    weight: float = 1.0,
    regions: Sequence[str] = ("north",),
    start: dt.date = D0,
    end: dt.date = D0,
    channels: Sequence[Channel] = ALL,
    mid: str = "f",
) -> Eligibility:
    return Eligibility(mid, weight, tuple(regions), start, end, tuple(channels))


def inputs(
    nodes: Sequence[SupplyNode],
    reds: Sequence[Redemption] = (),
    eligs: Sequence[Eligibility] = (),
    dates: Sequence[dt.date] = (D0,),
    rule: Rules | None = None,
) -> ProblemInputs:
    return ProblemInputs(tuple(dates), tuple(nodes), tuple(reds), tuple(eligs), rule or rules())


def free_pool_problem(
    weight: Sequence[float],
    cap: Sequence[int],
    arc_merchant: Sequence[int],
    arc_node: Sequence[int],
    node_capacity: Sequence[int],
) -> Problem:
    """A bare free pool as solve_free sees it: no paid demand, merchants' weights and caps, free arcs."""
    e = np.zeros(0, np.int64)
    n_s = len(node_capacity)
    return Problem(
        node_capacity=np.array(node_capacity, np.int64),
        node_price=np.full(n_s, 10, np.int64),
        node_channel=np.ones(n_s, np.int8),
        node_free_reserved=np.zeros(n_s, np.int64),
        demand_points=e,
        demand_program=e.astype(np.int8),
        arc_demand=e.astype(np.int32),
        arc_node=e.astype(np.int32),
        arc_quality=e.astype(np.float64),
        free_weight=np.array(weight, np.float64),
        free_cap=np.array(cap, np.int64),
        free_arc_merchant=np.array(arc_merchant, np.int32),
        free_arc_node=np.array(arc_node, np.int32),
    )
