"""SolveStream's progress events and GetPlanReport's figures, through the client library."""

from __future__ import annotations

import grpc
import pytest

from allocator_client import AllocatorClient, AllocatorError
from tests.integration.helpers import DATE, eligibility, inventory, redemption
from trafficalloc.v1 import allocator_pb2 as pb


def test_solve_stream_reports_phases_in_order_then_the_plan(client: AllocatorClient) -> None:
    client.publish_inventory(inventory())
    client.record_redemption(redemption("r-1", "m-1", 2_000))
    client.set_eligibility(eligibility("e-1", "f-1"))
    events = list(client.solve_stream(pb.SolveStreamRequest(start_date=DATE)))
    phases = [e.phase for e in events]
    assert phases == [
        pb.SOLVE_PHASE_READING_INPUTS,
        pb.SOLVE_PHASE_BUILDING,
        pb.SOLVE_PHASE_PAID_FLOW,
        pb.SOLVE_PHASE_FREE_POOL,
        pb.SOLVE_PHASE_STORING,
        pb.SOLVE_PHASE_DONE,
    ]
    elapsed = [e.elapsed_seconds for e in events]
    assert elapsed == sorted(elapsed)
    assert events[2].arcs > 0 and events[2].supply_nodes == 144 and events[2].demands == 1
    done = events[-1]
    assert done.plan.status == pb.PLAN_STATUS_OPTIMAL and done.plan.active and not done.plan.cache_hit
    again = list(client.solve_stream(pb.SolveStreamRequest(start_date=DATE)))
    assert [e.phase for e in again] == [pb.SOLVE_PHASE_READING_INPUTS, pb.SOLVE_PHASE_DONE]
    assert again[-1].plan.cache_hit and again[-1].plan.plan_id == done.plan.plan_id


def test_solve_stream_bad_input_is_invalid_argument(client: AllocatorClient) -> None:
    with pytest.raises(AllocatorError) as err:
        list(client.solve_stream(pb.SolveStreamRequest(start_date="2026-02-30")))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in err.value.field_violations] == ["start_date"]
    with pytest.raises(AllocatorError) as err:
        list(client.solve_stream(pb.SolveStreamRequest(start_date="2030-01-01")))
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_plan_report_adds_up_to_the_summary(client: AllocatorClient) -> None:
    client.publish_inventory(inventory())
    client.record_redemption(redemption("r-1", "m-1", 2_000))
    client.record_redemption(redemption("r-2", "m-2", 500, regions=("south",)))
    client.set_eligibility(eligibility("e-1", "f-1", "f-2"))
    plan = client.solve(pb.SolveRequest(start_date=DATE)).plan
    report = client.get_plan_report(pb.GetPlanReportRequest(date=DATE))
    assert report.plan.plan_id == plan.plan_id and len(report.nodes) == plan.supply_nodes
    for fill in plan.channels:
        nodes = [n for n in report.nodes if n.channel == fill.channel]
        assert sum(n.paid_impressions for n in nodes) == fill.paid_impressions
        assert sum(n.free_impressions for n in nodes) == fill.free_impressions
        assert sum(n.capacity_impressions for n in nodes) == fill.capacity_impressions
    assert sorted((s.merchant_id, s.impressions) for s in report.free_shares) == [
        ("f-1", 2_000),
        ("f-2", 2_000),
    ]
    assert all(n.paid_impressions + n.free_impressions <= n.capacity_impressions for n in report.nodes)
    with pytest.raises(AllocatorError) as err:
        client.get_plan_report(pb.GetPlanReportRequest(plan_id="nope"))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
