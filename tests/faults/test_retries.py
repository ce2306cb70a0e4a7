"""Client retries: the documented gRPC retry policy of AllocatorClient, and why retrying is safe.

Every write carries a request id, so a retry — by gRPC's retry policy or by the caller — of a write that
may or may not have landed is applied at most once, however many copies race each other.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import redis

from allocator_client import SERVICE_NAME, AllocatorClient, AllocatorError
from allocator_client.client import CHANNEL_OPTIONS
from tests.faults.conftest import (
    KEYS,
    NOT_SERVING,
    ROOT,
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
from tests.integration.helpers import eligibility, redemption
from trafficalloc.v1 import allocator_pb2 as pb


def retry_policy() -> dict[str, object]:
    options = dict(CHANNEL_OPTIONS)
    assert options["grpc.enable_retries"] == 1
    config = json.loads(options["grpc.service_config"])
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": SERVICE_NAME}]  # every method of the service
    return dict(method["retryPolicy"])


def test_client_channel_carries_a_documented_retry_policy() -> None:
    policy = retry_policy()
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]  # never a status that may mean "applied"
    attempts = policy["maxAttempts"]
    assert isinstance(attempts, int) and 2 <= attempts <= 5  # gRPC caps attempts at 5
    initial, most = (float(str(policy[k]).removesuffix("s")) for k in ("initialBackoff", "maxBackoff"))
    assert 0 < initial <= most
    assert float(str(policy["backoffMultiplier"])) >= 1
    doc = (ROOT / "docs" / "operations.md").read_text()
    section = doc.split("\n## Retry policy\n", 1)[1].split("\n## ", 1)[0]
    assert f"maxAttempts` {attempts}" in section and "UNAVAILABLE" in section


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_retry_policy_resends_unavailable_and_a_later_retry_applies_once(
    redis_proc: RedisProcess, server_proc: ServerProcess, health: HealthRecorder, raw_redis: redis.Redis
) -> None:
    attempts = retry_policy()["maxAttempts"]
    with AllocatorClient(server_proc.target, timeout=RPC_TIMEOUT) as client:
        before = client.record_redemption(redemption("before", "m-0", 100))
        redis_proc.kill()
        down = health.wait_for(NOT_SERVING)
        counted = server_proc.rpc_count("RecordRedemption", "UNAVAILABLE")

        with pytest.raises(AllocatorError) as failed:
            client.record_redemption(redemption("during", "m-1", 100))
        assert failed.value.code == grpc.StatusCode.UNAVAILABLE
        # One call of the caller, `maxAttempts` attempts at the server: gRPC retried it by itself.
        assert server_proc.rpc_count("RecordRedemption", "UNAVAILABLE") - counted == attempts
        assert client.get_rules().programs  # what needs no Redis still answers

        redis_proc.restart()
        health.wait_for(SERVING, after=down)
        first = client.record_redemption(redemption("during", "m-1", 100))  # the caller's own retry
        again = client.record_redemption(redemption("during", "m-1", 100))
        replay = client.record_redemption(redemption("before", "m-0", 100))
    assert not first.replayed and again.replayed and again.redemption == first.redemption
    assert replay.replayed and replay.redemption == before.redemption
    stored = check_redemption_tables(raw_redis)
    assert set(stored) == {"before", "during"}


@pytest.mark.timeout(120)
def test_concurrent_retries_of_one_request_id_count_once(
    server_proc: ServerProcess, raw_redis: redis.Redis
) -> None:
    clients = [AllocatorClient(server_proc.target, timeout=RPC_TIMEOUT) for _ in range(4)]  # 4 channels
    copies = 16
    try:
        for k in range(10):
            request = redemption(f"dup-{k}", f"m-{k}", 100 + k)
            barrier = threading.Barrier(copies)

            def send(
                i: int, request: pb.RecordRedemptionRequest = request, barrier: threading.Barrier = barrier
            ) -> pb.RecordRedemptionResponse:
                barrier.wait()
                return clients[i % len(clients)].record_redemption(request)

            with ThreadPoolExecutor(copies) as pool:
                answers = list(pool.map(send, range(copies)))
            assert len({a.redemption.redemption_id for a in answers}) == 1, request.request_id
            assert [a.replayed for a in answers].count(False) == 1, request.request_id

        batch = eligibility("dup-e", "f-1", "f-2", "f-3")
        barrier = threading.Barrier(copies)

        def send_batch(i: int) -> pb.SetEligibilityResponse:
            barrier.wait()
            return clients[i % len(clients)].set_eligibility(batch)

        with ThreadPoolExecutor(copies) as pool:
            batch_answers = list(pool.map(send_batch, range(copies)))
        assert [a.replayed for a in batch_answers].count(False) == 1
        assert {a.updated for a in batch_answers} == {3}

        # The same request id with other content is refused, and changes nothing.
        with pytest.raises(AllocatorError) as conflict:
            clients[0].record_redemption(redemption("dup-0", "m-0", 999))
        assert conflict.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert len(all_redemptions(clients[0])) == 10
    finally:
        for c in clients:
            c.close()
    assert len(check_redemption_tables(raw_redis)) == 10  # generation 10: each id counted once
    assert int(raw_redis.get(KEYS.eligibility_generation()) or 0) == 1


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_concurrent_retries_through_a_redis_restart_count_once(
    redis_proc: RedisProcess, server_proc: ServerProcess, health: HealthRecorder, raw_redis: redis.Redis
) -> None:
    requests = [redemption(f"storm-{k}", f"m-{k}", 100 + k) for k in range(150)]
    copies = 4  # adjacent in the queue, so the 4 writers send the copies of one id at the same time
    jobs = [redemption_job(r) for r in requests for _ in range(copies)]
    writers = RetryingWriters(server_proc.target, jobs, threads=copies).start()
    wait_for(lambda: writers.acked_count() >= 30, 30, "30 acknowledged request ids")
    redis_proc.kill()
    down = health.wait_for(NOT_SERVING)
    wait_for(lambda: writers.transient_count() >= 8, 15, "writers meeting the outage")
    redis_proc.restart()
    health.wait_for(SERVING, after=down)
    writers.join()

    assert not writers.failures
    assert len(writers.responses) == len(jobs)
    stored = check_redemption_tables(raw_redis)  # one redemption per request id, generation 150
    assert set(stored) == {r.request_id for r in requests}
    for rid, answer in writers.responses:
        assert answer.redemption == stored[rid], rid  # every copy got the one stored redemption
    fresh = [rid for rid, answer in writers.responses if not answer.replayed]
    # At most one copy applied it (none, when the applying call lost its answer with the connection).
    assert len(fresh) == len(set(fresh))
