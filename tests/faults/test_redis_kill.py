"""kill -9 of Redis during ingest, during a solve and during serving: the server rides it out.

Each test owns a redis-server (AOF, appendfsync always) and a server process. Redis is killed with
SIGKILL and restarted on the same port and data directory; the server is never restarted. Health must
go SERVING -> NOT_SERVING -> SERVING, callers must only ever see UNAVAILABLE (never INTERNAL or
UNKNOWN), and everything acknowledged must be there afterwards.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import grpc
import pytest
import redis

from allocator_client import AllocatorClient, AllocatorError
from tests.faults.conftest import (
    KEYS,
    NOT_SERVING,
    RPC_TIMEOUT,
    SERVING,
    HealthRecorder,
    Job,
    RedisProcess,
    RetryingWriters,
    ServerProcess,
    all_redemptions,
    check_redemption_tables,
    eligibility_job,
    load_day,
    plan_keys,
    redemption_job,
    wait_for,
)
from tests.integration.helpers import DATE, eligibility, inventory, redemption
from trafficalloc.v1 import allocator_pb2 as pb


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_redis_during_ingest_loses_nothing_acknowledged(
    redis_proc: RedisProcess, server_proc: ServerProcess, health: HealthRecorder, raw_redis: redis.Redis
) -> None:
    with AllocatorClient(server_proc.target, timeout=RPC_TIMEOUT) as client:
        client.publish_inventory(inventory())
    requests: dict[str, pb.RecordRedemptionRequest] = {}
    batches: dict[str, pb.SetEligibilityRequest] = {}
    jobs: list[Job] = []
    for i in range(600):
        if i % 50 == 49:
            batch = eligibility(f"ingest-e-{i}", f"free-{i}a", f"free-{i}b")
            batches[batch.request_id] = batch
            jobs.append(eligibility_job(batch))
        else:
            request = redemption(f"ingest-r-{i}", f"m-{i % 97}", 100 + i)
            requests[request.request_id] = request
            jobs.append(redemption_job(request))
    writers = RetryingWriters(server_proc.target, jobs).start()

    wait_for(lambda: writers.acked_count() >= 100, 30, "100 acknowledged writes")
    redis_proc.kill()
    acked_before_kill = writers.snapshot()
    down = health.wait_for(NOT_SERVING)
    wait_for(lambda: writers.transient_count() >= 8, 15, "writers meeting the outage")
    assert writers.acked_count() < len(jobs), "the ingest finished before Redis died: nothing was tested"
    redis_proc.restart()
    health.wait_for(SERVING, after=down)
    writers.join()

    assert server_proc.proc is not None and server_proc.proc.poll() is None  # never restarted
    assert not writers.failures  # only UNAVAILABLE / DEADLINE_EXCEEDED, retried with the same id
    assert set(writers.transient) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    assert set(writers.acked) == {job.request_id for job in jobs}
    assert health.seen()[-3:] == [SERVING, NOT_SERVING, SERVING]

    acked = {rid: writers.acked[rid].redemption for rid in requests}
    with AllocatorClient(server_proc.target, timeout=RPC_TIMEOUT) as client:
        listed = {r.redemption_id: r for r in all_redemptions(client)}
        assert set(listed) == {a.redemption_id for a in acked.values()}
        for rid, want in acked.items():
            got = listed[want.redemption_id]
            assert (got.request_id, got.merchant_id, got.points) == (
                rid,
                requests[rid].merchant_id,
                want.points,
            )
        stored = check_redemption_tables(raw_redis)  # every commit whole, each applied once
        assert {rid: r.redemption_id for rid, r in stored.items()} == {
            rid: a.redemption_id for rid, a in acked.items()
        }
        eligible = {e.merchant_id for e in client.iter_eligibility()}
        assert eligible == {e.merchant_id for b in batches.values() for e in b.entries}
        assert int(raw_redis.get(KEYS.eligibility_generation()) or 0) == len(batches)
        # A retry of a write acknowledged before the kill replays its first answer; nothing is re-applied.
        for rid, first in acked_before_kill.items():
            if rid in requests:
                again = client.record_redemption(requests[rid])
                assert again.replayed and again.redemption == first.redemption
        assert int(raw_redis.get(KEYS.redemptions_generation()) or 0) == len(requests)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_redis_during_solve_answers_unavailable_and_the_next_solve_succeeds(
    redis_proc: RedisProcess, server_proc: ServerProcess, health: HealthRecorder, raw_redis: redis.Redis
) -> None:
    with AllocatorClient(server_proc.target, timeout=60) as client:
        scenario = load_day(client)
        outcome: dict[str, object] = {}

        def solve() -> None:
            try:
                outcome["plan"] = client.solve(pb.SolveRequest(start_date=DATE)).plan
            except AllocatorError as error:
                outcome["error"] = error

        caller = threading.Thread(target=solve)
        caller.start()
        # The lock is taken after the inputs are read: from then on the solve computes in memory.
        wait_for(lambda: plan_keys(raw_redis, "lock"), 30, "the solve to take its lock")
        (plan_id,) = plan_keys(raw_redis, "lock")
        redis_proc.kill()
        down = health.wait_for(NOT_SERVING)
        caller.join(60)
        assert not caller.is_alive()

        error = outcome.get("error")
        assert isinstance(error, AllocatorError), f"Solve did not fail with Redis down: {outcome}"
        assert error.code == grpc.StatusCode.UNAVAILABLE, error  # never INTERNAL or UNKNOWN
        assert "Redis" in error.message

        redis_proc.restart()
        health.wait_for(SERVING, after=down)
        assert health.seen()[-3:] == [SERVING, NOT_SERVING, SERVING]
        # Nothing half-written: no summary or data of the plan, no active pointer; the inputs are intact.
        assert plan_id not in plan_keys(raw_redis, "summary")
        assert plan_id not in plan_keys(raw_redis, "data")
        assert raw_redis.hget(KEYS.active_plans(), DATE) is None
        with pytest.raises(AllocatorError) as missing:
            client.get_active_plan(DATE)
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        assert len(check_redemption_tables(raw_redis)) == len(scenario.redemptions)
        # The AOF brought back the solve lock; the server must not wait for its lease to lapse.
        lease_left_s = raw_redis.pttl(KEYS.plan_lock(plan_id)) / 1000

        started = time.monotonic()
        plan = client.solve(pb.SolveRequest(start_date=DATE), timeout=45).plan
        took = time.monotonic() - started
        assert plan.plan_id == plan_id and not plan.cache_hit
        assert plan.status in (pb.PLAN_STATUS_OPTIMAL, pb.PLAN_STATUS_PARTIAL)
        assert plan.demands >= len(scenario.redemptions)
        if lease_left_s > 0:  # the stale lock of this very server was taken over, not waited out
            assert took < lease_left_s, (
                f"the second Solve waited {took:.1f}s for a lock of {lease_left_s:.1f}s"
            )
        assert client.get_active_plan(DATE).plan.plan_id == plan_id
        assert not plan_keys(raw_redis, "lock")
        merchant = scenario.redemptions[0].merchant_id
        got = client.get_merchant_allocation(pb.GetMerchantAllocationRequest(merchant_id=merchant, date=DATE))
        assert got.plan_id == plan_id and got.points_due > 0
    assert server_proc.proc is not None and server_proc.proc.poll() is None


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill_redis_during_serving_read_rpcs_until_pick_merchants_exists(
    redis_proc: RedisProcess, server_proc: ServerProcess, health: HealthRecorder
) -> None:
    """ "During serving", for now: a stream of GetActivePlan and GetMerchantAllocation calls.

    Replace or extend with PickMerchants once the serving RPC exists.
    """
    merchants = [f"m-{i}" for i in range(20)]
    with AllocatorClient(server_proc.target, timeout=RPC_TIMEOUT) as client:
        client.publish_inventory(inventory())
        for i, m in enumerate(merchants):
            client.record_redemption(redemption(f"serve-r-{i}", m, 500 + 50 * i))
        client.set_eligibility(eligibility("serve-e-1", "f-1", "f-2"))
        plan = client.solve(pb.SolveRequest(start_date=DATE)).plan
        baseline = {
            m: client.get_merchant_allocation(pb.GetMerchantAllocationRequest(merchant_id=m, date=DATE))
            for m in [*merchants, "f-1"]
        }
    assert all(b.plan_id == plan.plan_id for b in baseline.values())

    stop = threading.Event()
    lock = threading.Lock()
    answers: list[tuple[float, str]] = []  # (time, status code name) of every read
    wrong: list[str] = []

    def read(worker: int) -> None:
        names = list(baseline)
        with AllocatorClient(server_proc.target, timeout=RPC_TIMEOUT) as c:
            i = worker
            while not stop.is_set():
                m = names[i % len(names)]
                i += 1
                try:
                    active = c.get_active_plan(DATE).plan
                    got = c.get_merchant_allocation(pb.GetMerchantAllocationRequest(merchant_id=m, date=DATE))
                    code = "OK"
                    if active.plan_id != plan.plan_id or got != baseline[m]:
                        with lock:
                            wrong.append(f"{m}: {active.plan_id} {got}")
                except AllocatorError as error:
                    code = error.code.name
                with lock:
                    answers.append((time.monotonic(), code))

    def count(code: str, since: float = 0.0) -> int:
        with lock:
            return sum(1 for t, c in answers if c == code and t >= since)

    readers = [threading.Thread(target=read, args=(w,), daemon=True) for w in range(3)]
    for r in readers:
        r.start()
    try:
        wait_for(lambda: count("OK") >= 50, 20, "reads before the kill")
        redis_proc.kill()
        killed = time.monotonic()
        down = health.wait_for(NOT_SERVING)
        wait_for(lambda: count("UNAVAILABLE") >= 3, 15, "reads failing while Redis is down")
        redis_proc.restart()
        health.wait_for(SERVING, after=down)
        back = time.monotonic()
        wait_for(lambda: count("OK", since=back) >= 50, 15, "reads after Redis is back")
    finally:
        stop.set()
        for r in readers:
            r.join(15)

    codes = Counter(c for _, c in answers)
    assert set(codes) == {"OK", "UNAVAILABLE"}, codes  # never INTERNAL, UNKNOWN or a wrong answer
    assert not wrong, wrong[:3]
    assert count("OK", since=killed) >= 50
    assert health.seen()[-3:] == [SERVING, NOT_SERVING, SERVING]
    assert server_proc.proc is not None and server_proc.proc.poll() is None
