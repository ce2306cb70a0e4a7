"""The serving lines of a plan: who may be shown on each supply node, and how much.

A line is one merchant's planned impressions on one node, paid by one redemption ("p:<redemption id>")
or free daily promotion ("f:<merchant id>"). Its field name is the same in every plan of the date, so
delivered counts carry over when a re-plan swaps in. Built from a stored plan's arrays, lazily per node.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from allocator.domain import I64
from allocator.plan_codec import PlanView

NO_LIMIT = -1  # budget limit of lines without a points promise (free lines)


@dataclass(frozen=True)
class NodeLines:
    """Lines of one node; arrays are aligned, one entry per line."""

    node: int
    fields: list[str]
    merchants: list[str]
    redemptions: list[str]  # "" for free lines
    cap: I64  # impressions the plan allows on the node (including what a re-plan found delivered)
    budget_limit: I64  # paid: the day's points due in millipoints; free: NO_LIMIT
    unit_cost: I64  # millipoints one impression spends from the budget (the node's price per mille)
    node_limit: int  # impressions the node may carry in all (its published capacity)

    @property
    def size(self) -> int:
        return len(self.fields)

    def index(self) -> dict[str, int]:
        return {f: i for i, f in enumerate(self.fields)}


class PlanLines:
    """Per-node serving lines of one plan (plans are immutable, so this never goes stale)."""

    def __init__(self, plan_id: str, view: PlanView) -> None:
        self.plan_id = plan_id
        self.view = view
        self._nodes: dict[int, NodeLines] = {}
        self._lock = threading.Lock()

    def _get(self, name: str, default: np.ndarray) -> np.ndarray:
        return self.view.s.arrays.get(name, default)

    @cached_property
    def _paid(self) -> tuple[np.ndarray, np.ndarray]:
        return _by_node(self.view.s.paid_node, self.view.s.node_capacity.size)

    @cached_property
    def _free(self) -> tuple[np.ndarray, np.ndarray]:
        return _by_node(self.view.s.free_node, self.view.s.node_capacity.size)

    @cached_property
    def node_limit(self) -> I64:
        s = self.view.s
        return np.asarray(self._get("node_limit", s.node_capacity), dtype=np.int64)

    @cached_property
    def demand_budget(self) -> I64:
        """Millipoints each paid demand may spend on its day (its points due on the day x 1000)."""
        s = self.view.s
        return np.asarray(self._get("demand_budget", s.demand_due), dtype=np.int64) * 1000

    def node(self, date_ordinal: int, hour: int, channel: int, region: str) -> int | None:
        return self.view._node_index.get((date_ordinal, hour, channel, region))

    def merchant_lines(self, merchant_id: str, day: int) -> list[tuple[int, int, str, str, int]]:
        """(channel, hour, region, line field, cap) of every line of the merchant on the day."""
        s, view = self.view.s, self.view
        regions = s.regions.tolist()
        out: list[tuple[int, int, str, str, int]] = []
        paid_base = self._get("paid_base", np.zeros(s.paid_node.size, dtype=np.int64))
        for d in view.demands_on(merchant_id, day):
            arcs = view.paid_arcs_of(d)
            for a in arcs.tolist():
                cap = int(s.paid_impressions[a] + paid_base[a])
                n = int(s.paid_node[a])
                if cap > 0:
                    out.append(
                        (
                            int(s.node_channel[n]),
                            int(s.node_hour[n]),
                            regions[int(s.node_region[n])],
                            f"p:{s.demand_redemption[d]}",
                            cap,
                        )
                    )
        free_base = self._get("free_base", np.zeros(s.free_node.size, dtype=np.int64))
        entries = set(view._free_of.get(merchant_id, []))
        if entries:
            for a in np.flatnonzero(np.isin(s.free_merchant, list(entries))).tolist():
                n = int(s.free_node[a])
                cap = int(s.free_impressions[a] + free_base[a])
                if int(s.node_date[n]) == day and cap > 0:
                    out.append(
                        (
                            int(s.node_channel[n]),
                            int(s.node_hour[n]),
                            regions[int(s.node_region[n])],
                            f"f:{merchant_id}",
                            cap,
                        )
                    )
        held = self.held.get(merchant_id, [])  # a re-plan: lines shown before it that it gave nothing more
        if held:
            have = {(c, h, r, f) for c, h, r, f, _ in out}
            out += [line for line in held if line[:4] not in have]
        return out

    @cached_property
    def held(self) -> dict[str, list[tuple[int, int, str, str, int]]]:
        """Per merchant, (channel, hour, region, line field, count) of every line a re-plan found shown
        before it (empty for a plan that is not a re-plan)."""
        s = self.view.s
        out: dict[str, list[tuple[int, int, str, str, int]]] = {}
        if "held_field" not in s.arrays:
            return out
        for c, h, r, f, m, x in zip(
            s.held_channel.tolist(),
            s.held_hour.tolist(),
            s.held_region.tolist(),
            s.held_field.tolist(),
            s.held_merchant.tolist(),
            s.held_count.tolist(),
            strict=True,
        ):
            out.setdefault(m, []).append((c, h, r, f, x))
        return out

    def lines(self, node: int) -> NodeLines:
        found = self._nodes.get(node)
        if found is None:
            found = self._build(node)
            with self._lock:
                self._nodes[node] = found
        return found

    def _build(self, node: int) -> NodeLines:
        s = self.view.s
        order, bounds = self._paid
        p = order[bounds[node] : bounds[node + 1]]
        paid_base = self._get("paid_base", np.zeros(s.paid_node.size, dtype=np.int64))
        p_cap = (s.paid_impressions[p] + paid_base[p]).astype(np.int64)
        keep = p_cap > 0
        p, p_cap = p[keep], p_cap[keep]
        demands = s.paid_demand[p]
        p_rids = s.demand_redemption[demands].tolist()
        p_merchants = s.demand_merchant[demands].tolist()

        forder, fbounds = self._free
        f = forder[fbounds[node] : fbounds[node + 1]]
        free_base = self._get("free_base", np.zeros(s.free_node.size, dtype=np.int64))
        f_cap = (s.free_impressions[f] + free_base[f]).astype(np.int64)
        keep = f_cap > 0
        f, f_cap = f[keep], f_cap[keep]
        f_merchants = s.free_merchant_ids[s.free_merchant[f]].tolist()

        price = int(s.node_price[node])
        return NodeLines(
            node=node,
            fields=[f"p:{r}" for r in p_rids] + [f"f:{m}" for m in f_merchants],
            merchants=p_merchants + f_merchants,
            redemptions=p_rids + [""] * len(f_merchants),
            cap=np.concatenate([p_cap, f_cap]).astype(np.int64),
            budget_limit=np.concatenate(
                [self.demand_budget[demands], np.full(f.size, NO_LIMIT, dtype=np.int64)]
            ),
            unit_cost=np.concatenate(
                [np.full(p.size, price, dtype=np.int64), np.ones(f.size, dtype=np.int64)]
            ),
            node_limit=int(self.node_limit[node]),
        )


def _by_node(node_of: np.ndarray, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Arc indices grouped by node: the arcs of node i are order[bounds[i]:bounds[i + 1]]."""
    order = np.argsort(node_of, kind="stable")
    return order, np.searchsorted(node_of[order], np.arange(nodes + 1))
