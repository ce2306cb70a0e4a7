"""A day solved again after its forecast moved, and a re-plan, start warm from the active plan's node
prices (optimise/paid_warm.py) and reach the optimum a cold solve of the same inputs reaches."""

from __future__ import annotations

import logging
import re
from typing import cast

import pytest

from allocator.plan_codec import decode_plan, encode_plan
from allocator.store.connect import RedisClient
from allocator.store.keys import Keys
from allocator_client import AllocatorClient
from allocator_client.daygen import generate_day
from allocator_client.scenario import apply_scenario
from bench.solve_rpc import moved_inventory
from trafficalloc.v1 import allocator_pb2 as pb

from .conftest import ServerFactory

DATE = "2026-12-09"


def _warm_rounds(caplog: pytest.LogCaptureFixture, what: str) -> list[int]:
    return [
        int(m) for r in caplog.records for m in re.findall(rf"{what}.*paid warm=?\s*(\d+)", r.getMessage())
    ]


def test_a_moved_forecast_is_solved_warm_to_the_cold_optimum(
    servers: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="allocator")
    scenario = generate_day(DATE, merchants=400, free_merchants=100, seed=5)
    moved = moved_inventory(scenario.inventory, 0.05, 1)
    warm_server = servers.start(key_prefix=servers.prefix + "w")
    cold_server = servers.start(key_prefix=servers.prefix + "c")
    with (
        AllocatorClient(warm_server.target, timeout=60) as warm,
        AllocatorClient(cold_server.target, timeout=60) as cold,
    ):
        warm.wait_until_serving(30)
        cold.wait_until_serving(30)
        apply_scenario(warm, scenario)
        first = warm.solve(pb.SolveRequest(start_date=DATE)).plan
        warm.publish_inventory(pb.PublishInventoryRequest(request_id="moved", date=DATE, nodes=moved))
        again = warm.solve(pb.SolveRequest(start_date=DATE)).plan

        apply_scenario(cold, scenario)
        cold.publish_inventory(pb.PublishInventoryRequest(request_id="moved", date=DATE, nodes=moved))
        reference = cold.solve(pb.SolveRequest(start_date=DATE)).plan

    assert again.plan_id != first.plan_id and again.active
    # the first solves (no active plan) ran cold; the re-solve settled warm
    rounds = _warm_rounds(caplog, "solved plan")
    assert rounds[0] == 0 and rounds[2] == 0 and rounds[1] >= 1
    # the same optimum (which demand is short, and so the free pool, may fall otherwise in a tie)
    assert again.status == reference.status
    assert again.objective.total == reference.objective.total
    assert sum(p.points_under_delivered for p in again.programs) == sum(
        p.points_under_delivered for p in reference.programs
    )


def test_a_plan_stored_without_warm_prices_starts_warm_from_its_per_mille_values(
    servers: ServerFactory, redis_client: RedisClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Plans stored before node_warm_price: the warm start reads their per-mille shadow values."""
    caplog.set_level(logging.INFO, logger="allocator")
    scenario = generate_day(DATE, merchants=400, free_merchants=100, seed=5)
    server = servers.start(key_prefix=servers.prefix + "o")
    with AllocatorClient(server.target, timeout=60) as client:
        client.wait_until_serving(30)
        apply_scenario(client, scenario)
        first = client.solve(pb.SolveRequest(start_date=DATE)).plan
        key = Keys(server.settings.key_prefix).plan_data(first.plan_id)
        stored = decode_plan(cast(bytes, redis_client.get(key)))
        assert "node_warm_price" in stored.arrays
        del stored.arrays["node_warm_price"]  # as an older server stored it
        redis_client.set(key, encode_plan(stored), keepttl=True)
        client.publish_inventory(
            pb.PublishInventoryRequest(
                request_id="moved", date=DATE, nodes=moved_inventory(scenario.inventory, 0.05, 1)
            )
        )
        again = client.solve(pb.SolveRequest(start_date=DATE)).plan
    assert again.plan_id != first.plan_id
    rounds = _warm_rounds(caplog, "solved plan")
    assert rounds[0] == 0 and rounds[1] >= 1


def test_a_replan_starts_warm_from_the_active_plan(
    client: AllocatorClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="allocator")
    apply_scenario(client, generate_day(DATE, merchants=400, free_merchants=100, seed=6))
    client.solve(pb.SolveRequest(start_date=DATE))
    # from the first hour with nothing delivered yet: the rest of the day is the day the plan was made for
    out = client.replan(pb.ReplanRequest(date=DATE, from_hour=0))
    assert out.plan.active
    rounds = _warm_rounds(caplog, "re-planned")
    assert len(rounds) == 1 and rounds[0] >= 1
