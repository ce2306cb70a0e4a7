"""Request ids, times and plans at the edges of the serving RPCs, against a real Redis and real servers:
picks and delivery reports keep their request ids apart, a report's id with other content is refused,
a time with no local date is bad input, and an expired active plan is served as no plan."""

from __future__ import annotations

import hashlib
import logging
import time

import pytest
import redis
from google.protobuf import timestamp_pb2

from allocator.store.idempotent import RequestConflict
from allocator.store.keys import Keys
from allocator.store.serving import FlushBatch, NodeBatch, ServingStore, pack_candidates
from allocator_client import AllocatorClient, AllocatorError
from tests.integration.conftest import RunningServer, ServerFactory
from tests.integration.helpers import DATE, HOME, PAY
from tests.integration.serving_helpers import node_counts, node_plan, pick, solved_day
from trafficalloc.v1 import allocator_pb2 as pb

CONFLICT = ("request_id", "already used with different content")


def snapshot(r: redis.Redis, prefix: str) -> dict[bytes, bytes | None]:
    """Every key of the server's prefix with its serialised value: "changes nothing" means equal."""
    return {k: r.dump(k) for k in sorted(r.scan_iter(f"{prefix}:*"))}


def paid_line(c: AllocatorClient, hour: int, channel: int = PAY) -> tuple[str, str, int]:
    """(redemption id, merchant id, planned impressions) of a paid line on a north node."""
    planned = node_plan(c, hour, channel=channel)
    line, cap = next((f, x) for f, x in planned.items() if f.startswith("p:"))
    merchant = c.get_redemption(pb.GetRedemptionRequest(redemption_id=line[2:])).redemption.merchant_id
    return line[2:], merchant, cap


def report(
    request_id: str, hour: int, redemption_id: str, merchant: str, shown: int
) -> pb.ReportDeliveryRequest:
    return pb.ReportDeliveryRequest(
        request_id=request_id,
        date=DATE,
        hour=hour,
        channel=PAY,
        region="north",
        deliveries=[pb.DeliveryCount(merchant_id=merchant, redemption_id=redemption_id, impressions=shown)],
    )


def test_a_pick_and_a_delivery_report_may_share_a_request_id(
    client: AllocatorClient, server: RunningServer, redis_client: redis.Redis
) -> None:
    """Each RPC keeps its answers under its own key: the second call of the pair is a request of its own,
    not a crash on the other's stored answer, and each still replays its own answer."""
    prefix = server.settings.key_prefix
    solved_day(client)
    rid, merchant, _ = paid_line(client, 12)

    picked = pick(client, 12, 30, channel=PAY, count=3, request_id="shared-1")
    assert picked.merchants and not picked.replayed
    counted = client.report_delivery(report("shared-1", 12, rid, merchant, 4))
    assert counted.impressions == 4 and not counted.replayed
    assert node_counts(redis_client, prefix, 12, channel=PAY)["_n"] == len(picked.merchants) + 4
    again = pick(client, 12, 30, channel=PAY, count=3, request_id="shared-1")
    assert again.replayed and list(again.merchants) == list(picked.merchants)
    assert client.report_delivery(report("shared-1", 12, rid, merchant, 4)).replayed

    # the other order: a report first, then a pick with its id
    assert not client.report_delivery(report("shared-2", 12, rid, merchant, 2)).replayed
    fresh = pick(client, 12, 31, channel=PAY, count=3, request_id="shared-2")
    assert fresh.merchants and not fresh.replayed
    total = len(picked.merchants) + 4 + 2 + len(fresh.merchants)
    assert node_counts(redis_client, prefix, 12, channel=PAY)["_n"] == total  # every call counted once


