"""PickMerchants and delivery counts against a real Redis and real servers: never over-deliver, count
exactly once, pace through the hour, and keep counting across an intraday re-plan."""

from __future__ import annotations

import datetime as dt
import pathlib
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import redis

from allocator.serving.pacing import allowance
from allocator_client import AllocatorClient, AllocatorError
from tests.integration.conftest import ServerFactory
from tests.integration.helpers import DATE, HOME, PAY, redemption
from tests.integration.serving_helpers import (
    DAY,
    clock_at,
    node_counts,
    node_plan,
    pick,
    solved_day,
    start_process,
)
from trafficalloc.v1 import allocator_pb2 as pb


def drain(c: AllocatorClient, hour: int, **kw: object) -> list[pb.PickedMerchant]:
    """Pick at the end of the hour window until nothing is left; every merchant shown."""
    shown: list[pb.PickedMerchant] = []
    while True:
        r = pick(c, hour, 59, **kw)  # type: ignore[arg-type]
        if not r.merchants:
            return shown
        shown += r.merchants


def field(m: pb.PickedMerchant) -> str:
    return f"f:{m.merchant_id}" if m.free else f"p:{m.redemption_id}"


def test_pick_answers_distinct_planned_merchants_and_a_retry_counts_once(
    client: AllocatorClient,
    server,
    redis_client: redis.Redis,  # type: ignore[no-untyped-def]
) -> None:
    plan_id = solved_day(client)
    planned = node_plan(client, 10)
    first = pick(client, 10, 30, count=5, request_id="view-1")
    assert first.plan_id == plan_id and first.date == DATE and first.hour == 10 and not first.degraded
    assert len(first.merchants) == 5
    assert len({m.merchant_id for m in first.merchants}) == 5  # no merchant twice in one answer
    assert all(field(m) in planned for m in first.merchants)  # only merchants planned on the node
    again = pick(client, 10, 30, count=5, request_id="view-1")
    assert again.replayed and list(again.merchants) == list(first.merchants)
    counts = node_counts(redis_client, server.settings.key_prefix, 10)
    assert counts["_n"] == 5  # the retry counted nothing
    assert sorted(k for k, v in counts.items() if k != "_n" and v == 1) == sorted(
        field(m) for m in first.merchants
    )


def test_draining_a_node_delivers_exactly_the_plan_and_never_more(
    client: AllocatorClient,
    server,
    redis_client: redis.Redis,  # type: ignore[no-untyped-def]
) -> None:
    solved_day(client)
    planned = node_plan(client, 10)
    shown = drain(client, 10)
    assert Counter(field(m) for m in shown) == Counter(planned)  # every planned impression, once
    counts = node_counts(redis_client, server.settings.key_prefix, 10)
    assert counts.pop("_n") == sum(planned.values()) == len(shown)
    assert counts == planned
    assert drain(client, 10) == []  # used up stays used up
    free = [m for m in shown if m.free]
    assert free and all(not m.redemption_id for m in free)  # daily promotion is served too


def test_no_active_plan_or_no_node_answers_empty_and_bad_requests_are_refused(
    client: AllocatorClient,
) -> None:
    empty = pick(client, 10)
    assert not empty.merchants and empty.plan_id == ""
    solved_day(client, merchants=3, free=0)
    assert not pick(client, 10, region="atlantis").merchants
    for change, bad_field in [
        ({"count": 0}, "count"),
        ({"count": 51}, "count"),
        ({"channel": 9}, "channel"),
        ({"region": ""}, "region"),
    ]:
        request = pb.PickMerchantsRequest(channel=HOME, region="north", count=1, request_id="x")
        for k, v in change.items():
            setattr(request, k, v)
        with pytest.raises(AllocatorError) as err:
            client.pick_merchants(request)
        assert err.value.code.name == "INVALID_ARGUMENT"
        assert bad_field in [f for f, _ in err.value.field_violations]


