"""Domain types: what the service stores and what the optimiser reads and returns.

Frozen dataclasses and numpy arrays only; nothing here imports gRPC or Redis. Enum numbers match the
API's (trafficalloc.v1) so conversion at the edge is a plain int cast.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
F64 = npt.NDArray[np.float64]

MAX_REDEMPTION_POINTS = 10**12  # the most points one redemption may carry (the API's limit)


class Channel(IntEnum):
    HOMEPAGE_CARD = 1
    PAYMENT_SUCCESS = 2
    SEARCH_RECOMMENDATION = 3


class Program(IntEnum):
    STAR_PLAN = 1
    LUOMA_PLAN = 2


class PlanStatus(IntEnum):
    OPTIMAL = 1  # all paid points delivered, free pool divided exactly
    PARTIAL = 2  # optimal, but some paid points cannot be carried by the supply
    TIME_LIMIT = 3  # free-pool fairness stopped early by the time limit; the plan is valid
    FAILED = 4  # the solver produced nothing usable (numeric range); nothing allocated


# ---- stored records (inputs) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SupplyNode:
    """An aggregated supply node: one hour window of one channel in one region on one date."""

    date: dt.date
    hour: int  # 0..23
    channel: Channel
    region: str
    capacity: int  # impressions, >= 0
    price: int  # points per thousand impressions, > 0 (defaults already resolved from the rules)


@dataclass(frozen=True, slots=True)
class Redemption:
    """Points a merchant spent for exposure over a flight of dates."""

    redemption_id: str
    merchant_id: str
    program: Program
    points: int  # > 0, for the whole flight
    channels: tuple[Channel, ...]
    flight_start: dt.date
    flight_end: dt.date  # inclusive
    regions: tuple[str, ...]
    quality: tuple[tuple[Channel, float], ...] = ()  # missing channels score 1.0
    active: bool = True

    def quality_of(self, channel: Channel) -> float:
        for c, q in self.quality:
            if c == channel:
                return q
        return 1.0


@dataclass(frozen=True, slots=True)
class Eligibility:
    """A small merchant's eligibility for free daily promotion."""

    merchant_id: str
    weight: float  # > 0
    regions: tuple[str, ...]
    valid_from: dt.date
    valid_to: dt.date  # inclusive
    channels: tuple[Channel, ...] = ()  # empty: every channel with a reserved share


@dataclass(frozen=True)
class Rules:
    """Program rules and channel configuration (loaded from a file, never constants in code)."""

    program_channels: Mapping[Program, frozenset[Channel]]
    default_price: Mapping[Channel, int]  # points per mille for nodes published without a price
    free_share: Mapping[Channel, float]  # share of each node's capacity reserved for daily promotion
    free_quota_per_weight: int  # most free impressions per day for a merchant of weight 1


@dataclass(frozen=True)
class SolveParams:
    """Knobs of the solve; part of a plan's fingerprint."""

    kappa: float = 1.2  # representativeness: x[d,s] <= ceil(kappa * share of s in d's supply * d)
    value_scale: int = 100  # cost units per quality-weighted impression (integer costs)
    under_delivery_penalty: int = 10_000_000  # cost per undelivered point; dominates any value
    spread_penalty: int = 10_000  # extra cost per point above a representativeness cap (soft caps)
    time_limit_s: float = 60.0


@dataclass(frozen=True)
class ProblemInputs:
    """Everything one solve reads, already filtered to the planned dates.

    redemptions: active redemptions whose flight overlaps the dates; eligibility: entries valid on at
    least one date. The Problem's demand d is redemptions[d]; its free merchant f is eligibility[f].
    """

    dates: tuple[dt.date, ...]
    nodes: tuple[SupplyNode, ...]
    redemptions: tuple[Redemption, ...]
    eligibility: tuple[Eligibility, ...]
    rules: Rules


# ---- solver arrays -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """The optimisation problem as arrays (S nodes, D paid demands, E paid arcs, F free merchants)."""

    node_capacity: I64  # (S,) impressions
    node_price: I64  # (S,) points per mille, > 0
    node_channel: I8  # (S,) Channel values
    node_free_reserved: I64  # (S,) impressions reserved for daily promotion
    demand_points: I64  # (D,) points due within the planned dates
    demand_program: I8  # (D,) Program values
    arc_demand: I32  # (E,) paid arc tail: demand index
    arc_node: I32  # (E,) paid arc head: node index
    arc_quality: F64  # (E,) quality of the demand on the node's channel
    free_weight: F64  # (F,)
    free_cap: I64  # (F,) most free impressions of the entry (its day's quota)
    free_arc_merchant: I32  # (G,)
    free_arc_node: I32  # (G,)
    # Demand d pays for redemption demand_source[d] on day demand_day[d] (a date ordinal): a flight over
    # several planned dates is one demand per day, carrying that day's due points. None: demand d is
    # redemption d on every planned date (hand-made problems in tests).
    demand_source: I32 | None = None
    demand_day: I32 | None = None
    # Free entry f is eligibility free_source[f] on day free_day[f]: the daily quota and fairness are per
    # day. None: entry f is eligibility f over every planned date (hand-made problems in tests).
    free_source: I32 | None = None
    free_day: I32 | None = None

    def source_of_demands(self) -> I32:
        if self.demand_source is None:
            return np.arange(self.demand_points.size, dtype=np.int32)
        return self.demand_source

    def source_of_free(self) -> I32:
        if self.free_source is None:
            return np.arange(self.free_weight.size, dtype=np.int32)
        return self.free_source


@dataclass(frozen=True)
class Plan:
    """A solved allocation: paid arcs in points and impressions, free arcs in impressions."""

    status: PlanStatus
    status_detail: str
    paid_demand: I32  # (P,)
    paid_node: I32  # (P,)
    paid_points: I64  # (P,) points consumed
    paid_impressions: I64  # (P,) floor(points * 1000 / price)
    free_merchant: I32  # (Q,)
    free_node: I32  # (Q,)
    free_impressions: I64  # (Q,)
    demand_delivered: I64  # (D,) points
    demand_under: I64  # (D,) points
    free_level: float  # lowest free impressions per unit weight (the max-min level)
    value: float  # quality-weighted paid impressions
    penalty: float  # under-delivery penalty in cost units
    objective: float  # the min-cost flow's optimal cost
    build_seconds: float = 0.0
    solve_seconds: float = 0.0
    extras: Mapping[str, float] = field(default_factory=dict)
    # Shadow prices of each node's paid capacity (None: not computed): the value, in quality-weighted
    # impressions, that one more thousand impressions of paid capacity would add; and whether one more
    # unit would reduce paid under-delivery instead.
    node_shadow_value_per_mille: F64 | None = None
    node_relieves_under: npt.NDArray[np.bool_] | None = None
    node_warm_price: I64 | None = None  # PaidDuals.value_cost: what a warm re-solve starts from