def test_a_report_with_a_used_request_id_and_other_content_is_refused_and_counts_nothing(
    client: AllocatorClient, server: RunningServer, redis_client: redis.Redis
) -> None:
    prefix = server.settings.key_prefix
    solved_day(client)
    rid, merchant, _ = paid_line(client, 12)
    first = client.report_delivery(report("rep-1", 12, rid, merchant, 5))
    assert first.impressions == 5 and not first.replayed
    before = snapshot(redis_client, prefix)
    other_node = paid_line(client, 13)
    for changed in (
        report("rep-1", 12, rid, merchant, 6),  # other counts
        report("rep-1", 13, *other_node[:2], 5),  # another node
    ):
        with pytest.raises(AllocatorError) as err:
            client.report_delivery(changed)
        assert err.value.code.name == "INVALID_ARGUMENT"
        assert err.value.field_violations == [CONFLICT]
        assert snapshot(redis_client, prefix) == before  # nothing counted, nothing stored
    retry = client.report_delivery(report("rep-1", 12, rid, merchant, 5))
    assert retry.replayed and retry.impressions == 5 and retry.plan_id == first.plan_id
    assert node_counts(redis_client, prefix, 12, channel=PAY)["_n"] == 5


def test_the_report_script_refuses_other_content_atomically(
    redis_client: redis.Redis, servers: ServerFactory
) -> None:
    """Two replicas may both find no stored answer before their scripts run (the pre-check is a plain
    read): the script itself compares the digest, so the second report with other content counts nothing."""
    keys = Keys(servers.prefix)
    store = ServingStore(redis_client, keys, request_ttl_s=60, counter_ttl_s=60)
    node = store.node_key(DATE, HOME, 9, "north")
    entries = [("f:m1", 3, 1, 10)]
    digest_a, digest_b = (hashlib.sha256(x).hexdigest() for x in (b"a", b"b"))
    assert store.report(DATE, node, "race-1", "plan-1", digest_a, entries) == (False, 3, 0, "plan-1")
    before = snapshot(redis_client, servers.prefix)
    with pytest.raises(RequestConflict):
        store.report(DATE, node, "race-1", "plan-1", digest_b, [("f:m1", 9, 1, 10)])
    assert snapshot(redis_client, servers.prefix) == before
    assert store.report(DATE, node, "race-1", "plan-1", digest_a, entries) == (True, 3, 0, "plan-1")
    assert store.stored_report(DATE, "race-1", digest_a) == (3, 0, "plan-1")
    with pytest.raises(RequestConflict):
        store.stored_report(DATE, "race-1", digest_b)


def test_answers_of_the_degraded_flush_replay_as_picks_only(
    redis_client: redis.Redis, servers: ServerFactory
) -> None:
    """Answers given from memory while Redis was away are flushed under the pick key: a later pick with
    the id replays them, a delivery report with the same id is a new report."""
    store = ServingStore(redis_client, Keys(servers.prefix), request_ttl_s=60, counter_ttl_s=60)
    batch = FlushBatch(DATE, answers={"outage-7": "p:r1\tm1\nf:m2\tm2"})
    batch.nodes[(HOME, 9, "north")] = NodeBatch({"p:r1": 1, "f:m2": 1, "_n": 2})
    assert store.flush(batch)
    node = store.node_key(DATE, HOME, 9, "north")
    replay = store.pick(DATE, node, "outage-7", 2, 100, pack_candidates(["f:m3"], ["m3"], [5], [-1], [0]))
    assert replay.replayed and replay.chosen == [("p:r1", "m1"), ("f:m2", "m2")]
    digest = hashlib.sha256(b"report").hexdigest()
    assert store.stored_report(DATE, "outage-7", digest) is None
    assert store.report(DATE, node, "outage-7", "plan-1", digest, [("f:m2", 1, 0, 5)]) == (
        False,
        1,
        0,
        "plan-1",
    )
    assert store.node_counts(node) == {"p:r1": 1, "f:m2": 2, "_n": 3}


