"""Intraday re-planning against the live counts: snapshot, re-solve the rest of the day, swap in.

The counters are per line and plan-independent, so the swap neither loses nor double-counts a delivered
impression: the new plan's caps are what each line had been shown (its base) plus its new impressions,
and a redemption's points due on the day stay the hard cap of its counter in the pick script.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass

import numpy as np

from allocator.domain import SupplyNode
from allocator.errors import FailedPrecondition, NotFound
from allocator.plan_codec import build_stored_plan, encode_plan
from allocator.planner import Planner, summary_pb
from allocator.serving.engine import ServingEngine
from allocator.serving.replan import Delivered, line_bases, replan_problem
from allocator.store.idempotent import Op
from allocator.store.keys import Keys
from allocator.store.serving import ServingStore
from allocator.summary import plan_figures
from allocator.validate import assert_plan_feasible
from trafficalloc.v1 import allocator_pb2 as pb

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplanOutcome:
    response: pb.ReplanResponse


class Replanner:
    def __init__(
        self, planner: Planner, store: ServingStore, engine: ServingEngine, keys: Keys, *, validate: bool
    ) -> None:
        self.planner, self.store, self.engine, self.keys = planner, store, engine, keys
        self._validate = validate

    def from_hour(self, date: dt.date, requested: int | None) -> int:
        """The hour the re-plan starts from, checked against the service's clock whatever the request says.

        Hours already over carry no more picks: a plan that put impressions there would promise delivery
        that cannot happen, and a re-plan of a day that is over would rewrite the plan its reports show.
        Both are refused before anything is read or written. Unset: the current hour (0 for a future day).
        """
        today, hour, _ = self.engine.slot_of(None)
        if date < today:
            raise FailedPrecondition(
                f"{date.isoformat()} is over in the service's time zone; nothing is left to re-plan",
                violations=[("date", "in the past")],
            )
        if date > today:
            return 0 if requested is None else requested
        if requested is None:
            return hour
        if requested < hour:
            raise FailedPrecondition(
                f"hour {requested} of {date.isoformat()} is over in the service's time zone (the current "
                f"hour is {hour}); re-plan from hour {hour} or later",
                violations=[("from_hour", f"before the current hour {hour}")],
            )
        return requested

    def replan(
        self,
        request_id: str,
        digest: str,
        date: dt.date,
        from_hour: int | None,
        time_limit_s: float,
        dry_run: bool,
    ) -> pb.ReplanResponse:
        writer = self.planner.records.writer
        request_key = self.keys.replan_request(request_id)
        prior = writer.previous(request_key, digest)
        if prior is not None:
            out = pb.ReplanResponse.FromString(prior.response)
            out.replayed = True
            return out
        hour = self.from_hour(date, from_hour)
        try:
            previous = self.planner.active_plan_id(date)
        except NotFound as exc:
            raise FailedPrecondition(
                f"{date.isoformat()} has no active plan to re-plan; run Solve first",
                violations=[("date", "no active plan")],
            ) from exc
        start = time.perf_counter()
        raw, inputs = self.planner.current_inputs((date,))
        delivered = self._snapshot(date, inputs.nodes)
        params = dataclasses.replace(
            self.planner.params, time_limit_s=time_limit_s or self.planner.params.time_limit_s
        )
        rp = replan_problem(inputs, date, hour, delivered, params)
        build_s = time.perf_counter() - start
        # the active plan's node prices start the paid tier warm (docs/model.md "Warm re-solves")
        warm = self.planner.warm_start(rp.inputs.nodes, rp.problem, params.value_scale)
        plan = self.planner.solver(rp.problem, params, None, warm)
        plan = dataclasses.replace(plan, build_seconds=build_s)
        if self._validate:
            assert_plan_feasible(rp.inputs, rp.problem, plan)
        stored = build_stored_plan(rp.inputs, rp.problem, plan)
        paid_base, free_base = line_bases(
            rp, delivered, plan.paid_demand, plan.paid_node, plan.free_merchant, plan.free_node
        )
        stored.arrays.update(
            paid_base=paid_base,
            free_base=free_base,
            demand_budget=rp.demand_budget,
            node_limit=rp.node_limit,
            replan_from_hour=np.array([hour], dtype=np.int32),
            **_held(delivered, {r.redemption_id: r.merchant_id for r in inputs.redemptions}),
        )
        plan_id = _replan_id(self.planner.fingerprint(raw, params), previous, hour, delivered)
        figures = plan_figures(rp.problem, plan)
        summary = summary_pb(plan_id, (date,), plan, figures)
        self.planner.plans.save(plan_id, summary.SerializeToString(), encode_plan(stored))
        activate = not dry_run and summary.status != pb.PLAN_STATUS_FAILED
        response = pb.ReplanResponse(
            plan=summary,
            previous_plan_id=previous,
            from_hour=hour,
            delivered_impressions=sum(v.get("_n", 0) for v in delivered.node_lines.values()),
            delivered_points=sum(-(-v // 1000) for f, v in delivered.day_budget.items() if f[:2] == "p:"),
        )
        ops = [Op("HSET", self.keys.active_plans(), date.isoformat(), plan_id)] if activate else []
        result = writer.commit(request_key, digest, response.SerializeToString(), ops)
        if activate:
            self.planner.plans.touch(plan_id)
            self.engine.forget_active(date)
        logger.info(
            "re-planned %s from hour %d: plan %s (was %s), status=%s, %.3fs, "
            "paid warm %d (0 cold, 1 settled, 2 simplex), restricted %d (cold: 1 certified, 2 simplex)",
            date.isoformat(),
            hour,
            plan_id,
            previous,
            summary.status,
            time.perf_counter() - start,
            int(plan.extras.get("paid_warm_rounds", 0)),
            int(plan.extras.get("paid_restricted", 0)),
        )
        out = pb.ReplanResponse.FromString(result.response)
        out.replayed = result.replayed
        if activate:
            out.plan.active = True
        return out

    def _snapshot(self, date: dt.date, nodes: tuple[SupplyNode, ...]) -> Delivered:
        """Every line's count on the date: per node (every node of the day) and over the day."""
        key = date.isoformat()
        ids = sorted({(int(n.channel), n.hour, n.region) for n in nodes if n.date == date})
        counts = self.store.nodes_counts([self.store.node_key(key, c, h, r) for c, h, r in ids])
        budget = self.store.budget(key)
        return Delivered(dict(zip(ids, counts, strict=True)), budget)


