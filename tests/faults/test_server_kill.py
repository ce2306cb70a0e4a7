"""kill -9 of the server mid-ingest and mid-solve: after a restart every acknowledged write is there and
no half-written plan is active."""

from __future__ import annotations

import threading
import time

import grpc
import psutil
import pytest
import redis

from allocator_client import AllocatorClient, AllocatorError
from tests.faults.conftest import (
    KEYS,
    RPC_TIMEOUT,
    Job,
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
def test_kill_server_mid_ingest_keeps_every_acknowledged_write(
    server_proc: ServerProcess, raw_redis: redis.Redis
) -> None:
    with AllocatorClient(server_proc.target, timeout=RPC_TIMEOUT) as client:
        client.publish_inventory(inventory())
    requests: dict[str, pb.RecordRedemptionRequest] = {}
    batches: dict[str, pb.SetEligibilityRequest] = {}
    jobs: list[Job] = []
    for i in range(500):
        if i % 40 == 39:
            batch = eligibility(f"crash-e-{i}", *(f"free-{i}-{k}" for k in range(50)))
            batches[batch.request_id] = batch
            jobs.append(eligibility_job(batch))
        else:
            request = redemption(f"crash-r-{i}", f"m-{i % 89}", 200 + i)
            requests[request.request_id] = request
            jobs.append(redemption_job(request))
    writers = RetryingWriters(server_proc.target, jobs).start()

    wait_for(lambda: writers.acked_count() >= 100, 30, "100 acknowledged writes")
    first_pid = server_proc.pid
    server_proc.kill()
    acked_at_kill = writers.snapshot()
    wait_for(lambda: writers.transient_count() >= 8, 15, "writers meeting the dead server")
    assert writers.acked_count() < len(jobs), "the ingest finished before the kill: nothing was tested"
    server_proc.start()  # same port and Redis: the writers' retries reach the new process
    assert server_proc.pid != first_pid
    writers.join()

    assert not writers.failures
    assert set(writers.acked) == {job.request_id for job in jobs}
    # Every commit landed whole or not at all, and each request id made exactly one redemption — also
    # the ones in flight at the kill, which the retries either replayed or applied.
    stored = check_redemption_tables(raw_redis)
    assert {rid: r.redemption_id for rid, r in stored.items()} == {
        rid: writers.acked[rid].redemption.redemption_id for rid in requests
    }
    with AllocatorClient(server_proc.target, timeout=RPC_TIMEOUT) as client:
        listed = {r.request_id: r for r in all_redemptions(client)}
        assert set(listed) == set(requests)
        for rid, first in acked_at_kill.items():
            if rid in requests:
                assert listed[rid] == first.redemption
        eligible = {e.merchant_id for e in client.iter_eligibility()}
        assert eligible == {e.merchant_id for b in batches.values() for e in b.entries}
        assert int(raw_redis.get(KEYS.eligibility_generation()) or 0) == len(batches)
        assert client.get_inventory(pb.GetInventoryRequest(date=DATE)).total_size == len(inventory().nodes)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_server_mid_solve_keeps_the_previous_plan_active(
    server_proc: ServerProcess, raw_redis: redis.Redis
) -> None:
    with AllocatorClient(server_proc.target, timeout=60) as client:
        scenario = load_day(client)
        previous = client.solve(pb.SolveRequest(start_date=DATE)).plan
        late = client.record_redemption(redemption("late-1", "m-late", 5_000, regions=("r00",))).redemption

        outcome: dict[str, object] = {}

        def solve() -> None:
            try:
                outcome["plan"] = client.solve(pb.SolveRequest(start_date=DATE)).plan
            except AllocatorError as error:
                outcome["error"] = error

        caller = threading.Thread(target=solve)
        caller.start()
        wait_for(lambda: set(plan_keys(raw_redis, "lock")) - {previous.plan_id}, 30, "the new solve's lock")
        (new_id,) = set(plan_keys(raw_redis, "lock")) - {previous.plan_id}
        solver = psutil.Process(server_proc.pid).children()  # the solver child, mid-solve
        assert solver, "the server has no solver process"
        server_proc.kill()
        # the orphaned solver exits by itself (SIGKILL gave the server no chance to stop it)
        _, alive = psutil.wait_procs(solver, timeout=15)
        assert not alive, f"solver processes outlived their killed server: {alive}"
        caller.join(30)
        assert not caller.is_alive()
        error = outcome.get("error")
        assert isinstance(error, AllocatorError), f"Solve did not fail with its server killed: {outcome}"
        assert error.code == grpc.StatusCode.UNAVAILABLE, error

    # Right after the crash, in Redis: the previous plan is active and complete; nothing of the new one
    # but its lock, whose lease (no longer renewed) lapses within 30 s.
    assert raw_redis.hget(KEYS.active_plans(), DATE) == previous.plan_id.encode()
    assert set(plan_keys(raw_redis, "summary")) == {previous.plan_id}
    assert set(plan_keys(raw_redis, "data")) == {previous.plan_id}
    lease_left_ms = raw_redis.pttl(KEYS.plan_lock(new_id))
    assert 0 < lease_left_ms <= 30_000

    server_proc.start()
    with AllocatorClient(server_proc.target, timeout=60) as client:
        active = client.get_active_plan(DATE).plan
        assert active.plan_id == previous.plan_id and active.active
        merchant = scenario.redemptions[0].merchant_id
        got = client.get_merchant_allocation(pb.GetMerchantAllocationRequest(merchant_id=merchant, date=DATE))
        assert got.plan_id == previous.plan_id and got.points_due > 0
        with pytest.raises(AllocatorError) as missing:
            client.get_plan(new_id)
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        stored = check_redemption_tables(raw_redis)
        assert len(stored) == len(scenario.redemptions) + 1
        assert stored["late-1"] == late

        # The next Solve of the same inputs waits out the dead server's lease, then solves that plan.
        started = time.monotonic()
        plan = client.solve(pb.SolveRequest(start_date=DATE), timeout=90).plan
        assert time.monotonic() - started < lease_left_ms / 1000 + 30
        assert plan.plan_id == new_id and not plan.cache_hit
        assert plan.demands == previous.demands + 1
        assert client.get_active_plan(DATE).plan.plan_id == new_id
        assert not plan_keys(raw_redis, "lock")
