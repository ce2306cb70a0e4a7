"""ExplainAllocation: reasons with figures, and binding nodes that really bind."""

from __future__ import annotations

import grpc
import pytest

from allocator_client import AllocatorClient, AllocatorError
from tests.integration.helpers import DATE, HOME, inventory, redemption
from trafficalloc.v1 import allocator_pb2 as pb


def explain(client: AllocatorClient, merchant: str) -> pb.ExplainAllocationResponse:
    return client.explain_allocation(pb.ExplainAllocationRequest(merchant_id=merchant, date=DATE))


def test_reasons_and_bindings(client: AllocatorClient) -> None:
    client.publish_inventory(inventory(capacity=1_000))  # HOME north: 24 nodes x 45 paid points = 1,080
    client.record_redemption(redemption("r-big", "m-big", 2_000, channels=(HOME,)))
    client.record_redemption(redemption("r-small", "m-small", 100, channels=(HOME,), regions=("south",)))
    client.record_redemption(redemption("r-lost", "m-lost", 50, channels=(HOME,), regions=("mars",)))
    client.solve(pb.SolveRequest(start_date=DATE))

    big = explain(client, "m-big")
    (why,) = big.redemptions
    assert (why.points_due, why.points_delivered, why.points_under_delivered) == (2_000, 1_080, 920)
    assert why.eligible_nodes == 24 and why.eligible_paid_points == 1_080 and why.saturated_nodes == 24
    assert why.reasons[0].kind == pb.REASON_KIND_SUPPLY_SATURATED
    assert "920 of 2000 points" in why.reasons[0].text
    assert len(big.binding_nodes) == 20  # the 24 full nodes, capped at 20 in the answer
    for b in big.binding_nodes:
        assert b.paid_capacity_points == 45 and b.merchant_points == 45
        node = client.get_node_allocation(
            pb.GetNodeAllocationRequest(date=DATE, hour=b.hour, channel=b.channel, region=b.region)
        )
        assert sum(e.points for e in node.entries if not e.free) == b.paid_capacity_points  # really full

    small = explain(client, "m-small")
    assert [r.kind for r in small.redemptions[0].reasons][:1] == [pb.REASON_KIND_DELIVERED_IN_FULL]
    assert not small.binding_nodes  # south HOME has room: nothing binds

    lost = explain(client, "m-lost")
    assert lost.redemptions[0].reasons[0].kind == pb.REASON_KIND_NO_ELIGIBLE_SUPPLY
    assert lost.redemptions[0].points_under_delivered == 50


def test_unknown_merchant_is_not_found(client: AllocatorClient) -> None:
    client.publish_inventory(inventory())
    client.record_redemption(redemption("r-1", "m-1", 10))
    client.solve(pb.SolveRequest(start_date=DATE))
    with pytest.raises(AllocatorError) as err:
        explain(client, "ghost")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
