"""A solved plan as one binary blob (numpy .npz, no pickle) and its decoded, query-ready form.

Plans are immutable and content-addressed, so a decoded PlanView can be cached in memory forever
under its id: no invalidation is ever needed.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from allocator.domain import F64, I8, I32, I64, Plan, Problem, ProblemInputs
from allocator.problem import node_paid_points

FORMAT_VERSION = 5


@dataclass(frozen=True)
class StoredPlan:
    """Everything the queries need, with ids and node labels resolved."""

    arrays: dict[str, np.ndarray]

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise AttributeError(name) from None


def build_stored_plan(inputs: ProblemInputs, problem: Problem, plan: Plan) -> StoredPlan:
    regions = sorted({n.region for n in inputs.nodes})
    region_index = {r: i for i, r in enumerate(regions)}
    reds, eligs, nodes = inputs.redemptions, inputs.eligibility, inputs.nodes
    source = problem.source_of_demands().tolist()
    free_source = problem.source_of_free().tolist()
    if problem.demand_day is None:  # one demand over all dates: attribute it to the first
        day = np.full(len(source), inputs.dates[0].toordinal(), dtype=np.int32)
    else:
        day = problem.demand_day
    arrays: dict[str, np.ndarray] = {
        "format": np.array([FORMAT_VERSION], dtype=np.int32),
        "regions": np.array(regions, dtype=str),
        "node_date": np.array([n.date.toordinal() for n in nodes], dtype=np.int32),
        "node_hour": np.array([n.hour for n in nodes], dtype=np.int8),
        "node_channel": np.array([int(n.channel) for n in nodes], dtype=np.int8),
        "node_region": np.array([region_index[n.region] for n in nodes], dtype=np.int32),
        "node_capacity": problem.node_capacity,
        "node_price": problem.node_price,
        "node_paidcap": node_paid_points(problem),
        "demand_redemption": np.array([reds[i].redemption_id for i in source], dtype=str).reshape(-1),
        "demand_merchant": np.array([reds[i].merchant_id for i in source], dtype=str).reshape(-1),
        "demand_program": problem.demand_program,
        "demand_day": day,
        "demand_due": problem.demand_points,
        "demand_delivered": plan.demand_delivered,
        "demand_under": plan.demand_under,
        "paid_demand": plan.paid_demand,
        "paid_node": plan.paid_node,
        "paid_points": plan.paid_points,
        "paid_impressions": plan.paid_impressions,
        "free_merchant_ids": np.array([eligs[i].merchant_id for i in free_source], dtype=str).reshape(-1),
        "free_weight": problem.free_weight,
        "free_merchant": plan.free_merchant,
        "free_node": plan.free_node,
        "free_impressions": plan.free_impressions,
        "free_has_arcs": np.bincount(problem.free_arc_merchant, minlength=problem.free_weight.size) > 0,
        "node_shadow_value_per_mille": (
            plan.node_shadow_value_per_mille
            if plan.node_shadow_value_per_mille is not None
            else np.zeros(len(nodes), dtype=np.float64)
        ),
        "node_relieves_under": (
            plan.node_relieves_under
            if plan.node_relieves_under is not None
            else np.zeros(len(nodes), dtype=bool)
        ),
    }
    # a warm start's prices (plans stored before this array have none: the per-mille values serve then)
    if plan.node_warm_price is not None:
        arrays["node_warm_price"] = plan.node_warm_price
    return StoredPlan(arrays)


def encode_plan(stored: StoredPlan) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **stored.arrays)
    return buf.getvalue()


def decode_plan(data: bytes) -> StoredPlan:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return StoredPlan({k: npz[k] for k in npz.files})


@dataclass(frozen=True)
class Cell:
    channel: int
    hour: int
    region: str
    impressions: int
    points: int
    redemption_id: str


@dataclass(frozen=True)
class MerchantDay:
    paid: list[Cell]
    free: list[Cell]
    points_due: int
    points_delivered: int


@dataclass(frozen=True)
class NodeEntry:
    merchant_id: str
    redemption_id: str
    impressions: int
    points: int
    free: bool


class PlanView:
    """Indexes over a StoredPlan, built once, answering merchant and node queries."""

    def __init__(self, stored: StoredPlan) -> None:
        self.s = stored

    @cached_property
    def _demands_of(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for d, m in enumerate(self.s.demand_merchant.tolist()):
            out.setdefault(m, []).append(d)
        return out

    @cached_property
    def _free_of(self) -> dict[str, list[int]]:
        """Free entries (one per merchant and day) of each merchant."""
        out: dict[str, list[int]] = {}
        for f, m in enumerate(self.s.free_merchant_ids.tolist()):
            out.setdefault(m, []).append(f)
        return out

    @cached_property
    def _paid_by_demand(self) -> tuple[I64, I64]:
        order = np.argsort(self.s.paid_demand, kind="stable")
        return order, np.searchsorted(self.s.paid_demand[order], np.arange(len(self.s.demand_merchant) + 1))

    @cached_property
    def _free_by_merchant(self) -> tuple[I64, I64]:
        order = np.argsort(self.s.free_merchant, kind="stable")
        return order, np.searchsorted(
            self.s.free_merchant[order], np.arange(len(self.s.free_merchant_ids) + 1)
        )

    @cached_property
    def _node_index(self) -> dict[tuple[int, int, int, str], int]:
        regions = self.s.regions.tolist()
        return {
            (int(d), int(h), int(c), regions[r]): i
            for i, (d, h, c, r) in enumerate(
                zip(self.s.node_date, self.s.node_hour, self.s.node_channel, self.s.node_region, strict=True)
            )
        }

    def demands_on(self, merchant_id: str, day: int) -> list[int]:
        """The merchant's paid demands (one per redemption) of a day (a date ordinal)."""
        return [d for d in self._demands_of.get(merchant_id, []) if int(self.s.demand_day[d]) == day]

    def paid_arcs_of(self, d: int) -> np.ndarray:
        """Indices of the plan's paid arcs of demand d."""
        order, starts = self._paid_by_demand
        return order[starts[d] : starts[d + 1]]

    def has_merchant(self, merchant_id: str) -> bool:
        return merchant_id in self._demands_of or merchant_id in self._free_of

    def node(self, date: dt.date, hour: int, channel: int, region: str) -> int | None:
        return self._node_index.get((date.toordinal(), hour, channel, region))

    def merchant_day(self, merchant_id: str, date: dt.date) -> MerchantDay:
        """The merchant's paid demands of that day (one per redemption) and its free cells."""
        day = date.toordinal()
        paid: list[Cell] = []
        due = delivered = 0
        order, starts = self._paid_by_demand
        for d in self._demands_of.get(merchant_id, []):
            if int(self.s.demand_day[d]) != day:
                continue
            due += int(self.s.demand_due[d])
            delivered += int(self.s.demand_delivered[d])
            idx = order[starts[d] : starts[d + 1]]
            rid = str(self.s.demand_redemption[d])
            paid += self._cells(
                self.s.paid_node[idx], self.s.paid_impressions[idx], self.s.paid_points[idx], rid
            )
        free: list[Cell] = []
        forder, fstarts = self._free_by_merchant
        for f in self._free_of.get(merchant_id, []):
            idx = forder[fstarts[f] : fstarts[f + 1]]
            idx = idx[self.s.node_date[self.s.free_node[idx]] == day]
            zeros = np.zeros(len(idx), dtype=np.int64)
            free += self._cells(self.s.free_node[idx], self.s.free_impressions[idx], zeros, "")

        def key(c: Cell) -> tuple[int, int, str, str]:
            return (c.channel, c.hour, c.region, c.redemption_id)

        return MerchantDay(sorted(paid, key=key), sorted(free, key=key), due, delivered)

    def node_entries(self, node: int) -> list[NodeEntry]:
        """Everyone on a node, largest first (ties by merchant id)."""
        s = self.s
        paid = np.flatnonzero(s.paid_node == node)
        free = np.flatnonzero(s.free_node == node)
        entries = [
            NodeEntry(
                str(s.demand_merchant[s.paid_demand[i]]),
                str(s.demand_redemption[s.paid_demand[i]]),
                int(s.paid_impressions[i]),
                int(s.paid_points[i]),
                False,
            )
            for i in paid
        ]
        entries += [
            NodeEntry(str(s.free_merchant_ids[s.free_merchant[i]]), "", int(s.free_impressions[i]), 0, True)
            for i in free
        ]
        return sorted(
            (e for e in entries if e.impressions > 0 or e.points > 0),
            key=lambda e: (-e.impressions, e.merchant_id, e.redemption_id),
        )

    def node_totals(self) -> tuple[I64, I64]:
        """Paid and free impressions of every node."""
        n = self.s.node_capacity.size
        paid = np.bincount(self.s.paid_node, weights=self.s.paid_impressions, minlength=n).astype(np.int64)
        free = np.bincount(self.s.free_node, weights=self.s.free_impressions, minlength=n).astype(np.int64)
        return paid, free

    def free_shares(self) -> list[tuple[str, float, int]]:
        """(merchant, weight, free impressions) of every merchant with eligible free supply, by merchant."""
        per_entry = np.bincount(
            self.s.free_merchant, weights=self.s.free_impressions, minlength=self.s.free_merchant_ids.size
        )
        totals: dict[str, list[float]] = {}
        for m, w, x, ok in zip(
            self.s.free_merchant_ids.tolist(),
            self.s.free_weight.tolist(),
            per_entry.tolist(),
            self.s.free_has_arcs.tolist(),
            strict=True,
        ):
            if ok:
                entry = totals.setdefault(m, [w, 0.0])
                entry[1] += x
        return [(m, w, int(x)) for m, (w, x) in sorted(totals.items())]

    def _cells(self, nodes: I32, impressions: I64, points: I64, rid: str) -> list[Cell]:
        """Cells of the given arcs with anything on them; the columns are read with one take each (a
        merchant portal asks for a merchant at a time, on the same replicas that serve the hot path)."""
        keep = (impressions > 0) | (points > 0)
        nodes = nodes[keep]
        regions = self.s.regions.tolist()
        return [
            Cell(channel, hour, regions[region], shown, spent, rid)
            for channel, hour, region, shown, spent in zip(
                self.s.node_channel[nodes].tolist(),
                self.s.node_hour[nodes].tolist(),
                self.s.node_region[nodes].tolist(),
                impressions[keep].tolist(),
                points[keep].tolist(),
                strict=True,
            )
        ]


__all__ = ["F64", "I8", "MerchantDay", "NodeEntry", "PlanView", "StoredPlan", "build_stored_plan"]
