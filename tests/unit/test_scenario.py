"""Scenario files and the generated day: shape, reproducibility, speed, and how tight the demand is."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from allocator_client.scenario import Scenario, apply_scenario, dump_scenario, generate_day, load_scenario
from trafficalloc.v1 import allocator_pb2 as pb

DATE = "2026-12-01"
PRICES = {pb.CHANNEL_HOMEPAGE_CARD: 60, pb.CHANNEL_PAYMENT_SUCCESS: 40, pb.CHANNEL_SEARCH_RECOMMENDATION: 80}
SHARES = {
    pb.CHANNEL_HOMEPAGE_CARD: 0.10,
    pb.CHANNEL_PAYMENT_SUCCESS: 0.15,
    pb.CHANNEL_SEARCH_RECOMMENDATION: 0.10,
}


def _rules() -> pb.GetRulesResponse:
    return pb.GetRulesResponse(
        programs=[
            pb.ProgramRule(program=pb.PROGRAM_STAR_PLAN, channels=list(PRICES)),
            pb.ProgramRule(
                program=pb.PROGRAM_LUOMA_PLAN, channels=[pb.CHANNEL_HOMEPAGE_CARD, pb.CHANNEL_PAYMENT_SUCCESS]
            ),
        ],
        channels=[
            pb.ChannelRule(
                channel=c, default_price_points_per_mille=PRICES[c], daily_promotion_share=SHARES[c]
            )
            for c in PRICES
        ],
    )


def test_generate_day_is_fast_reproducible_and_shaped_like_a_day() -> None:
    started = time.perf_counter()
    day = generate_day(DATE, merchants=5000, free_merchants=2000, rules=_rules())
    assert time.perf_counter() - started < 2.0
    assert day == generate_day(DATE, merchants=5000, free_merchants=2000, rules=_rules())
    assert day != generate_day(DATE, merchants=5000, free_merchants=2000, rules=_rules(), seed=8)

    assert len(day.inventory) == 3 * 24 * 8
    assert len({(n.hour, n.channel, n.region) for n in day.inventory}) == len(day.inventory)
    assert any(n.price_points_per_mille == 0 for n in day.inventory)  # exercises the default price
    assert len({r.merchant_id for r in day.redemptions}) == 5000
    assert len(day.eligibility) == 2000
    assert {e.weight for e in day.eligibility} == {1.0, 2.0, 3.0}

    # Diurnal: the evening peak carries several times the night's traffic, payment success is largest.
    def capacity(channel: int, hours: range) -> int:
        return sum(n.capacity_impressions for n in day.inventory if n.channel == channel and n.hour in hours)

    assert capacity(pb.CHANNEL_PAYMENT_SUCCESS, range(19, 22)) > 5 * capacity(
        pb.CHANNEL_PAYMENT_SUCCESS, range(2, 5)
    )
    assert capacity(pb.CHANNEL_PAYMENT_SUCCESS, range(24)) > capacity(pb.CHANNEL_HOMEPAGE_CARD, range(24))

    luoma = [r for r in day.redemptions if r.program == pb.PROGRAM_LUOMA_PLAN]
    assert 0.3 < len(luoma) / len(day.redemptions) < 0.5
    assert all(pb.CHANNEL_SEARCH_RECOMMENDATION not in r.channels for r in luoma)
    for r in day.redemptions:
        assert r.points > 0 and 1 <= len(r.regions) <= 3 and r.channels
        assert r.flight_start_date <= DATE <= r.flight_end_date
    assert any(r.flight_start_date != r.flight_end_date for r in day.redemptions)
    assert any(r.quality for r in day.redemptions)


def test_paid_demand_is_85_to_95_percent_of_paid_supply_and_fits_every_cell() -> None:
    day = generate_day(DATE, merchants=3000, free_merchants=0, rules=_rules(), seed=3)
    supply: dict[tuple[int, str], float] = {}
    for n in day.inventory:
        price = n.price_points_per_mille or PRICES[n.channel]
        key = (n.channel, n.region)
        supply[key] = supply.get(key, 0.0) + price * n.capacity_impressions * (1 - SHARES[n.channel]) / 1000
    load = dict.fromkeys(supply, 0.0)
    due = 0.0
    for r in day.redemptions:
        days = (
            dt.date.fromisoformat(r.flight_end_date) - dt.date.fromisoformat(r.flight_start_date)
        ).days + 1
        cells = [(c, g) for c in r.channels for g in r.regions]
        total = sum(supply[k] for k in cells)
        due += r.points / days
        for key in cells:
            load[key] += r.points / days * supply[key] / total
    assert 0.84 <= due / sum(supply.values()) <= 0.96
    # Splitting every demand in proportion to supply is a feasible plan: no cell is over-full.
    assert max(load[k] / supply[k] for k in supply) < 1.0


def test_scenario_file_round_trip_uses_proto_names(tmp_path: Path) -> None:
    day = generate_day(DATE, merchants=40, free_merchants=10)
    path = tmp_path / "day.json"
    dump_scenario(day, path)
    text = json.loads(path.read_text())
    assert set(text) == {"name", "date", "inventory", "redemptions", "eligibility"}
    assert "capacity_impressions" in text["inventory"][0]
    assert text["redemptions"][0]["program"].startswith("PROGRAM_")
    assert load_scenario(path) == day


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"date": DATE, "inventory": [{"hour": 1, "channel": "CHANNEL_NOPE"}]}, "inventory[0]"),
        ({"date": DATE, "extra": []}, "unknown scenario keys: extra"),
        ({"inventory": []}, "needs a 'date'"),
        ({"date": DATE, "redemptions": {}}, "'redemptions' must be a list"),
    ],
)
def test_bad_scenario_files_name_the_problem(tmp_path: Path, content: dict[str, Any], message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=re.escape(message)):
        load_scenario(path)


class _RecordingClient:
    """Stands in for AllocatorClient: records the requests apply_scenario sends."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def publish_inventory(self, request: Any, timeout: float | None = None) -> pb.PublishInventoryResponse:
        self.requests.append(request)
        return pb.PublishInventoryResponse(date=request.date, node_count=len(request.nodes))

    def record_redemption(self, request: Any, timeout: float | None = None) -> pb.RecordRedemptionResponse:
        self.requests.append(request)
        return pb.RecordRedemptionResponse()

    def set_eligibility(self, request: Any, timeout: float | None = None) -> pb.SetEligibilityResponse:
        self.requests.append(request)
        return pb.SetEligibilityResponse(updated=len(request.entries))


def test_apply_uses_deterministic_request_ids_and_batches() -> None:
    day = generate_day(DATE, merchants=20, free_merchants=12001)
    day = Scenario(day.name, day.date, day.inventory, day.redemptions[:5], day.eligibility)
    client = _RecordingClient()
    progress: list[tuple[str, int, int]] = []
    counts = apply_scenario(client, day, lambda *a: progress.append(a), workers=3)  # type: ignore[arg-type]
    assert counts["inventory_nodes"] == len(day.inventory)
    assert counts["redemptions"] == 5 and counts["eligibility"] == 12001
    ids = {r.request_id for r in client.requests}
    assert f"{day.name}-inventory" in ids
    assert {f"{day.name}-r-{i}" for i in range(5)} <= ids
    batches = [r for r in client.requests if isinstance(r, pb.SetEligibilityRequest)]
    assert [len(b.entries) for b in batches] == [5000, 5000, 2001]
    assert [b.request_id for b in batches] == [f"{day.name}-e-{i}" for i in range(3)]
    assert ("redemptions", 5, 5) in progress and ("eligibility", 12001, 12001) in progress
    assert day.redemptions[0].request_id == ""  # the scenario itself is not modified
