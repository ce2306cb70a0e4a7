"""A scrape of /metrics shows the counters moving after real calls."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from allocator_client import AllocatorClient, AllocatorError
from tests.integration.conftest import ServerFactory
from tests.integration.helpers import DATE, eligibility, inventory, redemption
from trafficalloc.v1 import allocator_pb2 as pb


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_move_with_calls(servers: ServerFactory) -> None:
    srv = servers.start(metrics_listen="127.0.0.1:0")
    assert srv.app.metrics_port
    with AllocatorClient(srv.target) as c:
        c.wait_until_serving(20)
        c.publish_inventory(inventory())
        c.record_redemption(redemption("r-1", "m-1", 500))
        with pytest.raises(AllocatorError):
            c.record_redemption(redemption("r-bad", "m-2", -1))
        c.set_eligibility(eligibility("e-1", "f-1"))
        plan = c.solve(pb.SolveRequest(start_date=DATE)).plan
        assert c.solve(pb.SolveRequest(start_date=DATE)).plan.cache_hit
        list(c.solve_stream(pb.SolveStreamRequest(start_date=DATE, dry_run=True)))
    m = scrape(srv.app.metrics_port)

    def rpc(method: str, code: str) -> float:
        return m.get(("allocator_rpc_requests_total", (("code", code), ("method", method))), 0.0)

    assert rpc("RecordRedemption", "OK") == 1
    assert rpc("RecordRedemption", "INVALID_ARGUMENT") == 1
    assert rpc("Solve", "OK") == 2 and rpc("SolveStream", "OK") == 1
    assert m[("allocator_plan_cache_total", (("result", "miss"),))] == 1
    assert m[("allocator_plan_cache_total", (("result", "hit"),))] == 2
    for phase in ("build", "paid", "free", "store"):
        assert m[("allocator_solve_phase_seconds_count", (("phase", phase),))] == 1
    assert m[("allocator_rpc_duration_seconds_count", (("method", "Solve"),))] == 2
    for fill in plan.channels:
        key = (
            "allocator_channel_fill_ratio",
            (("channel", pb.Channel.Name(fill.channel)[len("CHANNEL_") :]),),
        )
        assert m[key] == pytest.approx(fill.fill_rate)
    assert m[("allocator_serving", ())] == 1
    assert m[("allocator_degraded_answers_total", ())] == 0
    assert m[("allocator_redis_ping_seconds_count", ())] >= 1


def test_redis_errors_are_counted(servers: ServerFactory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from allocator.store.embedded import EmbeddedRedis

    own = EmbeddedRedis(tmp_path / "redis").start()
    try:
        srv = servers.start(redis_url=own.url, metrics_listen="127.0.0.1:0")
        with AllocatorClient(srv.target, timeout=10) as c:
            c.wait_until_serving(20)
            own.kill()
            with pytest.raises(AllocatorError):
                c.get_redemption(pb.GetRedemptionRequest(redemption_id="rdm-x"))
        m = scrape(srv.app.metrics_port)  # type: ignore[arg-type]
        assert m[("allocator_redis_errors_total", (("kind", "unreachable"),))] >= 1
        assert (
            m.get(("allocator_rpc_requests_total", (("code", "UNAVAILABLE"), ("method", "GetRedemption"))), 0)
            >= 1
        )
    finally:
        own.stop()
