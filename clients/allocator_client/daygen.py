"""A realistic, reproducible day of inputs for demos, load tests and benchmarks.

Supply follows a diurnal curve (lunch and evening peaks, quiet nights) with regional skew and
channel sizes (payment success largest); paid demand is sized to 85–95 % of the paid supply in points,
so the plan is tight but mostly deliverable. Pure Python ``random`` with a seed: same inputs, same day.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias

from trafficalloc.v1 import allocator_pb2 as pb

if TYPE_CHECKING:
    from allocator_client.scenario import Scenario

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_REGIONS", "DEFAULT_SHARES", "generate_day"]

ChannelV: TypeAlias = pb.Channel.ValueType
ProgramV: TypeAlias = pb.Program.ValueType
HOME, PAY, SEARCH = pb.CHANNEL_HOMEPAGE_CARD, pb.CHANNEL_PAYMENT_SUCCESS, pb.CHANNEL_SEARCH_RECOMMENDATION
CHANNELS = (HOME, PAY, SEARCH)
STAR, LUOMA = pb.PROGRAM_STAR_PLAN, pb.PROGRAM_LUOMA_PLAN
DEFAULT_REGIONS = ("north", "south", "east", "west", "central", "northeast", "southwest", "northwest")
DEFAULT_SHARES: dict[ChannelV, float] = {HOME: 0.10, PAY: 0.15, SEARCH: 0.10}
# Used only when no rules are given; the server's GetRules is the source of truth.
_FALLBACK_PROGRAMS: dict[ProgramV, tuple[ChannelV, ...]] = {STAR: CHANNELS, LUOMA: (HOME, PAY)}
# Peak impressions of one region-hour, and base prices in points per mille per channel (the shipped
# default rules' prices, used for nodes published with price 0 when no rules are given).
_PEAK_IMPRESSIONS: dict[ChannelV, int] = {HOME: 1_200_000, PAY: 2_000_000, SEARCH: 500_000}
_BASE_PRICE: dict[ChannelV, int] = {HOME: 60, PAY: 40, SEARCH: 80}
_REGION_WEIGHT = {
    "east": 1.5,
    "south": 1.3,
    "north": 1.1,
    "central": 1.0,
    "southwest": 0.8,
    "northeast": 0.7,
    "west": 0.6,
    "northwest": 0.45,
}
Rules = pb.GetRulesResponse | Mapping[int, float] | None
# A generated day holds at most this many merchants of each kind (the 1M-merchant benchmark's scale; far
# more only exhausts memory)
MAX_MERCHANTS = 1_000_000
# Eligibility windows reach this many days before and after the generated date (flights: 3 each way).
_DAYS_BEFORE, _DAYS_AFTER = 10, 20


def diurnal(hour: int) -> float:
    """Relative traffic of an hour window: quiet night, morning bump, lunch and evening peaks (max ~1)."""
    t = hour + 0.5

    def bump(centre: float, width: float) -> float:
        return math.exp(-0.5 * ((t - centre) / width) ** 2)

    return (
        0.07 + 0.25 * bump(8.5, 1.5) + 0.8 * bump(12.0, 1.2) + 0.3 * bump(16.0, 2.0) + 0.95 * bump(20.5, 1.6)
    )


RuleTables = tuple[dict[ChannelV, float], dict[ChannelV, int], dict[ProgramV, tuple[ChannelV, ...]]]


def _rule_tables(rules: Rules) -> RuleTables:
    """Reserved shares, default prices and program channels from GetRules, or the defaults."""
    prices = dict(_BASE_PRICE)
    if isinstance(rules, pb.GetRulesResponse):
        shares = {c.channel: c.daily_promotion_share for c in rules.channels}
        prices.update(
            {
                c.channel: c.default_price_points_per_mille
                for c in rules.channels
                if c.default_price_points_per_mille
            }
        )
        programs = {p.program: tuple(p.channels) for p in rules.programs if p.channels}
        return shares, prices, programs or dict(_FALLBACK_PROGRAMS)
    if rules is None:
        return dict(DEFAULT_SHARES), prices, dict(_FALLBACK_PROGRAMS)
    return {pb.Channel.ValueType(c): share for c, share in rules.items()}, prices, dict(_FALLBACK_PROGRAMS)


def _check_inputs(day: dt.date, merchants: int, free_merchants: int, regions: tuple[str, ...]) -> None:
    """Refuse, with a ValueError naming the input, what would make no day or crash the generator: no
    region (no supply to balance demand against), a repeated or empty region (duplicate supply nodes the
    server refuses), negative counts, and a date whose eligibility windows leave the calendar."""
    if not regions or not all(r.strip() for r in regions):
        raise ValueError("give at least one region, none of them empty")
    repeated = sorted({r for r in regions if regions.count(r) > 1})
    if repeated:
        raise ValueError(f"regions must not repeat: {', '.join(repeated)}")
    if not (0 <= merchants <= MAX_MERCHANTS and 0 <= free_merchants <= MAX_MERCHANTS):
        raise ValueError(
            f"merchant counts must be within 0..{MAX_MERCHANTS:,}, "
            f"got {merchants} paid and {free_merchants} free"
        )
    first = dt.date.min + dt.timedelta(days=_DAYS_BEFORE)
    last = dt.date.max - dt.timedelta(days=_DAYS_AFTER)
    if not first <= day <= last:
        raise ValueError(
            f"date {day.isoformat()}: the generated flights and eligibility windows run from "
            f"{_DAYS_BEFORE} days before to {_DAYS_AFTER} days after it, so it must be within "
            f"{first.isoformat()}..{last.isoformat()}"
        )


def _pick(rng: random.Random, items: Sequence[str], weights: Sequence[float], k: int) -> list[str]:
    """k distinct items, drawn with the given weights."""
    pool, w, chosen = list(items), list(weights), []
    for _ in range(min(k, len(pool))):
        index = rng.choices(range(len(pool)), weights=w)[0]
        chosen.append(pool.pop(index))
        w.pop(index)
    return chosen


def _balance(
    sizes: list[float],
    requests: list[pb.RecordRedemptionRequest],
    supply: Mapping[tuple[ChannelV, str], float],
) -> list[float]:
    """Rescale demand sizes so that splitting each over its (channel, region) cells in proportion to
    their paid supply loads every cell about equally.

    That proportional split is itself a feasible plan when the total is below the supply, so the day
    stays deliverable however the random picks crowded a popular region or channel.
    """
    cells = [[(c, r) for c in request.channels for r in request.regions] for request in requests]
    totals = [sum(supply[k] for k in keys) for keys in cells]
    sizes = list(sizes)
    if not sizes or not sum(supply.values()):  # no paid merchant, or no paid supply: nothing to balance
        return sizes
    for _ in range(10):
        load = dict.fromkeys(supply, 0.0)
        for size, keys, total in zip(sizes, cells, totals, strict=True):
            for key in keys:
                load[key] += size * supply[key] / total
        mean = sum(load.values()) / sum(supply.values())
        ratio = {key: load[key] / (supply[key] * mean) if supply[key] else 1.0 for key in supply}
        for i, (keys, total) in enumerate(zip(cells, totals, strict=True)):
            sizes[i] /= sum(supply[k] * ratio[k] for k in keys) / total
    return sizes


def generate_day(
    date: str | dt.date,
    *,
    merchants: int = 5000,
    free_merchants: int = 2000,
    regions: Sequence[str] = DEFAULT_REGIONS,
    seed: int = 7,
    rules: Rules = None,
    paid_fill: float | None = None,
) -> Scenario:
    """Generate one day: 3 channels × 24 hours × regions nodes, paid and free merchants.

    ``rules`` is a GetRulesResponse (reserved shares, default prices, program channels) or a
    mapping channel -> reserved share; ``paid_fill`` is paid demand / paid supply in points
    (default: drawn from 0.85–0.95).
    """
    from allocator_client.scenario import Scenario

    day = dt.date.fromisoformat(date) if isinstance(date, str) else date
    regions = tuple(regions)
    _check_inputs(day, merchants, free_merchants, regions)
    rng = random.Random(seed)
    shares, default_prices, program_channels = _rule_tables(rules)
    region_weight = {r: _REGION_WEIGHT.get(r, rng.uniform(0.4, 1.5)) for r in regions}
    weights = [region_weight[r] for r in regions]
    curve = [diurnal(h) for h in range(24)]

    # Supply: capacity = peak × curve × region weight × noise; ~10 % of nodes use the default price.
    nodes: list[pb.SupplyNode] = []
    cell_points: dict[tuple[ChannelV, str], float] = {}
    for channel in CHANNELS:
        for hour in range(24):
            for region in regions:
                noise = rng.uniform(0.9, 1.1)
                capacity = round(_PEAK_IMPRESSIONS[channel] * curve[hour] * region_weight[region] * noise, -2)
                price = round(_BASE_PRICE[channel] * (0.8 + 0.4 * curve[hour]))
                if rng.random() < 0.1:
                    price = 0
                effective = price or default_prices.get(channel, _BASE_PRICE[channel])
                cell = (channel, region)
                cell_points[cell] = (
                    cell_points.get(cell, 0.0) + effective * capacity * (1 - shares.get(channel, 0.0)) / 1000
                )
                nodes.append(
                    pb.SupplyNode(
                        hour=hour,
                        channel=channel,
                        region=region,
                        capacity_impressions=int(capacity),
                        price_points_per_mille=price,
                    )
                )

    # Paid demand: one redemption per merchant (10 % redeem twice), lognormal sizes scaled so the
    # points due on this date reach the target fill of the paid supply.
    drafts: list[tuple[pb.RecordRedemptionRequest, float, int]] = []
    for index in range(merchants):
        merchant_id = f"mch-{index:05d}"
        program: ProgramV = STAR if rng.random() < 0.6 else LUOMA
        for _ in range(2 if rng.random() < 0.1 else 1):
            allowed = program_channels.get(program, CHANNELS)
            count = rng.choices((1, 2, 3), weights=(0.2, 0.35, 0.45))[0]
            channels = sorted(rng.sample(list(allowed), min(count, len(allowed))))
            start = end = day
            if rng.random() < 0.2:  # a multi-day flight covering the date
                start = day - dt.timedelta(days=rng.randint(0, 3))
                end = day + dt.timedelta(days=rng.randint(0 if start < day else 1, 3))
            days = (end - start).days + 1
            request = pb.RecordRedemptionRequest(
                merchant_id=merchant_id,
                program=program,
                channels=channels,
                flight_start_date=start.isoformat(),
                flight_end_date=end.isoformat(),
                regions=_pick(rng, regions, weights, rng.randint(1, 3)),
            )
            if rng.random() < 0.35:
                for channel in channels:
                    score = min(3.0, max(0.3, rng.lognormvariate(0.0, 0.3)))
                    request.quality.add(channel=channel, score=round(score, 3))
            drafts.append((request, rng.lognormvariate(0.0, 1.0), days))

    sizes = _balance([size for _, size, _ in drafts], [request for request, _, _ in drafts], cell_points)
    target = (paid_fill if paid_fill is not None else rng.uniform(0.85, 0.95)) * sum(cell_points.values())
    scale = target / max(sum(sizes), 1e-9)
    redemptions = []
    for (request, _, days), size in zip(drafts, sizes, strict=True):
        request.points = max(1, round(size * scale * days))
        redemptions.append(request)

    # Free pool: small merchants with weights 1–3, valid over a window around the date.
    shared = [c for c in CHANNELS if shares.get(c, 0.0) > 0]
    eligibility = []
    for index in range(free_merchants):
        entry = pb.DailyPromotionEligibility(
            merchant_id=f"free-{index:05d}",
            weight=float(rng.choices((1, 2, 3), weights=(0.6, 0.3, 0.1))[0]),
            regions=_pick(rng, regions, weights, rng.randint(1, 3)),
            valid_from_date=(day - dt.timedelta(days=rng.randint(0, _DAYS_BEFORE))).isoformat(),
            valid_to_date=(day + dt.timedelta(days=rng.randint(0, _DAYS_AFTER))).isoformat(),
        )
        if shared and rng.random() < 0.2:
            entry.channels.extend(sorted(rng.sample(shared, rng.randint(1, min(2, len(shared))))))
        eligibility.append(entry)

    name = f"day-{day.isoformat()}-s{seed}-m{merchants}-f{free_merchants}"
    logger.debug("generated %s: %d nodes, %d redemptions", name, len(nodes), len(redemptions))
    return Scenario(
        name=name, date=day.isoformat(), inventory=nodes, redemptions=redemptions, eligibility=eligibility
    )
