"""Durability: with AOF ``appendfsync always``, every acknowledged redemption survives kill -9 of Redis."""

from __future__ import annotations

import pytest
import redis

from allocator_client import AllocatorClient
from tests.faults.conftest import (
    KEYS,
    NOT_SERVING,
    RPC_TIMEOUT,
    SERVING,
    HealthRecorder,
    RedisProcess,
    RetryingWriters,
    ServerProcess,
    all_redemptions,
    check_redemption_tables,
    redemption_job,
    wait_for,
)
from tests.integration.helpers import redemption


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_thousand_acknowledged_redemptions_survive_kill_9_of_redis(
    redis_proc: RedisProcess, server_proc: ServerProcess, health: HealthRecorder, raw_redis: redis.Redis
) -> None:
    assert raw_redis.config_get("appendonly") == {"appendonly": "yes"}
    assert raw_redis.config_get("appendfsync") == {"appendfsync": "always"}
    requests = {
        r.request_id: r for r in (redemption(f"durable-{i:04d}", f"m-{i % 211}", 1 + i) for i in range(1200))
    }
    writers = RetryingWriters(server_proc.target, [redemption_job(r) for r in requests.values()], threads=8)
    writers.start()

    # SIGKILL while writes are still arriving: the last acknowledgements are microseconds old.
    wait_for(lambda: writers.acked_count() >= 1000, 90, "1,000 acknowledged redemptions")
    redis_proc.kill()
    acked_at_kill = writers.snapshot()
    assert len(acked_at_kill) >= 1000
    down = health.wait_for(NOT_SERVING)
    redis_proc.restart()  # replays the AOF
    health.wait_for(SERVING, after=down)
    writers.join()  # the writes the kill interrupted are retried with their request ids
    assert not writers.failures
    assert set(writers.acked) == set(requests)

    with AllocatorClient(server_proc.target, timeout=RPC_TIMEOUT) as client:
        listed = {r.request_id: r for r in all_redemptions(client)}
        assert set(listed) == set(requests)  # every one, and no extra
        for rid, first in acked_at_kill.items():
            got = listed[rid]
            assert got == first.redemption, rid  # the very record acknowledged before the kill
        for rid, request in requests.items():
            assert (listed[rid].merchant_id, listed[rid].points) == (request.merchant_id, request.points)
        stored = check_redemption_tables(raw_redis)
        assert len(stored) == len(requests)

    # The request ids survived too: replaying every request returns its first answer and adds nothing.
    replays = RetryingWriters(server_proc.target, [redemption_job(r) for r in requests.values()], threads=8)
    replays.start().join()
    assert not replays.failures
    for rid, again in replays.acked.items():
        assert again.replayed, rid
        assert again.redemption == writers.acked[rid].redemption, rid
    assert int(raw_redis.get(KEYS.redemptions_generation()) or 0) == len(requests)
