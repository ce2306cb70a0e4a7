"""A day solved again after its forecast moved, and a re-plan, start warm from the active plan's node
prices (optimise/paid_warm.py) and reach the optimum a cold solve of the same inputs reaches."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from typing import cast

import numpy as np
import pytest

from allocator.domain import Problem, SupplyNode
from allocator.optimise.paid_warm import WarmPrices
from allocator.plan_codec import decode_plan, encode_plan
from allocator.store.connect import RedisClient
from allocator.store.keys import Keys
from allocator_client import AllocatorClient
from allocator_client.daygen import generate_day
from allocator_client.scenario import apply_scenario
from bench.solve_rpc import moved_inventory
from trafficalloc.v1 import allocator_pb2 as pb

from .conftest import ServerFactory
from .serving_helpers import clock_at

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
    """Plans stored before node_warm_price: the warm start reads their per-mille shadow values, which
    give back the warm price where it is not negative (where the node relieves under-delivery the
    per-mille value is clipped at 0, and so is the price read from it)."""
    caplog.set_level(logging.INFO, logger="allocator")
    scenario = generate_day(DATE, merchants=400, free_merchants=100, seed=5)
    server = servers.start(key_prefix=servers.prefix + "o")
    assert server.app.engine is not None
    planner = server.app.engine.planner
    seen: list[tuple[Sequence[SupplyNode], WarmPrices | None]] = []
    warm_start = planner.warm_start

    def spy(nodes: Sequence[SupplyNode], problem: Problem, value_scale: int) -> WarmPrices | None:
        out = warm_start(nodes, problem, value_scale)
        seen.append((nodes, out))
        return out

    planner.warm_start = spy  # type: ignore[method-assign]
    with AllocatorClient(server.target, timeout=60) as client:
        client.wait_until_serving(30)
        apply_scenario(client, scenario)
        first = client.solve(pb.SolveRequest(start_date=DATE)).plan
        key = Keys(server.settings.key_prefix).plan_data(first.plan_id)
        stored = decode_plan(cast(bytes, redis_client.get(key)))
        exact = stored.arrays.pop("node_warm_price")  # as an older server stored it
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
    # the prices the re-solve started from, node by node, against the exact ones of the first plan
    assert len(seen) == 2 and seen[0][1] is None  # (the first solve had no active plan)
    nodes, prices = seen[1]
    assert prices is not None
    view = planner.view(first.plan_id)
    at = [view.node(n.date, n.hour, int(n.channel), n.region) for n in nodes]
    assert None not in at
    relieves = view.s.node_relieves_under[at]
    want = np.where(relieves, np.maximum(exact[at], 0), exact[at]).astype(np.float64)
    assert np.array_equal(prices.relieves, relieves)
    np.testing.assert_allclose(prices.value, want, rtol=1e-9, atol=1e-6)
    assert bool(np.any(want > 0))  # (real prices, not all zero)


def test_a_replan_starts_warm_from_the_active_plan(
    servers: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="allocator")
    server = servers.start(clock=clock_at(0, day=dt.date.fromisoformat(DATE)))  # Replan refuses past hours
    with AllocatorClient(server.target, timeout=60) as client:
        client.wait_until_serving(20)
        apply_scenario(client, generate_day(DATE, merchants=400, free_merchants=100, seed=6))
        client.solve(pb.SolveRequest(start_date=DATE))
        # from the first hour with nothing delivered yet: the rest of the day is the day the plan was made for
        out = client.replan(pb.ReplanRequest(date=DATE, from_hour=0))
    assert out.plan.active
    rounds = _warm_rounds(caplog, "re-planned")
    assert len(rounds) == 1 and rounds[0] >= 1
