"""Size limits: batches past the API's limits, thousands of bad fields, and gRPC message size limits.

A request over the server's max_message_bytes, and a response that would be over it, both get
RESOURCE_EXHAUSTED; the server's default limit (64 MiB) is in force; a rejected call writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from allocator.service.status import MAX_VIOLATION_BYTES
from allocator.service.validation import Limits
from allocator.settings import Settings
from tests.security.conftest import BadServer, BadServerFactory
from trafficalloc.v1 import allocator_pb2 as pb

pytestmark = pytest.mark.usefixtures("bad_health_after")

DATE = "2026-12-01"
HOME, PAY = pb.CHANNEL_HOMEPAGE_CARD, pb.CHANNEL_PAYMENT_SUCCESS
STAR = pb.PROGRAM_STAR_PLAN
SMALL_LIMIT = 64 * 1024
TRAILER_SOFT_LIMIT = 8 * 1024  # gRPC's default max metadata size: bigger trailers may be dropped
# (binary trailers such as grpc-status-details-bin count base64-encoded)


def _entry(merchant: str, regions: list[str] | None = None) -> pb.DailyPromotionEligibility:
    return pb.DailyPromotionEligibility(
        merchant_id=merchant, weight=1, regions=regions or ["north"], valid_from_date=DATE, valid_to_date=DATE
    )


def _redemption(request_id: str, **changes: Any) -> pb.RecordRedemptionRequest:
    req = pb.RecordRedemptionRequest(
        request_id=request_id,
        merchant_id="m-lim",
        program=STAR,
        points=100,
        channels=[HOME],
        flight_start_date=DATE,
        flight_end_date=DATE,
        regions=["north"],
    )
    for name, value in changes.items():
        req.ClearField(name)
        if isinstance(value, list):
            getattr(req, name).extend(value)
        else:
            setattr(req, name, value)
    return req


LIMITS = Limits()
OVER = [
    (
        "PublishInventory",
        lambda: pb.PublishInventoryRequest(
            request_id="big",
            date=DATE,
            nodes=[
                pb.SupplyNode(hour=i % 24, channel=1 + i // 24 % 3, region=f"r{i // 72}")
                for i in range(LIMITS.max_nodes + 1)
            ],
        ),
        "nodes",
    ),
    (
        "SetEligibility",
        lambda: pb.SetEligibilityRequest(
            request_id="big", entries=[_entry(f"f-{i}") for i in range(LIMITS.max_batch + 1)]
        ),
        "entries",
    ),
    (
        "ClearEligibility",
        lambda: pb.ClearEligibilityRequest(
            request_id="big", merchant_ids=[f"f-{i}" for i in range(LIMITS.max_batch + 1)]
        ),
        "merchant_ids",
    ),
    (
        "RecordRedemption",
        lambda: _redemption("big", regions=[f"r{i}" for i in range(LIMITS.max_regions + 1)]),
        "regions",
    ),
    (
        "SetEligibility",
        lambda: pb.SetEligibilityRequest(
            request_id="big", entries=[_entry("f-1", [f"r{i}" for i in range(LIMITS.max_regions + 1)])]
        ),
        "entries[0].regions",
    ),
    (
        "CheckAvailability",
        lambda: pb.CheckAvailabilityRequest(
            program=STAR,
            channels=[HOME],
            regions=[f"r{i}" for i in range(LIMITS.max_regions + 1)],
            flight_start_date=DATE,
            flight_end_date=DATE,
        ),
        "regions",
    ),
    ("RecordRedemption", lambda: _redemption("big", flight_end_date="2027-12-02"), "flight_end_date"),
    ("Solve", lambda: pb.SolveRequest(start_date=DATE, end_date="2027-01-01"), "end_date"),
    ("ListRedemptions", lambda: pb.ListRedemptionsRequest(page_size=LIMITS.max_page_size + 1), "page_size"),
    ("RecordRedemption", lambda: _redemption("big", points=LIMITS.max_points + 1), "points"),
]


@pytest.mark.parametrize(("rpc", "build", "field"), OVER, ids=[f"{r}-{f}" for r, _, f in OVER])
def test_bad_input_batches_and_ranges_past_the_limits(
    rpc: str, build: Any, field: str, bad_server: BadServer
) -> None:
    """One past each limit of validation.Limits: INVALID_ARGUMENT naming the list or field, nothing stored."""
    before = bad_server.snapshot()
    out = bad_server.call(rpc, build())
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT, out.describe()
    assert field in out.fields, out.violations
    assert bad_server.snapshot() == before


@pytest.mark.parametrize("bad_nodes", [60, 120, 5_000, LIMITS.max_nodes])
def test_bad_input_thousands_of_bad_fields_fit_the_trailer(bad_nodes: int, bad_server: BadServer) -> None:
    """Every node bad in four fields: the rich status stays far below the 8 KiB a gRPC peer accepts (a
    bigger trailer is dropped at random, turning INVALID_ARGUMENT into RESOURCE_EXHAUSTED without details);
    the violations that fit are listed in order, the last one says how many more there are."""
    nodes = [
        pb.SupplyNode(hour=99, channel=77, region="", capacity_impressions=-1, price_points_per_mille=i)
        for i in range(bad_nodes)
    ]
    request = pb.PublishInventoryRequest(request_id="many", date="not-a-date", nodes=nodes)
    before = bad_server.snapshot()
    for _ in range(5):  # the soft limit drops oversized trailers with some probability: ask repeatedly
        out = bad_server.call("PublishInventory", request)
        assert out.code == grpc.StatusCode.INVALID_ARGUMENT, out.describe()
        assert out.trailer_bytes * 4 // 3 < TRAILER_SOFT_LIMIT * 3 // 4, (
            out.trailer_bytes
        )  # base64 on the wire
        assert out.status is not None and out.status.ByteSize() <= MAX_VIOLATION_BYTES + 1_024
        assert out.violations[:3] == [
            ("date", "must be a date in YYYY-MM-DD form, got 'not-a-date'"),
            ("nodes[0].hour", "must be within 0..23, got 99"),
            ("nodes[0].channel", out.violations[2][1]),
        ]
        assert "more bad field(s) not listed" in out.violations[-1][1]
        # the date, four fields per node, and every node after the first repeats (hour, channel, region)
        assert out.message == f"invalid inventory: {1 + 4 * bad_nodes + bad_nodes - 1} bad field(s)"
    assert bad_server.snapshot() == before


def test_bad_input_long_values_are_clipped_in_the_status(bad_server: BadServer) -> None:
    """A 10,000-character bad value never comes back whole in the message or a violation."""
    out = bad_server.call("GetActivePlan", pb.GetActivePlanRequest(date="9" * 10_000))
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT
    assert out.trailer_bytes < 2_048, out.trailer_bytes
    out = bad_server.call(
        "GetNodeAllocation",
        pb.GetNodeAllocationRequest(date=DATE, hour=1, channel=HOME, region="r" * 64, plan_id="p" * 128),
    )
    assert out.code == grpc.StatusCode.NOT_FOUND and out.trailer_bytes < 2_048


# ---- gRPC message size limits --------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_small_server(bad_servers: BadServerFactory) -> Iterator[BadServer]:
    """A second server on the same Redis whose messages may be at most 64 KiB each way."""
    yield bad_servers.start(max_message_bytes=SMALL_LIMIT)


def test_bad_input_message_limit_is_set_by_default() -> None:
    assert 0 < Settings().max_message_bytes <= 64 * 1024 * 1024


def test_bad_input_request_over_max_message_bytes_is_resource_exhausted(bad_small_server: BadServer) -> None:
    """A request one node past the limit never reaches the servicer; the same data in smaller parts does."""
    nodes = [
        pb.SupplyNode(hour=h, channel=c, region=f"region-{i:02d}-" + "x" * 40, capacity_impressions=1)
        for h in range(24)
        for c in (1, 2, 3)
        for i in range(16)
    ]
    request = pb.PublishInventoryRequest(request_id="huge", date=DATE, nodes=nodes)
    assert request.ByteSize() > SMALL_LIMIT
    before = bad_small_server.snapshot()
    out = bad_small_server.call("PublishInventory", request)
    assert out.code == grpc.StatusCode.RESOURCE_EXHAUSTED, out.describe()
    assert bad_small_server.snapshot() == before
    del request.nodes[len(nodes) // 2 :]
    assert request.ByteSize() < SMALL_LIMIT
    assert bad_small_server.call("PublishInventory", request).code == grpc.StatusCode.OK
    assert bad_small_server.health() == health_pb2.HealthCheckResponse.SERVING


def test_bad_input_response_over_max_message_bytes_is_resource_exhausted(bad_small_server: BadServer) -> None:
    """Small writes whose listing is bigger than the limit: that page is RESOURCE_EXHAUSTED, smaller
    pages of the same list still work, and the server stays up."""
    regions = [f"{i:02d}-" + "r" * 60 for i in range(LIMITS.max_regions)]
    for i in range(24):
        req = _redemption(f"big-{i}", merchant_id=f"m-{i:02d}-" + "m" * 100, regions=regions)
        assert req.ByteSize() < SMALL_LIMIT // 8
        assert bad_small_server.call("RecordRedemption", req).code == grpc.StatusCode.OK
    out = bad_small_server.call("ListRedemptions", pb.ListRedemptionsRequest(page_size=1_000))
    assert out.code == grpc.StatusCode.RESOURCE_EXHAUSTED, out.describe()
    small = bad_small_server.call("ListRedemptions", pb.ListRedemptionsRequest(page_size=4))
    assert small.code == grpc.StatusCode.OK and len(small.response.redemptions) == 4
    assert bad_small_server.health() == health_pb2.HealthCheckResponse.SERVING


def test_bad_input_request_over_the_default_limit_is_resource_exhausted(bad_server: BadServer) -> None:
    """The module's server runs with the default limit: a 64 MiB + 1 body is refused by gRPC."""
    limit = bad_server.settings.max_message_bytes
    assert limit == Settings().max_message_bytes
    request = pb.GetPlanRequest(plan_id="p" * limit)
    before = bad_server.snapshot()
    out = bad_server.call("GetPlan", request)
    assert out.code == grpc.StatusCode.RESOURCE_EXHAUSTED, out.describe()
    assert bad_server.snapshot() == before
