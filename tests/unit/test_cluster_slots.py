"""Redis Cluster safety: every multi-key operation of the stores touches keys of one hash slot.

The stores run against a recording client: each Lua script call and each MULTI pipeline is one atomic
operation, and all of its keys must map to one slot (else Redis Cluster answers CROSSSLOT). Slots are
computed twice, by redis-py (redis.cluster.key_slot) and by CRC16 of the hash tag here.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.cluster import key_slot

from allocator.store.connect import _cluster_url, connect, is_cluster_url
from allocator.store.idempotent import IdempotentWriter, Op
from allocator.store.keys import Keys
from allocator.store.plans import PlanStore
from allocator.store.records import RecordStore
from trafficalloc.v1 import allocator_pb2 as pb

DATE = "2026-12-01"


def crc16_slot(key: str) -> int:
    """CRC16-XMODEM of the hash tag (the part between the first "{" and the next "}", if not empty)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key.encode(), 0) % 16384


def slots(keys: list[str]) -> set[int]:
    found = {key_slot(k.encode()) for k in keys}
    assert found == {crc16_slot(k) for k in keys}
    return found


@dataclass
class Atomic:
    kind: str  # "script" or "multi"
    keys: list[str]


@dataclass
class RecordingClient:
    """Stands in for redis.Redis / RedisCluster: records the keys of each script call and MULTI."""

    atomic: list[Atomic] = field(default_factory=list)

    def register_script(self, _source: str) -> Callable[..., Any]:
        def call(keys: list[str], args: list[Any]) -> None:
            self.atomic.append(Atomic("script", list(keys)))

        return call

    def pipeline(self, transaction: bool = True) -> RecordingPipeline:
        return RecordingPipeline(self, transaction)

    def __getattr__(self, _command: str) -> Callable[..., Any]:
        return lambda *args, **kwargs: None  # single-key reads and writes: any slot is fine


@dataclass
class RecordingPipeline:
    client: RecordingClient
    transaction: bool
    keys: list[str] = field(default_factory=list)

    def __getattr__(self, _command: str) -> Callable[..., Any]:
        def queue(key: str, *args: Any, **kwargs: Any) -> RecordingPipeline:
            self.keys.append(key)
            return self

        return queue

    def execute(self) -> list[Any]:
        if self.transaction:
            self.client.atomic.append(Atomic("multi", list(self.keys)))
        return [None] * len(self.keys)


@pytest.fixture
def rec() -> RecordingClient:
    return RecordingClient()


@pytest.fixture(params=["alloc", "t0123abcd", "odd:prefix-9"])
def keys(request: pytest.FixtureRequest) -> Keys:
    return Keys(request.param)


def _one_slot_each(rec: RecordingClient, expected: int) -> None:
    assert len(rec.atomic) == expected
    for op in rec.atomic:
        assert len(slots(op.keys)) == 1, f"{op.kind} touches several slots: {op.keys}"


def _redemption(rid: str, merchant: str) -> pb.Redemption:
    return pb.Redemption(redemption_id=rid, merchant_id=merchant)


def test_record_writes_are_single_slot(rec: RecordingClient, keys: Keys) -> None:
    store = RecordStore(rec, keys, request_ttl_seconds=60)  # type: ignore[arg-type]
    store.publish_inventory(DATE, "r1", "d" * 64, pb.GetInventoryResponse(), b"ok")
    store.record_redemption("r2", "d" * 64, _redemption("red-1", "m-1"), b"ok")
    store.update_redemption("r3", "d" * 64, _redemption("red-1", "m-1"), b"ok")
    entries = [pb.DailyPromotionEligibility(merchant_id=f"m-{i}") for i in range(5)]
    store.set_eligibility("r4", "d" * 64, entries, b"ok")
    store.clear_eligibility("r5", "d" * 64, ["m-1", "m-2"], b"ok")
    store.redemptions_snapshot()
    store.eligibility_snapshot()
    _one_slot_each(rec, 7)
    assert [op.kind for op in rec.atomic] == ["script"] * 5 + ["multi"] * 2
    # each commit carries its request key with the data it protects
    assert rec.atomic[0].keys == [keys.inventory_request(DATE, "r1"), keys.inventory(DATE)]
    assert len(rec.atomic[1].keys) == 5