def test_pacing_holds_through_a_simulated_hour(
    client: AllocatorClient,
    server,
    redis_client: redis.Redis,  # type: ignore[no-untyped-def]
) -> None:
    """Twice the traffic the plan needs, minute by minute: no line ever runs past its pace allowance,
    and by the end of the hour every line got its whole plan."""
    solved_day(client)
    planned = node_plan(client, 10)
    fields = sorted(planned)
    caps = np.array([planned[f] for f in fields], dtype=np.int64)
    total = int(caps.sum())
    # twice the page views the plan needs: in slots, and for the largest line (once per page view)
    per_minute = max(2 * total // 60 // 5 + 1, 2 * int(caps.max()) // 60 + 2)
    for minute in range(60):
        for _ in range(per_minute):
            pick(client, 10, minute, count=5)
        counts = node_counts(redis_client, server.settings.key_prefix, 10)
        got = np.array([counts.get(f, 0) for f in fields], dtype=np.int64)
        limit = allowance(caps, (minute * 60 + 60) / 3600)  # the allowance at the minute's last second
        assert (got <= limit).all(), f"minute {minute}: a line ran ahead of its pace"
        if 5 <= minute <= 54:  # held back: nobody is far ahead of an even pace
            assert got.sum() <= caps.sum() * (minute + 1) / 60 + len(fields) + caps.sum() * 0.02
    counts = node_counts(redis_client, server.settings.key_prefix, 10)
    assert {f: counts.get(f, 0) for f in fields} == planned


def test_merchants_behind_their_pace_are_favoured(client: AllocatorClient) -> None:
    """Half-way through the hour, half of the paid lines are on pace (reported delivered) and half got
    nothing yet: per impression of plan, the lines behind are picked several times as often."""
    node = pb.SupplyNode(
        hour=10, channel=HOME, region="north", capacity_impressions=20_000, price_points_per_mille=50
    )
    client.publish_inventory(pb.PublishInventoryRequest(request_id="one-node", date=DATE, nodes=[node]))
    for i in range(12):  # 800..1,680 impressions each, all on the one node
        client.record_redemption(redemption(f"r{i}", f"m{i}", 40 + 4 * i, channels=(HOME,)))
    client.solve(pb.SolveRequest(start_date=DATE))
    hour = 10
    planned = node_plan(client, hour)
    lines = sorted(planned)
    on_pace, behind = lines[::2], lines[1::2]
    assert len(on_pace) == len(behind) == 6
    client.report_delivery(
        pb.ReportDeliveryRequest(
            date=DATE,
            hour=10,
            channel=HOME,
            region="north",
            deliveries=[
                pb.DeliveryCount(
                    merchant_id=client.get_redemption(
                        pb.GetRedemptionRequest(redemption_id=f[2:])
                    ).redemption.merchant_id,
                    redemption_id=f[2:],
                    impressions=planned[f] // 2,
                )
                for f in on_pace
            ],
        )
    )
    later = Counter(field(m) for _ in range(150) for m in pick(client, hour, 30, count=1).merchants)
    rate_on_pace = sum(later[f] for f in on_pace) / sum(planned[f] for f in on_pace)
    rate_behind = sum(later[f] for f in behind) / sum(planned[f] for f in behind)
    assert rate_behind > 2 * rate_on_pace  # weights are 4x the plan against 0.5x: ~8x in expectation


def test_report_delivery_counts_once_flags_over_plan_and_refuses_unplanned_lines(
    client: AllocatorClient,
    server,
    redis_client: redis.Redis,  # type: ignore[no-untyped-def]
) -> None:
    solved_day(client)
    planned = node_plan(client, 12, channel=PAY)
    line, cap = next((f, x) for f, x in planned.items() if f.startswith("p:"))
    merchant = client.get_redemption(pb.GetRedemptionRequest(redemption_id=line[2:])).redemption.merchant_id
    report = pb.ReportDeliveryRequest(
        request_id="rep-1",
        date=DATE,
        hour=12,
        channel=PAY,
        region="north",
        deliveries=[pb.DeliveryCount(merchant_id=merchant, redemption_id=line[2:], impressions=cap + 7)],
    )
    out = client.report_delivery(report)
    assert out.impressions == cap + 7 and out.impressions_over_plan == 7 and not out.replayed
    again = client.report_delivery(report)
    assert again.replayed and again.impressions == cap + 7
    counts = node_counts(redis_client, server.settings.key_prefix, 12, channel=PAY)
    assert counts[line] == cap + 7 and counts["_n"] == cap + 7
    # a used-up line is not picked again
    assert all(field(m) != line for m in drain(client, 12, channel=PAY))
    delivery = client.get_delivery(pb.GetDeliveryRequest(merchant_id=merchant, date=DATE))
    assert any(x.delivered_impressions == cap + 7 and x.hour == 12 for x in delivery.lines)
    # a line the plan does not have on the node is refused, and nothing is counted
    before = node_counts(redis_client, server.settings.key_prefix, 12, channel=PAY)
    bad = pb.ReportDeliveryRequest(
        request_id="rep-2",
        date=DATE,
        hour=12,
        channel=PAY,
        region="north",
        deliveries=[
            pb.DeliveryCount(merchant_id=merchant, redemption_id=line[2:], impressions=1),
            pb.DeliveryCount(merchant_id="nobody", redemption_id="", impressions=3),
        ],
    )
    with pytest.raises(AllocatorError) as err:
        client.report_delivery(bad)
    assert err.value.code.name == "FAILED_PRECONDITION"
    assert [f for f, _ in err.value.field_violations] == ["deliveries[1]"]
    assert node_counts(redis_client, server.settings.key_prefix, 12, channel=PAY) == before


def test_replan_keeps_every_count_and_never_exceeds_points_due(
    servers: ServerFactory, redis_client: redis.Redis
) -> None:
    server = servers.start(clock=clock_at(11, 30))  # the re-plan from 11 is made during hour 11
    prefix = server.settings.key_prefix
    with AllocatorClient(server.target, timeout=60) as client:
        client.wait_until_serving(20)
        first = solved_day(client)
        shown = drain(client, 10, count=30) + drain(client, 11, count=30)
        before = {h: node_counts(redis_client, prefix, h) for h in (10, 11)}
        request = pb.ReplanRequest(request_id="rp-1", date=DATE, from_hour=11)
        out = client.replan(request)
        assert out.previous_plan_id == first and out.plan.active and out.from_hour == 11 and not out.replayed
        assert out.plan.plan_id != first
        assert out.delivered_impressions == len(shown)
        assert client.get_active_plan(pb.GetActivePlanRequest(date=DATE)).plan.plan_id == out.plan.plan_id
        again = client.replan(request)
        assert again.replayed and again.plan.plan_id == out.plan.plan_id
        assert {h: node_counts(redis_client, prefix, h) for h in (10, 11)} == before  # the swap moved nothing
        time.sleep(1.1)  # every replica picks up the new plan within the refresh interval
        for hour in (11, 12):
            shown += drain(client, hour, count=30) + drain(client, hour, channel=PAY, count=30)
        total = 0
        for i in range(30):
            d = client.get_delivery(pb.GetDeliveryRequest(merchant_id=f"m{i}", date=DATE))
            assert d.plan_id == out.plan.plan_id
            assert d.points_due > 0 and d.delivered_millipoints <= d.points_due * 1000  # never more than due
            for line in d.lines:
                assert line.delivered_impressions <= line.planned_impressions
                total += line.delivered_impressions
        assert total == sum(1 for m in shown if not m.free)  # every shown impression counted, once


def test_a_merchant_delivered_in_full_before_a_replan_is_still_answered(
    servers: ServerFactory,
) -> None:
    """Found by review: a redemption delivered in full dropped out of the re-plan, and its merchant's
    allocation and explanation on the new active plan were NOT_FOUND, as if it had bought nothing. It
    stays in the plan, due 0: nothing more today, answered as such."""
    server = servers.start(clock=clock_at(12, 30))
    with AllocatorClient(server.target, timeout=60) as client:
        client.wait_until_serving(20)
        solved_day(client)
        planned = node_plan(client, 12, channel=PAY)
        line = next(f for f in planned if f.startswith("p:"))
        merchant = client.get_redemption(
            pb.GetRedemptionRequest(redemption_id=line[2:])
        ).redemption.merchant_id
        done = pb.DeliveryCount(merchant_id=merchant, redemption_id=line[2:], impressions=10**9)
        client.report_delivery(
            pb.ReportDeliveryRequest(
                request_id="all-of-it", date=DATE, hour=12, channel=PAY, region="north", deliveries=[done]
            )
        )
        out = client.replan(pb.ReplanRequest(request_id="rp-full", date=DATE))
        assert out.plan.active
        got = client.get_merchant_allocation(pb.GetMerchantAllocationRequest(merchant_id=merchant, date=DATE))
        assert got.plan_id == out.plan.plan_id and got.points_due == 0 and not got.paid
        why = client.explain_allocation(pb.ExplainAllocationRequest(merchant_id=merchant, date=DATE))
        assert [r.points_under_delivered for r in why.redemptions] == [0]


def test_replan_refuses_a_day_or_an_hour_already_over_and_changes_nothing(
    servers: ServerFactory, redis_client: redis.Redis
) -> None:
    """An explicit from_hour does not bypass the clock: a day already over, or an hour of today before the
    current one, is FAILED_PRECONDITION naming the field, and nothing is stored, recorded or activated."""
    now = servers.start(clock=clock_at(14, 20))  # two replicas on one Redis, their clocks a day apart
    tomorrow = servers.start(clock=clock_at(10, day=DAY + dt.timedelta(days=1)))
    prefix = now.settings.key_prefix
    with AllocatorClient(now.target, timeout=60) as cn, AllocatorClient(tomorrow.target, timeout=60) as ct:
        cn.wait_until_serving(20)
        ct.wait_until_serving(20)
        first = solved_day(cn)
        before = {k: redis_client.dump(k) for k in sorted(redis_client.scan_iter(f"{prefix}:*"))}
        refusals = [
            (ct, pb.ReplanRequest(request_id="over-1", date=DATE, from_hour=15), "date", "is over"),
            (
                ct,
                pb.ReplanRequest(request_id="over-2", date=DATE, from_hour=0, dry_run=True),
                "date",
                "is over",
            ),
            (ct, pb.ReplanRequest(request_id="over-3", date=DATE), "date", "is over"),
            (
                cn,
                pb.ReplanRequest(request_id="over-4", date=DATE, from_hour=13),
                "from_hour",
                "current hour is 14",
            ),
        ]
        for c, request, name, says in refusals:
            with pytest.raises(AllocatorError) as err:
                c.replan(request)
            assert err.value.code.name == "FAILED_PRECONDITION", (request, err.value)
            assert [f for f, _ in err.value.field_violations] == [name] and says in str(err.value), err.value
        after = {k: redis_client.dump(k) for k in sorted(redis_client.scan_iter(f"{prefix}:*"))}
        assert after == before  # no plan stored, no request id recorded, the active plan untouched
        assert cn.get_active_plan(pb.GetActivePlanRequest(date=DATE)).plan.plan_id == first
        # the current hour itself, and by default, is still the rest of today
        assert cn.replan(pb.ReplanRequest(date=DATE, from_hour=14, dry_run=True)).from_hour == 14
        assert cn.replan(pb.ReplanRequest(date=DATE, dry_run=True)).from_hour == 14


def test_a_replan_under_load_loses_nothing(servers: ServerFactory, redis_client: redis.Redis) -> None:
    """Two replicas pick from many threads while a third call re-plans: every merchant returned is
    counted exactly once, and no line or redemption goes past any plan's limits."""
    a, b = servers.start(clock=clock_at(10, 59)), servers.start(clock=clock_at(10, 59))
    prefix = a.settings.key_prefix
    with AllocatorClient(a.target, timeout=60) as ca, AllocatorClient(b.target, timeout=60) as cb:
        ca.wait_until_serving(20)
        cb.wait_until_serving(20)
        first = solved_day(ca)
        planned_first = node_plan(ca, 10)
        stop = threading.Event()
        returned: list[pb.PickedMerchant] = []
        lock = threading.Lock()

        def worker(c: AllocatorClient) -> None:
            while not stop.is_set():
                got = pick(c, 10, 59, count=3).merchants
                with lock:
                    returned.extend(got)

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(worker, c) for c in (ca, cb) * 4]
            time.sleep(0.3)
            out = ca.replan(pb.ReplanRequest(date=DATE, from_hour=10))
            time.sleep(1.5)
            stop.set()
            for f in futures:
                f.result()
        assert out.previous_plan_id == first
        planned_new = node_plan(ca, 10)
        counts = node_counts(redis_client, prefix, 10)
        assert counts.pop("_n") == len(returned)
        assert counts == dict(Counter(field(m) for m in returned))  # counted exactly once each
        for line, n in counts.items():  # within the old cap, or within what was shown plus the new plan
            assert n <= planned_first.get(line, 0) + planned_new.get(line, 0)
        assert len(returned) <= 2_000  # the node's capacity


def test_two_server_processes_never_over_deliver_together(
    redis_server: str, tmp_path: pathlib.Path, redis_client: redis.Redis
) -> None:
    prefix = f"proc{time.monotonic_ns() % 10**8}"
    procs = [start_process(tmp_path, f"s{i}", redis_server, prefix) for i in range(2)]
    try:
        clients = [AllocatorClient(target, timeout=60) for _, target in procs]
        solved_day(clients[0], merchants=40, capacity=1_500)
        planned = node_plan(clients[0], 9)
        returned: list[pb.PickedMerchant] = []
        lock = threading.Lock()

        def worker(c: AllocatorClient) -> None:
            while True:
                got = pick(c, 9, 59, count=4).merchants
                if not got:
                    return
                with lock:
                    returned.extend(got)

        with ThreadPoolExecutor(16) as pool:
            for f in [pool.submit(worker, clients[i % 2]) for i in range(16)]:
                f.result()
        counts = node_counts(redis_client, prefix, 9)
        assert counts.pop("_n") == len(returned) == sum(planned.values())
        assert counts == planned == dict(Counter(field(m) for m in returned))
        for c in clients:
            c.close()
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            proc.wait(timeout=30)
