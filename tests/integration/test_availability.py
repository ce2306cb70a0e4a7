"""CheckAvailability through the client: quotes that hold when redeemed, and bad questions refused."""

from __future__ import annotations

import grpc
import pytest

from allocator_client import AllocatorClient, AllocatorError
from tests.integration.helpers import DATE, HOME, LUOMA, PAY, SEARCH, STAR, inventory, redemption
from trafficalloc.v1 import allocator_pb2 as pb


def ask(client: AllocatorClient, **kw: object) -> pb.CheckAvailabilityResponse:
    fields: dict[str, object] = {
        "program": STAR,
        "channels": [HOME],
        "regions": ["north"],
        "flight_start_date": DATE,
        "flight_end_date": DATE,
    }
    fields.update(kw)
    return client.check_availability(pb.CheckAvailabilityRequest(**fields))  # type: ignore[arg-type]


def test_the_quote_can_be_redeemed_in_full_and_then_the_room_is_gone(client: AllocatorClient) -> None:
    client.publish_inventory(inventory(capacity=1_000))  # HOME north: 24 nodes x 45 paid points
    client.record_redemption(redemption("r-1", "m-1", 300, channels=(HOME, PAY)))
    quote = ask(client)
    assert quote.points_available == 24 * 45 and [d.points for d in quote.days] == [1_080]
    # the committed redemption could use PAY instead, so it does not count against HOME's room
    client.record_redemption(redemption("r-2", "m-2", quote.points_available, channels=(HOME,)))
    plan = client.solve(pb.SolveRequest(start_date=DATE)).plan
    assert plan.status == pb.PLAN_STATUS_OPTIMAL
    assert all(p.points_under_delivered == 0 for p in plan.programs)
    assert ask(client).points_available == 0
    # PAY still has room: 24 x 42 paid points, less the 300 now pushed there
    assert ask(client, channels=[PAY]).points_available == 24 * 42 - 300


def test_bad_questions_are_refused(client: AllocatorClient) -> None:
    with pytest.raises(AllocatorError) as err:
        ask(client, program=LUOMA, channels=[SEARCH], regions=[], flight_end_date="2026-11-01")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in err.value.field_violations} == {"channels[0]", "regions", "flight_end_date"}
    with pytest.raises(AllocatorError) as err:
        ask(client, flight_start_date="2030-01-01", flight_end_date="2030-01-01")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