def test_plan_operations_are_single_slot(rec: RecordingClient, keys: Keys) -> None:
    records = RecordStore(rec, keys, request_ttl_seconds=60)  # type: ignore[arg-type]
    plans = PlanStore(rec, keys, records.writer, plan_ttl_seconds=60)  # type: ignore[arg-type]
    plans.save("0123456789abcdef0123456789abcdef", b"summary", b"data")
    plans.touch("0123456789abcdef0123456789abcdef")
    plans.activate("r1", "d" * 64, "p1", ["2026-12-01", "2026-12-02", "2026-12-03"], b"[]")
    plans.unlock("p1", "token")
    _one_slot_each(rec, 4)
    save = rec.atomic[0]
    assert save.kind == "multi"
    assert save.keys == [
        keys.plan_data("0123456789abcdef0123456789abcdef"),
        keys.plan_summary("0123456789abcdef0123456789abcdef"),
    ], "data is written before its summary"


def test_idempotent_commit_is_single_slot(rec: RecordingClient, keys: Keys) -> None:
    writer = IdempotentWriter(rec, 60)  # type: ignore[arg-type]
    writer.commit(
        keys.redemption_request("r"),
        "d" * 64,
        b"ok",
        [Op("HSET", keys.redemptions(), "a", "b"), Op("INCR", keys.redemptions_generation())],
    )
    _one_slot_each(rec, 1)


@pytest.mark.parametrize("date", ["2026-12-01", "2027-01-31"])
def test_key_families_share_their_tag(keys: Keys, date: str) -> None:
    """The key groups that change together, as keys.py builds them (also the serving counters)."""
    groups = {
        "inventory": [keys.inventory(date), keys.inventory_request(date, "rq")],
        "redemptions": [
            keys.redemptions(),
            keys.redemption_ids(),
            keys.redemptions_by_merchant(),
            keys.redemptions_generation(),
            keys.redemption_request("rq"),
        ],
        "eligibility": [
            keys.eligibility(),
            keys.eligibility_ids(),
            keys.eligibility_generation(),
            keys.eligibility_request("rq"),
        ],
        "plan": [keys.plan_summary("p"), keys.plan_data("p"), keys.plan_lock("p")],
        "active": [keys.active_plans(), keys.activation_request("rq")],
    }
    names = (
        "serving_node",
        "serving_budget",
        "serving_pick_request",
        "serving_report_request",
        "serving_flush",
    )
    serving = [getattr(keys, name) for name in names]
    if all(callable(b) for b in serving):  # the serving counters of one date
        node, budget, pick_request, report_request, flush = serving
        groups["serving"] = [
            node(date, 1, 9, "310000"),
            node(date, 3, 23, "110105"),
            budget(date),
            pick_request(date, "rq"),
            report_request(date, "rq"),
            flush(date, "f"),
        ]
    for name, group in groups.items():
        assert len(slots(group)) == 1, name
    # and different dates and families spread over slots instead of piling on one node
    assert len({slots(g).pop() for g in groups.values()}) == len(groups)
    assert slots([keys.inventory("2026-12-01")]) != slots([keys.inventory("2026-12-02")])


def test_slot_function_matches_redis() -> None:
    """Known answers of CLUSTER KEYSLOT."""
    assert crc16_slot("foo") == 12182
    assert crc16_slot("123456789") == 0x31C3 % 16384
    assert crc16_slot("{user1000}.following") == crc16_slot("{user1000}.followers")
    assert crc16_slot("foo{}{bar}") == key_slot(b"foo{}{bar}")


def test_cluster_urls_select_the_cluster_client() -> None:
    assert is_cluster_url("redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
    assert is_cluster_url("rediss+cluster://h:7000")
    assert not is_cluster_url("redis://127.0.0.1:6379/0")
    standalone = connect("redis://127.0.0.1:1/0")  # no connection until a command
    assert type(standalone).__name__ == "Redis"
    standalone.close()


def test_cluster_url_seeds_and_credentials() -> None:
    first, seeds = _cluster_url("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/0?ssl=false")
    assert first == "redis://u:p%40ss@10.0.0.1:7000/0?ssl=false"
    assert [(n.host, n.port) for n in seeds] == [("10.0.0.2", 7001), ("::1", 7002)]
    assert _cluster_url("rediss+cluster://h:7000")[0] == "rediss://h:7000"
    with pytest.raises(ValueError, match="no cluster node"):
        _cluster_url("redis+cluster://u:secret@/0")
