"""PickMerchants when Redis goes away: bounded degraded answers from memory, writes UNAVAILABLE, health
shows it, and when Redis is back the counts are reconciled without a restart, each impression once."""

from __future__ import annotations

import pathlib
import time

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from allocator.server import SERVICE_NAME, SERVING_HEALTH_NAME
from allocator.store.embedded import EmbeddedRedis
from allocator_client import AllocatorClient, AllocatorError
from tests.integration.conftest import ServerFactory
from tests.integration.helpers import redemption
from tests.integration.serving_helpers import node_counts, pick, solved_day

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def health(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


@pytest.mark.slow
def test_redis_outage_degrades_then_reconciles_each_impression_once(
    servers: ServerFactory, tmp_path: pathlib.Path
) -> None:
    # appendfsync always: the counts before the kill -9 must survive it (with everysec Redis may put off
    # its AOF write while an fsync runs, and still answer; docs/operations.md)
    own = EmbeddedRedis(tmp_path / "own-redis", appendfsync="always").start()
    try:
        srv = servers.start(redis_url=own.url, serving_degraded_max_s=6.0)
        prefix = srv.settings.key_prefix
        with AllocatorClient(srv.target, timeout=10) as c:
            c.wait_until_serving(20)
            solved_day(c)
            before = [m for _ in range(5) for m in pick(c, 10, 30, count=4).merchants]
            assert before and all(
                not pick(c, 10, 30, count=1, request_id=f"warm-{i}").degraded for i in range(2)
            )
            before += [
                m for i in range(2) for m in pick(c, 10, 30, count=1, request_id=f"warm-{i}").merchants
            ]
            wait_for(lambda: health(srv.target, SERVING_HEALTH_NAME) == SERVING)

            own.kill()  # kill -9
            wait_for(lambda: health(srv.target, SERVICE_NAME) == NOT_SERVING)
            assert health(srv.target, SERVING_HEALTH_NAME) == SERVING  # the hot path still answers
            during = []
            first = pick(c, 10, 30, count=4, request_id="outage-1")
            assert first.degraded and first.merchants and not first.replayed
            during += first.merchants
            for _ in range(10):
                r = pick(c, 10, 30, count=4)
                assert r.degraded
                during += r.merchants
            retry = pick(c, 10, 30, count=4, request_id="outage-1")
            assert retry.replayed and list(retry.merchants) == list(first.merchants)
            with pytest.raises(AllocatorError) as err:  # writes need Redis
                c.record_redemption(redemption("during", "m-x", 100), timeout=10)
            assert err.value.code == grpc.StatusCode.UNAVAILABLE
            assert srv.app.metrics is not None
            assert srv.app.metrics.degraded_answers._value.get() == 11  # the replay is not a new answer

            time.sleep(6.5)  # past the bound: no more answers from memory
            with pytest.raises(AllocatorError) as err:
                pick(c, 10, 30, count=4)
            assert err.value.code == grpc.StatusCode.UNAVAILABLE
            wait_for(lambda: health(srv.target, SERVING_HEALTH_NAME) == NOT_SERVING)

            own.start()  # same port and data directory
            wait_for(lambda: health(srv.target, SERVICE_NAME) == SERVING)
            wait_for(lambda: srv.app.engine is not None and srv.app.engine.pending() == 0)
            r = redis.Redis.from_url(own.url)
            counts = node_counts(r, prefix, 10)
            assert counts["_n"] == len(before) + len(during)  # counted once, none lost
            again = pick(c, 10, 30, count=4, request_id="outage-1")  # a retry after recovery
            assert again.replayed and list(again.merchants) == list(first.merchants)
            assert node_counts(r, prefix, 10)["_n"] == counts["_n"]
            after = pick(c, 10, 30, count=4)
            assert not after.degraded and after.merchants
            assert node_counts(r, prefix, 10)["_n"] == counts["_n"] + len(after.merchants)
            assert health(srv.target, SERVING_HEALTH_NAME) == SERVING
            r.close()
    finally:
        own.stop()
