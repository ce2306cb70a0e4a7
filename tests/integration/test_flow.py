"""The whole flow through the client library: ingest -> solve -> cached plan -> queries."""

from __future__ import annotations

import grpc
import pytest

from allocator_client import AllocatorClient, AllocatorError
from tests.integration.helpers import DATE, HOME, LUOMA, PAY, eligibility, inventory, redemption
from trafficalloc.v1 import allocator_pb2 as pb


def seed(client: AllocatorClient) -> None:
    client.publish_inventory(inventory())
    client.record_redemption(redemption("r-1", "m-star", 2_000))
    client.record_redemption(redemption("r-2", "m-luoma", 1_500, program=LUOMA, regions=("south",)))
    client.set_eligibility(eligibility("e-1", "f-1", "f-2"))


def test_whole_flow(client: AllocatorClient) -> None:
    seed(client)
    plan = client.solve(pb.SolveRequest(start_date=DATE)).plan
    assert plan.status == pb.PLAN_STATUS_OPTIMAL
    assert not plan.cache_hit and plan.active
    assert plan.demands == 2 and plan.supply_nodes == 144
    by_program = {p.program: p for p in plan.programs}
    assert by_program[pb.PROGRAM_STAR_PLAN].points_delivered == 2_000
    assert by_program[pb.PROGRAM_LUOMA_PLAN].points_delivered == 1_500
    assert all(p.points_under_delivered == 0 for p in plan.programs)
    # Two free merchants of equal weight, each capped by the daily quota of 2,000 impressions.
    assert plan.free_merchants == 2 and plan.free_impressions == 4_000
    assert plan.free_min_level == pytest.approx(2_000)

    star = client.get_merchant_allocation(pb.GetMerchantAllocationRequest(merchant_id="m-star", date=DATE))
    assert star.plan_id == plan.plan_id
    assert star.points_due == star.points_delivered == 2_000
    assert sum(c.points for c in star.paid) == 2_000
    # 50 points per mille: each point buys 20 impressions, exactly.
    assert star.paid_impressions == 40_000
    assert {c.channel for c in star.paid} <= {HOME, PAY} and {c.region for c in star.paid} == {"north"}
    assert not star.free

    free = client.get_merchant_allocation(pb.GetMerchantAllocationRequest(merchant_id="f-1", date=DATE))
    assert free.free_impressions == 2_000 and not free.paid

    luoma = client.get_merchant_allocation(pb.GetMerchantAllocationRequest(merchant_id="m-luoma", date=DATE))
    assert {c.channel for c in luoma.paid} <= {HOME, PAY}

    # The node view adds up with the merchant views.
    cell = star.paid[0]
    node = client.get_node_allocation(
        pb.GetNodeAllocationRequest(date=DATE, hour=cell.hour, channel=cell.channel, region=cell.region)
    )
    assert node.capacity_impressions == 10_000
    assert any(e.merchant_id == "m-star" and e.impressions == cell.impressions for e in node.entries)
    assert node.paid_impressions + node.free_impressions <= node.capacity_impressions


def test_second_solve_is_a_cache_hit_and_changes_miss(client: AllocatorClient) -> None:
    seed(client)
    first = client.solve(pb.SolveRequest(start_date=DATE)).plan
    again = client.solve(pb.SolveRequest(start_date=DATE)).plan
    assert again.cache_hit and again.plan_id == first.plan_id
    assert again.solve_seconds == first.solve_seconds  # the stored figures, not a new solve
    # a retried write replays its first answer and changes nothing: still a cache hit
    assert client.record_redemption(redemption("r-1", "m-star", 2_000)).replayed
    assert client.solve(pb.SolveRequest(start_date=DATE)).plan.cache_hit
    client.record_redemption(redemption("r-3", "m-new", 100))
    changed = client.solve(pb.SolveRequest(start_date=DATE)).plan
    assert not changed.cache_hit and changed.plan_id != first.plan_id
    # A different time limit is a different parameter set: solved, not served from the cache.
    other = client.solve(pb.SolveRequest(start_date=DATE, time_limit_seconds=30)).plan
    assert not other.cache_hit


