"""Bad input: INVALID_ARGUMENT naming every bad field, NOT_FOUND for unknowns, and nothing stored."""

from __future__ import annotations

import math

import grpc
import pytest
import redis
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from allocator_client import AllocatorClient, AllocatorError
from tests.integration.conftest import RunningServer
from tests.integration.helpers import DATE, LUOMA, SEARCH, eligibility, inventory, redemption
from trafficalloc.v1 import allocator_pb2 as pb
from trafficalloc.v1 import allocator_pb2_grpc as pb_grpc


def snapshot(r: redis.Redis, prefix: str) -> dict[bytes, bytes | None]:
    return {k: r.dump(k) for k in sorted(r.scan_iter(f"{prefix}:*"))}


def fields(err: AllocatorError) -> set[str]:
    return {f for f, _ in err.field_violations}


def rejected(call, request) -> AllocatorError:  # type: ignore[no-untyped-def]
    with pytest.raises(AllocatorError) as info:
        call(request)
    return info.value


def test_bad_redemption_names_every_field_and_stores_nothing(
    client: AllocatorClient, server: RunningServer, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client, server.settings.key_prefix)
    bad = pb.RecordRedemptionRequest(
        request_id="bad-1",
        merchant_id="",
        program=LUOMA,
        points=0,
        channels=[SEARCH, 42],
        flight_start_date="2026-12-05",
        flight_end_date="2026-12-01",
        regions=[""],
        quality=[pb.ChannelQuality(channel=1, score=math.nan)],
    )
    err = rejected(client.record_redemption, bad)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(err) == {
        "merchant_id",
        "points",
        "channels[0]",
        "channels[1]",
        "flight_end_date",
        "regions[0]",
        "quality[0].score",
    }
    assert "PROGRAM_LUOMA_PLAN" in dict(err.field_violations)["channels[0]"]
    assert snapshot(redis_client, server.settings.key_prefix) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"points": -5}, "points"),
        ({"program": 0}, "program"),
        ({"program": 7}, "program"),
        ({"flight_start_date": "2026-13-01"}, "flight_start_date"),
        ({"flight_end_date": "yesterday"}, "flight_end_date"),
        ({"channels": []}, "channels"),
        ({"regions": []}, "regions"),
        ({"merchant_id": "has space"}, "merchant_id"),
        ({"merchant_id": "x" * 500}, "merchant_id"),
    ],
)
def test_each_bad_redemption_field(client: AllocatorClient, change: dict[str, object], field: str) -> None:
    req = redemption("bad-x", "m-1")
    for name, value in change.items():
        if isinstance(value, list):
            req.ClearField(name)  # type: ignore[arg-type]
            getattr(req, name).extend(value)
        else:
            setattr(req, name, value)
    err = rejected(client.record_redemption, req)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and field in fields(err)


def test_empty_request_id_is_rejected(server: RunningServer) -> None:
    """Through the raw stub: the client library fills empty request ids itself."""
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.AllocatorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.RecordRedemption(redemption("", "m-1"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(info.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["request_id"]


def test_bad_inventory_and_oversized_batches(
    client: AllocatorClient, server: RunningServer, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client, server.settings.key_prefix)
    inv = inventory()
    inv.nodes[0].hour = 24
    inv.nodes[1].capacity_impressions = -1
    inv.nodes[2].channel = 0
    inv.nodes.append(
        pb.SupplyNode(hour=inv.nodes[3].hour, channel=inv.nodes[3].channel, region=inv.nodes[3].region)
    )
    err = rejected(client.publish_inventory, inv)
    assert {
        "nodes[0].hour",
        "nodes[1].capacity_impressions",
        "nodes[2].channel",
        f"nodes[{len(inv.nodes) - 1}]",
    } <= fields(err)

    big = eligibility("e-big", *[f"f-{i}" for i in range(10_001)])
    err = rejected(client.set_eligibility, big)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and fields(err) == {"entries"}

    dup = eligibility("e-dup", "f-1", "f-1", weight=math.inf)
    err = rejected(client.set_eligibility, dup)
    assert {"entries[1].merchant_id", "entries[0].weight", "entries[1].weight"} <= fields(err)

    err = rejected(client.solve, pb.SolveRequest(start_date=DATE, end_date="2026-11-01"))
    assert fields(err) == {"end_date"}
    err = rejected(
        client.solve, pb.SolveRequest(start_date=DATE, end_date="2027-06-01", time_limit_seconds=-1)
    )
    assert fields(err) == {"end_date", "time_limit_seconds"}
    err = rejected(client.list_redemptions, pb.ListRedemptionsRequest(page_size=-1, page_token="garbage!"))
    assert fields(err) == {"page_size", "page_token"}
    assert snapshot(redis_client, server.settings.key_prefix) == before


def test_unknowns_are_not_found(client: AllocatorClient) -> None:
    for call, req in [
        (client.get_plan, pb.GetPlanRequest(plan_id="nope")),
        (client.activate_plan, pb.ActivatePlanRequest(request_id="a-1", plan_id="nope")),
        (client.get_redemption, pb.GetRedemptionRequest(redemption_id="rdm-nope")),
        (client.cancel_redemption, pb.CancelRedemptionRequest(request_id="c-1", redemption_id="rdm-nope")),
        (client.get_active_plan, pb.GetActivePlanRequest(date=DATE)),
        (client.get_inventory, pb.GetInventoryRequest(date=DATE)),
    ]:
        assert rejected(call, req).code == grpc.StatusCode.NOT_FOUND, req
    client.publish_inventory(inventory())
    client.record_redemption(redemption("r-1", "m-1"))
    client.solve(pb.SolveRequest(start_date=DATE))
    err = rejected(
        client.get_merchant_allocation, pb.GetMerchantAllocationRequest(merchant_id="ghost", date=DATE)
    )
    assert err.code == grpc.StatusCode.NOT_FOUND
    err = rejected(
        client.get_node_allocation, pb.GetNodeAllocationRequest(date=DATE, hour=3, channel=1, region="mars")
    )
    assert err.code == grpc.StatusCode.NOT_FOUND


def test_solve_without_inventory_is_a_failed_precondition(client: AllocatorClient) -> None:
    err = rejected(client.solve, pb.SolveRequest(start_date="2027-01-01"))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and "2027-01-01" in err.message
