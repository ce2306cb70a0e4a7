"""Conversions between the API's messages and the domain types (the edge; no gRPC runtime here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from allocator.domain import Channel, Eligibility, ProblemInputs, Program, Redemption, Rules, SupplyNode
from trafficalloc.v1 import allocator_pb2 as pb


def parse_date(text: str) -> dt.date:
    """Strict YYYY-MM-DD (raises ValueError)."""
    if len(text) != 10:
        raise ValueError(f"{text!r} is not a date in YYYY-MM-DD form")
    return dt.date.fromisoformat(text)


def stored_redemption(request: pb.RecordRedemptionRequest, redemption_id: str) -> pb.Redemption:
    """The record a RecordRedemption request stores: its fields, ACTIVE, under the given id (the caller
    sets create_time)."""
    return pb.Redemption(
        redemption_id=redemption_id,
        merchant_id=request.merchant_id,
        program=request.program,
        points=request.points,
        channels=request.channels,
        flight_start_date=request.flight_start_date,
        flight_end_date=request.flight_end_date,
        regions=request.regions,
        quality=request.quality,
        status=pb.REDEMPTION_STATUS_ACTIVE,
        request_id=request.request_id,
    )


def redemption_from_pb(m: pb.Redemption) -> Redemption:
    return Redemption(
        redemption_id=m.redemption_id,
        merchant_id=m.merchant_id,
        program=Program(m.program),
        points=int(m.points),
        channels=tuple(Channel(c) for c in m.channels),
        flight_start=parse_date(m.flight_start_date),
        flight_end=parse_date(m.flight_end_date),
        regions=tuple(m.regions),
        quality=tuple((Channel(q.channel), float(q.score)) for q in m.quality),
        active=m.status == pb.REDEMPTION_STATUS_ACTIVE,
    )


def eligibility_from_pb(m: pb.DailyPromotionEligibility) -> Eligibility:
    return Eligibility(
        merchant_id=m.merchant_id,
        weight=float(m.weight),
        regions=tuple(m.regions),
        valid_from=parse_date(m.valid_from_date),
        valid_to=parse_date(m.valid_to_date),
        channels=tuple(Channel(c) for c in m.channels),
    )


def nodes_from_pb(date: dt.date, inventory: pb.GetInventoryResponse, rules: Rules) -> list[SupplyNode]:
    """The date's supply nodes with prices resolved (0 means the channel's configured default)."""
    return [
        SupplyNode(
            date=date,
            hour=n.hour,
            channel=Channel(n.channel),
            region=n.region,
            capacity=int(n.capacity_impressions),
            price=int(n.price_points_per_mille) or rules.default_price[Channel(n.channel)],
        )
        for n in inventory.nodes
    ]


def inputs_from_records(
    dates: tuple[dt.date, ...],
    inventories: Sequence[pb.GetInventoryResponse],
    redemptions: Iterable[pb.Redemption],
    eligibility: Iterable[pb.DailyPromotionEligibility],
    rules: Rules,
) -> ProblemInputs:
    """What one solve of `dates` reads: every date's nodes (`inventories` aligned with `dates`), the
    active redemptions whose flight overlaps the dates and the eligibility valid on one of them, in the
    order given (demand d is the d-th such redemption)."""
    first, last = dates[0], dates[-1]
    nodes: list[SupplyNode] = []
    for d, inv in zip(dates, inventories, strict=True):
        nodes += nodes_from_pb(d, inv, rules)
    reds = (redemption_from_pb(m) for m in redemptions)
    eligs = (eligibility_from_pb(m) for m in eligibility)
    return ProblemInputs(
        dates=dates,
        nodes=tuple(nodes),
        redemptions=tuple(r for r in reds if r.active and r.flight_start <= last and r.flight_end >= first),
        eligibility=tuple(e for e in eligs if e.valid_from <= last and e.valid_to >= first),
        rules=rules,
    )


def rules_to_pb(rules: Rules) -> pb.GetRulesResponse:
    return pb.GetRulesResponse(
        programs=[
            pb.ProgramRule(
                program=pb.Program.ValueType(p), channels=sorted(pb.Channel.ValueType(c) for c in cs)
            )
            for p, cs in sorted(rules.program_channels.items())
        ],
        channels=[
            pb.ChannelRule(
                channel=pb.Channel.ValueType(c),
                default_price_points_per_mille=rules.default_price[c],
                daily_promotion_share=rules.free_share.get(c, 0.0),
            )
            for c in Channel
        ],
        daily_promotion_quota_per_weight=rules.free_quota_per_weight,
    )