def test_dry_run_does_not_activate_and_activation_switches(client: AllocatorClient) -> None:
    seed(client)
    active = client.solve(pb.SolveRequest(start_date=DATE)).plan
    client.record_redemption(redemption("r-9", "m-late", 300))
    dry = client.solve(pb.SolveRequest(start_date=DATE, dry_run=True)).plan
    assert not dry.active
    assert client.get_active_plan(pb.GetActivePlanRequest(date=DATE)).plan.plan_id == active.plan_id
    switched = client.activate_plan(pb.ActivatePlanRequest(request_id="act-1", plan_id=dry.plan_id))
    assert switched.plan.active and list(switched.previous_plan_ids) == [active.plan_id]
    assert client.get_active_plan(pb.GetActivePlanRequest(date=DATE)).plan.plan_id == dry.plan_id
    assert not client.get_plan(pb.GetPlanRequest(plan_id=active.plan_id)).plan.active
    late = client.get_merchant_allocation(pb.GetMerchantAllocationRequest(merchant_id="m-late", date=DATE))
    assert late.points_delivered == 300


def test_under_delivery_is_reported_not_raised(client: AllocatorClient) -> None:
    client.publish_inventory(inventory(capacity=1_000))  # 48 north nodes of 50 paid points each (HOME+PAY)
    client.record_redemption(redemption("big", "m-big", 1_000_000))
    plan = client.solve(pb.SolveRequest(start_date=DATE)).plan
    assert plan.status == pb.PLAN_STATUS_PARTIAL
    star = {p.program: p for p in plan.programs}[pb.PROGRAM_STAR_PLAN]
    # Paid capacity per node: floor(1,000 * (1 - reserved share) * 50 / 1000) points.
    expected = 24 * (int(1_000 * 0.9) * 50 // 1000) + 24 * (int(1_000 * 0.85) * 50 // 1000)
    assert star.points_delivered == expected
    assert star.points_under_delivered == 1_000_000 - expected


def test_multi_day_flight_split_over_a_range(client: AllocatorClient) -> None:
    for d in ("2026-12-01", "2026-12-02", "2026-12-03"):
        client.publish_inventory(inventory(date=d, request_id=f"inv-{d}"))
    client.record_redemption(redemption("r-md", "m-md", 1_000, start="2026-12-01", end="2026-12-03"))
    plan = client.solve(pb.SolveRequest(start_date="2026-12-01", end_date="2026-12-03")).plan
    assert plan.start_date == "2026-12-01" and plan.end_date == "2026-12-03"
    dues = [
        client.get_merchant_allocation(pb.GetMerchantAllocationRequest(merchant_id="m-md", date=d)).points_due
        for d in ("2026-12-01", "2026-12-02", "2026-12-03")
    ]
    assert dues == [333, 333, 334] and sum(dues) == 1_000
    for d in ("2026-12-01", "2026-12-02", "2026-12-03"):
        assert client.get_active_plan(pb.GetActivePlanRequest(date=d)).plan.plan_id == plan.plan_id


def test_cancelled_redemption_leaves_the_next_plan(client: AllocatorClient) -> None:
    seed(client)
    rec = client.record_redemption(redemption("r-c", "m-c", 700)).redemption
    client.cancel_redemption(
        pb.CancelRedemptionRequest(request_id="cancel-1", redemption_id=rec.redemption_id)
    )
    got = client.get_redemption(pb.GetRedemptionRequest(redemption_id=rec.redemption_id)).redemption
    assert got.status == pb.REDEMPTION_STATUS_CANCELLED
    plan = client.solve(pb.SolveRequest(start_date=DATE)).plan
    assert plan.demands == 2
    with pytest.raises(AllocatorError) as err:
        client.get_merchant_allocation(pb.GetMerchantAllocationRequest(merchant_id="m-c", date=DATE))
    assert err.value.code == grpc.StatusCode.NOT_FOUND


def test_cancelling_a_cancelled_redemption_again_changes_nothing(client: AllocatorClient) -> None:
    """Found by review: a second cancel (a new request id) rewrote the record and bumped the generation,
    so the next Solve of unchanged inputs missed the plan cache and solved again."""
    seed(client)
    rec = client.record_redemption(redemption("r-cc", "m-cc", 700)).redemption
    first = pb.CancelRedemptionRequest(request_id="cc-1", redemption_id=rec.redemption_id)
    client.cancel_redemption(first)
    plan = client.solve(pb.SolveRequest(start_date=DATE)).plan
    again = client.cancel_redemption(
        pb.CancelRedemptionRequest(request_id="cc-2", redemption_id=rec.redemption_id)
    )
    assert again.redemption.status == pb.REDEMPTION_STATUS_CANCELLED
    resolved = client.solve(pb.SolveRequest(start_date=DATE)).plan
    assert resolved.plan_id == plan.plan_id and resolved.cache_hit
    # the second request id is remembered like any write: the same id with other content is a conflict
    with pytest.raises(AllocatorError) as err:
        client.cancel_redemption(pb.CancelRedemptionRequest(request_id="cc-2", redemption_id="rdm-other"))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_lists_paginate_in_order(client: AllocatorClient) -> None:
    for i in range(25):
        client.record_redemption(redemption(f"p-{i}", f"m-{i % 3}", 10 + i))
    seen: list[str] = []
    token = ""
    while True:
        page = client.list_redemptions(pb.ListRedemptionsRequest(page_size=7, page_token=token))
        assert len(page.redemptions) <= 7
        seen += [r.redemption_id for r in page.redemptions]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 25 == len(set(seen)) and seen == sorted(seen)
    mine = client.list_redemptions(pb.ListRedemptionsRequest(merchant_id="m-1", page_size=100))
    assert len(mine.redemptions) == 8 and {r.merchant_id for r in mine.redemptions} == {"m-1"}

    client.set_eligibility(eligibility("e-many", *[f"f-{i:02d}" for i in range(12)]))
    first = client.list_eligibility(pb.ListEligibilityRequest(page_size=5))
    assert [e.merchant_id for e in first.entries] == [f"f-{i:02d}" for i in range(5)]
    cleared = client.clear_eligibility(
        pb.ClearEligibilityRequest(request_id="clr", merchant_ids=["f-00", "nobody"])
    )
    assert cleared.cleared == 1
    assert client.list_eligibility(pb.ListEligibilityRequest(page_size=1)).entries[0].merchant_id == "f-01"


def test_inventory_replace_is_whole_and_readable(client: AllocatorClient) -> None:
    client.publish_inventory(inventory())
    smaller = inventory(request_id="inv-2", regions=("east",))
    resp = client.publish_inventory(smaller)
    assert resp.node_count == 72
    page = client.get_inventory(pb.GetInventoryRequest(date=DATE, page_size=50))
    assert page.total_size == 72 and {n.region for n in page.nodes} == {"east"}
    rest = client.get_inventory(
        pb.GetInventoryRequest(date=DATE, page_size=50, page_token=page.next_page_token)
    )
    assert len(rest.nodes) == 22 and not rest.next_page_token


def test_a_failed_solve_is_reported_and_never_activated(client: AllocatorClient) -> None:
    seed(client)
    good = client.solve(pb.SolveRequest(start_date=DATE)).plan
    client.record_redemption(redemption("huge-1", "m-h1", 10**12))
    client.record_redemption(redemption("huge-2", "m-h2", 10**12))
    failed = client.solve(pb.SolveRequest(start_date=DATE)).plan
    assert failed.status == pb.PLAN_STATUS_FAILED and "numeric range" in failed.status_detail
    assert not failed.active
    assert client.get_active_plan(pb.GetActivePlanRequest(date=DATE)).plan.plan_id == good.plan_id
    with pytest.raises(AllocatorError) as err:
        client.activate_plan(pb.ActivatePlanRequest(request_id="act-failed", plan_id=failed.plan_id))
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert client.get_active_plan(pb.GetActivePlanRequest(date=DATE)).plan.plan_id == good.plan_id


def test_a_client_without_a_deadline_reaches_the_server(server) -> None:  # type: ignore[no-untyped-def]
    """Found by review: timeout=inf (meaning "no deadline") made gRPC fail every call at once with
    DEADLINE_EXCEEDED. It now means no deadline; nonsense timeouts are refused where they are given."""
    with AllocatorClient(server.target, timeout=float("inf")) as c:
        assert c.timeout is None
        c.wait_until_serving(20)
        assert c.get_rules(pb.GetRulesRequest()).channels
    with AllocatorClient(server.target) as c:
        assert c.get_rules(pb.GetRulesRequest(), timeout=1e12).channels  # per call too
        for bad in (0.0, -1.0, float("nan")):
            with pytest.raises(ValueError):
                c.get_rules(pb.GetRulesRequest(), timeout=bad)
    with pytest.raises(ValueError):
        AllocatorClient(server.target, timeout=float("nan"))