def _held(delivered: Delivered, merchant_of: dict[str, str]) -> dict[str, np.ndarray]:
    """Every line's count on every node at the snapshot (what was shown before the re-plan), kept with
    the plan so a merchant's delivery report can show lines the re-plan gave nothing more."""
    rows = [
        (c, h, r, f, x)
        for (c, h, r), lines in sorted(delivered.node_lines.items())
        for f, x in sorted(lines.items())
        if f != "_n" and x > 0
    ]
    return {
        "held_channel": np.array([x[0] for x in rows], dtype=np.int8),
        "held_hour": np.array([x[1] for x in rows], dtype=np.int8),
        "held_region": np.array([x[2] for x in rows], dtype=str).reshape(-1),
        "held_field": np.array([x[3] for x in rows], dtype=str).reshape(-1),
        "held_merchant": np.array(
            [merchant_of.get(x[3][2:], "") if x[3][:2] == "p:" else x[3][2:] for x in rows], dtype=str
        ).reshape(-1),
        "held_count": np.array([x[4] for x in rows], dtype=np.int64),
    }


def _replan_id(base: str, previous: str, hour: int, delivered: Delivered) -> str:
    h = hashlib.sha256(f"replan\x00{base}\x00{previous}\x00{hour}\x00".encode())
    for node in sorted(delivered.node_lines):
        h.update(repr((node, sorted(delivered.node_lines[node].items()))).encode())
    h.update(repr(sorted(delivered.day_budget.items())).encode())
    return "r" + h.hexdigest()[:31]