def test_a_pick_replay_returns_the_stored_answer_whatever_its_other_fields(
    client: AllocatorClient, server: RunningServer, redis_client: redis.Redis
) -> None:
    """As docs/api.md "Idempotency" says: a pick's request id names one page view; a used id on the same
    date gets the stored answer and counts nothing, even with another node or count."""
    solved_day(client)
    first = pick(client, 10, 30, count=5, request_id="view-9")
    assert len(first.merchants) == 5
    before = snapshot(redis_client, server.settings.key_prefix)
    other = pick(client, 11, 30, count=2, channel=PAY, request_id="view-9")
    assert other.replayed and list(other.merchants) == list(first.merchants)
    assert snapshot(redis_client, server.settings.key_prefix) == before


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Pacific/Kiritimati"])
def test_a_pick_time_with_no_date_in_the_service_time_zone_is_refused(
    servers: ServerFactory, redis_client: redis.Redis, zone: str
) -> None:
    """9999-12-31T23:59:59Z is the last time the API takes, but east of UTC it is already year 10000:
    INVALID_ARGUMENT on `time`, nothing written; the last local second of 9999 still answers."""
    srv = servers.start(timezone=zone)
    with AllocatorClient(srv.target, timeout=60) as c:
        c.wait_until_serving(30)
        before = snapshot(redis_client, srv.settings.key_prefix)
        last = timestamp_pb2.Timestamp(seconds=253_402_300_799)
        with pytest.raises(AllocatorError) as err:
            c.pick_merchants(
                pb.PickMerchantsRequest(request_id="late", channel=HOME, region="north", time=last, count=1)
            )
        assert err.value.code.name == "INVALID_ARGUMENT"
        assert [f for f, _ in err.value.field_violations] == ["time"]
        assert snapshot(redis_client, srv.settings.key_prefix) == before
        offset = 14 * 3600 if zone == "Pacific/Kiritimati" else 8 * 3600
        local_last = timestamp_pb2.Timestamp(seconds=253_402_300_799 - offset)
        ok = c.pick_merchants(
            pb.PickMerchantsRequest(request_id="edge", channel=HOME, region="north", time=local_last, count=1)
        )
        assert ok.date == "9999-12-31" and ok.hour == 23 and not ok.merchants


def test_an_expired_active_plan_is_served_as_no_plan(
    servers: ServerFactory, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The plan's keys gone by their TTL while the date's active pointer still names it: picks answer
    empty and delivery reports FAILED_PRECONDITION, as with no active plan, and nothing is counted; on
    a replica that never loaded the plan (it used to answer NOT_FOUND) and on one that holds it in memory
    (it used to go on serving it) alike."""
    caplog.set_level(logging.WARNING, logger="allocator.serving.engine")
    held, fresh = servers.start(serving_plan_refresh_s=0.2), servers.start(serving_plan_refresh_s=0.2)
    prefix = held.settings.key_prefix
    keys = Keys(prefix)
    with AllocatorClient(held.target, timeout=60) as a, AllocatorClient(fresh.target, timeout=60) as b:
        a.wait_until_serving(30)
        b.wait_until_serving(30)
        plan_id = solved_day(a)
        rid, merchant, _ = paid_line(a, 12)
        assert pick(a, 12, 30, channel=PAY, count=1).plan_id == plan_id  # `held` has the plan in memory
        assert a.get_delivery(pb.GetDeliveryRequest(merchant_id=merchant, date=DATE)).plan_id == plan_id
        # what the TTL does, without waiting for it (the date's pointer is left alone)
        assert redis_client.delete(keys.plan_data(plan_id), keys.plan_summary(plan_id)) == 2
        assert redis_client.hget(keys.active_plans(), DATE) == plan_id.encode()
        time.sleep(0.3)  # past the replicas' plan refresh
        before = snapshot(redis_client, prefix)
        for c in (a, b, a, b):
            empty = pick(c, 12, 31, channel=PAY, count=3)
            assert not empty.merchants and empty.plan_id == "" and empty.date == DATE and empty.hour == 12
            with pytest.raises(AllocatorError) as err:
                c.report_delivery(report("after-expiry", 12, rid, merchant, 1))
            assert err.value.code.name == "FAILED_PRECONDITION"
            assert [f for f, _ in err.value.field_violations] == ["date"]
            # GetDelivery too: "no active plan" on both (a replica holding the plan kept answering from it)
            with pytest.raises(AllocatorError) as err:
                c.get_delivery(pb.GetDeliveryRequest(merchant_id=merchant, date=DATE))
            assert err.value.code.name == "NOT_FOUND" and "no active plan" in err.value.message
        assert snapshot(redis_client, prefix) == before  # nothing counted, no answer stored
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and plan_id in r.getMessage()]
    assert len(warned) == 2  # once per replica, not once per call
