"""Why a merchant got what it got: eligible supply, saturation, caps, rules and shadow prices.

Pure functions over a decoded plan (PlanView) and the redemption records: eligibility is recomputed from
the records and the plan's node labels, so nothing beyond the plan blob is needed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from allocator.domain import Redemption, Rules
from allocator.optimise.caps import spread_caps
from allocator.plan_codec import PlanView

DELIVERED_IN_FULL = "DELIVERED_IN_FULL"
NO_ELIGIBLE_SUPPLY = "NO_ELIGIBLE_SUPPLY"
SUPPLY_SATURATED = "SUPPLY_SATURATED"
PROGRAM_RULE = "PROGRAM_RULE"
REPRESENTATIVENESS_CAP = "REPRESENTATIVENESS_CAP"


@dataclass(frozen=True)
class RedemptionWhy:
    redemption_id: str
    due: int
    delivered: int
    eligible_nodes: int
    eligible_points: int
    saturated_nodes: int
    reasons: list[tuple[str, str]]

    @property
    def under(self) -> int:
        return max(0, self.due - self.delivered)


@dataclass(frozen=True)
class BindingNode:
    node: int
    paid_capacity_points: int
    merchant_points: int
    shadow_value_per_mille: float
    relieves_under_delivery: bool


@dataclass(frozen=True)
class Explanation:
    redemptions: list[RedemptionWhy]
    binding: list[BindingNode]


def explain(
    view: PlanView,
    merchant_id: str,
    date: dt.date,
    records: dict[str, Redemption],
    rules: Rules,
    kappa: float,
    max_binding: int = 20,
) -> Explanation:
    """Explain every paid demand of the merchant on `date` (records keyed by redemption id)."""
    s = view.s
    day = date.toordinal()
    paidcap = s.node_paidcap
    used = np.bincount(s.paid_node, weights=s.paid_points, minlength=paidcap.size).astype(np.int64)
    saturated = (paidcap > 0) & (used >= paidcap)
    regions = s.regions.tolist()
    region_of = np.array(regions, dtype=object)[s.node_region] if regions else np.array([], dtype=object)
    merchant_points = np.zeros(paidcap.size, dtype=np.int64)
    eligible_any = np.zeros(paidcap.size, dtype=bool)
    whys: list[RedemptionWhy] = []
    for d in view.demands_on(merchant_id, day):
        rid = str(s.demand_redemption[d])
        record = records.get(rid)
        arcs = view.paid_arcs_of(d)
        merchant_points[s.paid_node[arcs]] += s.paid_points[arcs]
        due, delivered = int(s.demand_due[d]), int(s.demand_delivered[d])
        reasons: list[tuple[str, str]] = []
        if record is None:  # expired or deleted record: explain from the plan alone
            eligible = np.zeros(paidcap.size, dtype=bool)
            eligible[s.paid_node[arcs]] = True
        else:
            allowed = set(record.channels) & set(rules.program_channels.get(record.program, frozenset()))
            banned = sorted(c.name for c in set(record.channels) - allowed)
            eligible = (
                (s.node_date == day)
                & np.isin(s.node_channel, [int(c) for c in allowed])
                & np.isin(region_of, list(record.regions))
                & (paidcap > 0)
            )
            if banned:
                rule = f"{', '.join(banned)} may not be bought with {record.program.name} points"
                reasons.append((PROGRAM_RULE, rule))
        eligible_any |= eligible
        n_eligible, points = int(eligible.sum()), sum(paidcap[eligible].tolist())  # no int64 wrap
        n_saturated = int((eligible & saturated).sum())
        reasons.insert(0, _main_reason(date, due, delivered, n_eligible, n_saturated, points))
        capped = _capped_nodes(view, arcs, due, points, kappa)
        if capped:
            spread = (
                f"on {capped} node(s) delivery reached the spread cap (kappa {kappa:g} x the node's share of "
                "the eligible supply); the rest went to other hours, channels or regions"
            )
            reasons.append((REPRESENTATIVENESS_CAP, spread))
        whys.append(RedemptionWhy(rid, due, delivered, n_eligible, points, n_saturated, reasons))
    binding_idx = np.flatnonzero(eligible_any & saturated)
    order = np.lexsort((binding_idx, -s.node_shadow_value_per_mille[binding_idx]))[:max_binding]
    binding = [
        BindingNode(
            int(i),
            int(paidcap[i]),
            int(merchant_points[i]),
            float(s.node_shadow_value_per_mille[i]),
            bool(s.node_relieves_under[i]),
        )
        for i in binding_idx[order]
    ]
    return Explanation(whys, binding)


def _main_reason(
    date: dt.date, due: int, delivered: int, n_eligible: int, n_saturated: int, points: int
) -> tuple[str, str]:
    if delivered >= due:
        return DELIVERED_IN_FULL, f"all {due} points due on {date.isoformat()} are delivered"
    if n_eligible == 0:
        return NO_ELIGIBLE_SUPPLY, "no supply node of the date matches its channels and regions"
    return SUPPLY_SATURATED, (
        f"{due - delivered} of {due} points could not be delivered: {n_saturated} of its {n_eligible} "
        f"eligible nodes are full ({points} points of paid capacity, shared with other redemptions)"
    )


def _capped_nodes(view: PlanView, arcs: np.ndarray, due: int, eligible_points: int, kappa: float) -> int:
    """Nodes where the demand's delivery reached its representativeness cap (below the node's capacity)."""
    if arcs.size == 0 or eligible_points == 0:
        return 0
    pc = view.s.node_paidcap[view.s.paid_node[arcs]]
    cap = spread_caps(
        kappa, np.full(arcs.size, due, np.int64), pc, np.full(arcs.size, eligible_points, object)
    )
    return int(np.sum((view.s.paid_points[arcs] >= cap) & (cap < pc)))


__all__ = ["Explanation", "explain"]
