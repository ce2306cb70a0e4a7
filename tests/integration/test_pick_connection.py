"""The pick script on each thread's own Redis connection (ServingStore._pick_direct), on a real Redis:
a connection Redis closed and a script cache Redis flushed are recovered in the same call, and the
counts stay exact."""

from __future__ import annotations

import uuid

import pytest
import redis

from allocator.store.connect import RedisClient
from allocator.store.keys import Keys
from allocator.store.serving import ServingStore, pack_candidates

DATE = "2026-12-01"


@pytest.fixture
def store(redis_client: RedisClient) -> ServingStore:
    if not isinstance(redis_client, redis.Redis):
        pytest.skip("a cluster keeps redis-py's routed script call; the held connection is standalone only")
    return ServingStore(redis_client, Keys(f"t{uuid.uuid4().hex[:8]}"), request_ttl_s=60, counter_ttl_s=60)


def _pick(store: ServingStore, request_id: str, node: str) -> list[tuple[str, str]]:
    candidates = pack_candidates(["p:r1", "p:r2"], ["m1", "m2"], [100, 100], [-1, -1], [1000, 1000])
    return store.pick(DATE, node, request_id, 1, 1000, candidates).chosen


def test_a_connection_redis_closed_is_replaced_within_the_call(
    store: ServingStore, redis_client: redis.Redis
) -> None:
    node = store.node_key(DATE, 1, 20, "r00")
    assert len(_pick(store, "a", node)) == 1  # opens this thread's connection
    held = store._local.conn
    held.send_command("CLIENT", "ID")
    own_id = held.read_response()
    assert redis_client.client_kill_filter(_id=own_id) == 1  # Redis drops exactly that connection
    assert len(_pick(store, "b", node)) == 1  # the stale connection fails, a fresh one answers
    assert store.node_counts(node)["_n"] == 2  # each pick counted once


def test_a_flushed_script_cache_is_reloaded_within_the_call(
    store: ServingStore, redis_client: redis.Redis
) -> None:
    node = store.node_key(DATE, 1, 20, "r01")
    assert len(_pick(store, "a", node)) == 1
    redis_client.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
    assert len(_pick(store, "b", node)) == 1
    assert _pick(store, "b", node) == _pick(store, "b", node)  # a retried request id replays its answer
    assert store.node_counts(node)["_n"] == 2
