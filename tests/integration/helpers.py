"""Small request builders shared by the integration tests."""

from __future__ import annotations

from trafficalloc.v1 import allocator_pb2 as pb

DATE = "2026-12-01"
HOME, PAY, SEARCH = pb.CHANNEL_HOMEPAGE_CARD, pb.CHANNEL_PAYMENT_SUCCESS, pb.CHANNEL_SEARCH_RECOMMENDATION
STAR, LUOMA = pb.PROGRAM_STAR_PLAN, pb.PROGRAM_LUOMA_PLAN


def nodes(
    regions: tuple[str, ...] = ("north", "south"), capacity: int = 10_000, price: int = 50
) -> list[pb.SupplyNode]:
    return [
        pb.SupplyNode(
            hour=h, channel=c, region=r, capacity_impressions=capacity, price_points_per_mille=price
        )
        for h in range(24)
        for c in (HOME, PAY, SEARCH)
        for r in regions
    ]


def inventory(date: str = DATE, request_id: str = "inv-1", **kw: object) -> pb.PublishInventoryRequest:
    return pb.PublishInventoryRequest(request_id=request_id, date=date, nodes=nodes(**kw))  # type: ignore[arg-type]


def redemption(
    request_id: str,
    merchant_id: str,
    points: int = 1_000,
    *,
    program: int = STAR,
    channels: tuple[int, ...] = (HOME, PAY),
    start: str = DATE,
    end: str = DATE,
    regions: tuple[str, ...] = ("north",),
) -> pb.RecordRedemptionRequest:
    return pb.RecordRedemptionRequest(
        request_id=request_id,
        merchant_id=merchant_id,
        program=program,
        points=points,
        channels=channels,
        flight_start_date=start,
        flight_end_date=end,
        regions=regions,
    )


def eligibility(request_id: str, *merchants: str, weight: float = 1.0) -> pb.SetEligibilityRequest:
    return pb.SetEligibilityRequest(
        request_id=request_id,
        entries=[
            pb.DailyPromotionEligibility(
                merchant_id=m,
                weight=weight,
                regions=["north", "south"],
                valid_from_date=DATE,
                valid_to_date=DATE,
            )
            for m in merchants
        ],
    )
