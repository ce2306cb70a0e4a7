"""Solve orchestration: read inputs from Redis, fingerprint them, solve once, cache, activate.

An unchanged problem is never solved twice: the plan id is the sha256 of the inputs, the rules and
the parameters, and a stored summary is a cache hit. Concurrent identical solves run one solve: a lock
per plan id inside the process, and a Redis lock across replicas (the others wait for the summary).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from google.protobuf import timestamp_pb2
from redis.exceptions import RedisError

from allocator import events, memory
from allocator.convert import inputs_from_records
from allocator.domain import (
    Channel,
    Plan,
    Problem,
    ProblemInputs,
    Program,
    Rules,
    SolveParams,
    SupplyNode,
)
from allocator.errors import FailedPrecondition, NotFound, Unavailable
from allocator.events import Progress, ProgressSink, SolveObserver
from allocator.optimise import solve
from allocator.optimise.availability import hypothetical_nodes, most_points_for_flight, residual_room
from allocator.optimise.paid_warm import WarmPrices
from allocator.plan_codec import FORMAT_VERSION, PlanView, build_stored_plan, decode_plan, encode_plan
from allocator.problem import build_problem
from allocator.rules import rules_to_json
from allocator.store.plans import PlanStore
from allocator.store.records import RecordStore
from allocator.summary import PlanFigures, plan_figures
from allocator.validate import assert_plan_feasible
from trafficalloc.v1 import allocator_pb2 as pb

logger = logging.getLogger(__name__)


class Solver(Protocol):
    """optimise.solve, or the same run in the solver child (optimise/worker.py)."""

    def __call__(
        self,
        problem: Problem,
        params: SolveParams,
        on_phase: Callable[[str], None] | None = None,
        warm: WarmPrices | None = None,
    ) -> Plan: ...


@dataclass(frozen=True)
class SolveOutcome:
    summary: pb.PlanSummary
    cache_hit: bool


@dataclass(frozen=True)
class RawInputs:
    """Inputs of a solve as stored: the fingerprint needs only the inventories and the generations of
    the redemption and eligibility tables; the records themselves are read on a cache miss."""

    dates: tuple[dt.date, ...]
    inventories: tuple[bytes, ...]
    redemptions_gen: int
    eligibility_gen: int
    redemptions: dict[bytes, bytes] | None = None
    eligibility: dict[bytes, bytes] | None = None


class Planner:
    def __init__(
        self,
        records: RecordStore,
        plans: PlanStore,
        rules: Rules,
        params: SolveParams,
        *,
        lock_ttl_ms: int = 30_000,
        validate: bool = False,
        view_cache_size: int = 4,
        observers: Sequence[SolveObserver] = (),
        solver: Solver = solve,
    ) -> None:
        self.records, self.plans, self.rules, self.params = records, plans, rules, params
        self._lock_ttl_ms = lock_ttl_ms
        self._validate = validate
        self._guard = threading.Lock()
        self._view_load = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._views: OrderedDict[str, PlanView] = OrderedDict()
        self._view_cache_size = view_cache_size
        self.observers = list(observers)
        self.solver = solver  # optimise.solve, or the same run in a child process (optimise/worker.py)

    # ---- solve -------------------------------------------------------------------------------

    def solve(
        self,
        dates: tuple[dt.date, ...],
        *,
        dry_run: bool,
        time_limit_s: float,
        progress: ProgressSink | None = None,
    ) -> SolveOutcome:
        """Solve (or find in the cache) the plan of `dates`; activate it unless dry_run or FAILED."""
        report = _Reporter(progress)
        report.emit(events.READING_INPUTS)
        params = dataclasses.replace(self.params, time_limit_s=time_limit_s or self.params.time_limit_s)
        plan_id, outcome, _ = self._obtain(self._read_inputs(dates), params, report)
        for observer in self.observers:
            observer.cache(outcome.cache_hit)
        if not dry_run and outcome.summary.status != pb.PLAN_STATUS_FAILED:
            # a failed solve allocates nothing: the date keeps the plan it had
            self.plans.set_active(plan_id, _dates_of(outcome.summary))
            self.plans.touch(plan_id)
        summary = _with_flag(self.summary(plan_id), cache_hit=outcome.cache_hit)
        report.counts(summary.supply_nodes, summary.demands, summary.arcs)
        report.emit(events.DONE, "cache hit" if outcome.cache_hit else "solved")
        return SolveOutcome(summary=summary, cache_hit=outcome.cache_hit)

    def _obtain(
        self, raw: RawInputs, params: SolveParams, report: _Reporter, *, store_failed: bool = True
    ) -> tuple[str, SolveOutcome, RawInputs]:
        """The plan of these inputs: from the cache, or solved once (in this process and across replicas).

        Returns the inputs the plan id stands for: `raw`, or a newer snapshot if a write landed between
        reading the generations and reading the records.
        """
        plan_id = self.fingerprint(raw, params)
        outcome = self._cached(plan_id)
        if outcome is not None:
            return plan_id, outcome, raw
        with self._local_lock(plan_id):
            outcome = self._cached(plan_id)
            if outcome is not None:
                return plan_id, outcome, raw
            full = raw if raw.redemptions is not None else self._with_records(raw)
            if (full.redemptions_gen, full.eligibility_gen) != (raw.redemptions_gen, raw.eligibility_gen):
                plan_id = self.fingerprint(full, params)  # plan what was read
                outcome = self._cached(plan_id)
                if outcome is not None:
                    return plan_id, outcome, full
            return plan_id, self._solve_once(plan_id, full, params, report, store_failed), full

    def fingerprint(self, raw: RawInputs, params: SolveParams) -> str:
        """sha256 of the format, rules, parameters, each date's inventory and the table generations.

        Generations move with every write, so the same records written again give a new plan id (one
        extra solve); in exchange a cache hit reads two counters instead of every record.
        """
        h = hashlib.sha256()
        h.update(f"allocator-plan/{FORMAT_VERSION}\x00".encode())  # a new blob format never hits old plans
        h.update(rules_to_json(self.rules).encode())
        h.update(json.dumps(dataclasses.asdict(params), sort_keys=True).encode())
        for date, inv in zip(raw.dates, raw.inventories, strict=True):
            h.update(date.isoformat().encode())
            h.update(hashlib.sha256(inv).digest())
        h.update(f"\x01{raw.redemptions_gen}\x01{raw.eligibility_gen}".encode())
        return h.hexdigest()[:32]

    def _read_inputs(self, dates: tuple[dt.date, ...]) -> RawInputs:
        inventories = []
        missing = []
        for d in dates:
            raw = self.records.inventory_bytes(d.isoformat())
            if raw is None:
                missing.append(d.isoformat())
            inventories.append(raw or b"")
        if missing:
            raise FailedPrecondition(
                f"no inventory published for {', '.join(missing)}; publish it before solving",
                violations=[("inventory", f"missing for {d}") for d in missing],
            )
        red_gen, elig_gen = self.records.generations()
        return RawInputs(dates, tuple(inventories), red_gen, elig_gen)

    def _with_records(self, raw: RawInputs) -> RawInputs:
        red_gen, redemptions = self.records.redemptions_snapshot()
        elig_gen, eligibility = self.records.eligibility_snapshot()
        return dataclasses.replace(
            raw,
            redemptions_gen=red_gen,
            eligibility_gen=elig_gen,
            redemptions=redemptions,
            eligibility=eligibility,
        )

    def _cached(self, plan_id: str) -> SolveOutcome | None:
        raw = self.plans.summary(plan_id)
        return None if raw is None else SolveOutcome(pb.PlanSummary.FromString(raw), cache_hit=True)

    def _solve_once(
        self, plan_id: str, raw: RawInputs, params: SolveParams, report: _Reporter, store_failed: bool = True
    ) -> SolveOutcome:
        token = self.plans.try_lock(plan_id, self._lock_ttl_ms)
        while token is None:  # another replica solves the same inputs: wait for its summary
            deadline = time.monotonic() + self._lock_ttl_ms / 1000
            report.emit(events.READING_INPUTS, "another replica is solving the same inputs; waiting")
            while self.plans.locked(plan_id) and time.monotonic() < deadline:
                time.sleep(0.05)
            cached = self._cached(plan_id)
            if cached is not None:
                return cached
            token = self.plans.try_lock(plan_id, self._lock_ttl_ms)
        try:
            cached = self._cached(plan_id)
            if cached is not None:
                return cached
            with self.plans.lease(plan_id, token, self._lock_ttl_ms):
                summary, data = self._compute(plan_id, raw, params, report)
            if summary.status == pb.PLAN_STATUS_FAILED and not store_failed:
                return SolveOutcome(summary, cache_hit=False)  # a refusal leaves the store as it was
            self.plans.save(plan_id, summary.SerializeToString(), data)
            return SolveOutcome(summary, cache_hit=False)
        finally:
            self.plans.unlock(plan_id, token)

    def _compute(
        self, plan_id: str, raw: RawInputs, params: SolveParams, report: _Reporter
    ) -> tuple[pb.PlanSummary, bytes]:
        report.emit(events.BUILDING)
        inputs = self.problem_inputs(raw)
        problem = build_problem(inputs, params)
        report.counts(problem.node_capacity.size, problem.demand_points.size, problem.arc_demand.size)
        build_s = report.elapsed()
        plan = self.solver(
            problem, params, report.emit, self.warm_start(inputs.nodes, problem, params.value_scale)
        )
        solved_s = report.elapsed()
        report.emit(events.STORING)
        if self._validate:
            assert_plan_feasible(inputs, problem, plan)
        stored = build_stored_plan(inputs, problem, plan)
        figures = plan_figures(problem, plan)
        summary = summary_pb(plan_id, raw.dates, plan, figures)
        logger.info(
            "solved plan %s: status=%s demands=%d nodes=%d arcs=%d solve=%.3fs "
            "paid warm=%d (0 cold, 1 settled, 2 simplex) restricted=%d (cold: 1 certified, 2 simplex)",
            plan_id,
            plan.status.name,
            figures.demands,
            figures.nodes,
            figures.arcs,
            plan.solve_seconds,
            int(plan.extras.get("paid_warm_rounds", 0)),
            int(plan.extras.get("paid_restricted", 0)),
        )
        data = encode_plan(stored)
        phases = {
            "build": build_s,
            "paid": plan.extras.get("paid_seconds", 0.0),
            "free": plan.extras.get("free_seconds", 0.0),
            "store": report.elapsed() - solved_s,
        }
        for observer in self.observers:
            observer.solved(plan, figures, phases)
        return summary, data

    def problem_inputs(self, raw: RawInputs) -> ProblemInputs:
        if raw.redemptions is None or raw.eligibility is None:
            raw = self._with_records(raw)
        assert raw.redemptions is not None and raw.eligibility is not None
        return inputs_from_records(
            raw.dates,
            [pb.GetInventoryResponse.FromString(inv) for inv in raw.inventories],
            (pb.Redemption.FromString(v) for _, v in sorted(raw.redemptions.items())),
            (pb.DailyPromotionEligibility.FromString(v) for _, v in sorted(raw.eligibility.items())),
            self.rules,
        )

    def current_inputs(self, dates: tuple[dt.date, ...]) -> tuple[RawInputs, ProblemInputs]:
        """The stored inputs of `dates` now, records included, and the problem inputs they make."""
        raw = self._with_records(self._read_inputs(dates))
        return raw, self.problem_inputs(raw)

    # ---- availability --------------------------------------------------------------------------

    def availability(
        self, dates: tuple[dt.date, ...], program: Program, channels: set[Channel], regions: set[str]
    ) -> tuple[str, list[int], int]:
        """Room per day, and the most points, for a hypothetical redemption over `dates`.

        Computed on the plan of the current inputs (a cache hit, or solved now as a dry run), on its
        residual network: exact, and it never counts capacity a committed redemption needs.
        """
        raw = self._with_records(self._read_inputs(dates))
        plan_id, outcome, raw = self._obtain(raw, self.params, _Reporter(None), store_failed=False)
        if outcome.summary.status == pb.PLAN_STATUS_FAILED:
            raise FailedPrecondition(
                f"the plan of these dates failed ({outcome.summary.status_detail})",
                violations=[("plan", f"the plan of the current inputs ({plan_id}) is FAILED")],
            )
        inputs = self.problem_inputs(raw)
        problem = build_problem(inputs, self.params)
        chosen = hypothetical_nodes(inputs, problem, program, channels, regions)
        view = self.view(plan_id)
        rooms = residual_room(problem, view.s.paid_demand, view.s.paid_node, view.s.paid_points, chosen)
        return plan_id, rooms, most_points_for_flight(rooms)

    # ---- plans -------------------------------------------------------------------------------

    def summary(self, plan_id: str) -> pb.PlanSummary:
        raw = self.plans.summary(plan_id)
        if raw is None:
            raise NotFound(f"plan {plan_id!r} not found (unknown or expired)", resource=("plan", plan_id))
        summary = pb.PlanSummary.FromString(raw)
        dates = _dates_of(summary)
        active = self.plans.active(dates)
        return _with_flag(summary, active=all(a == plan_id for a in active))

    def activate(self, plan_id: str, request_id: str) -> tuple[pb.PlanSummary, list[str]]:
        summary = self.summary(plan_id)  # NOT_FOUND for unknown plans, before any write
        if summary.status == pb.PLAN_STATUS_FAILED:
            raise FailedPrecondition(
                f"plan {plan_id} FAILED ({summary.status_detail}) and cannot be activated",
                violations=[("plan_id", "names a FAILED plan")],
            )
        dates = _dates_of(summary)
        previous = self.plans.active(dates)
        response = json.dumps(previous).encode()
        digest = hashlib.sha256(plan_id.encode()).hexdigest()
        result = self.plans.activate(request_id, digest, plan_id, dates, response)
        self.plans.touch(plan_id)
        return self.summary(plan_id), json.loads(result.response)

    def warm_start(
        self, nodes: Sequence[SupplyNode], problem: Problem, value_scale: int
    ) -> WarmPrices | None:
        """The active plans' shadow prices on these nodes (nodes[i] is the problem's node i), to re-solve
        the paid tier warm: the same optimum, found faster (optimise/paid_warm.py). None when the active
        plans of the nodes' dates hold fewer than half of the nodes (a warm start would not pay), or a plan
        cannot be read as one (logged: the solve runs cold); Redis errors are raised as everywhere."""
        dates = sorted({n.date for n in nodes})
        value = np.zeros(len(nodes), dtype=np.float64)
        relieves = np.zeros(len(nodes), dtype=bool)
        matched = 0
        for date, plan_id in zip(dates, self.plans.active([d.isoformat() for d in dates]), strict=True):
            if not plan_id:
                continue
            try:
                view = self.view(plan_id)
                at = [
                    (i, view.node(n.date, n.hour, int(n.channel), n.region))
                    for i, n in enumerate(nodes)
                    if n.date == date
                ]
                mine = np.array([i for i, j in at if j is not None], dtype=np.int64)
                theirs = np.array([j for _, j in at if j is not None], dtype=np.int64)
                exact = view.s.arrays.get("node_warm_price")
                if exact is not None:
                    value[mine] = exact[theirs]
                else:  # a plan stored before node_warm_price: per mille, clipped at 0 where it relieves
                    per_mille = view.s.node_shadow_value_per_mille[theirs]
                    value[mine] = per_mille * value_scale / np.maximum(problem.node_price[mine], 1)
                relieves[mine] = view.s.node_relieves_under[theirs]
            except NotFound:  # expired since: that date starts cold
                continue
            except RedisError:
                raise
            except Exception:  # an optimisation only: a plan that cannot serve as one is not an error
                logger.exception("active plan %s gives no warm start; solving cold", plan_id)
                return None
            matched += mine.size
        if matched * 2 < max(1, len(nodes)):
            return None
        return WarmPrices(value, relieves)

    def active_plan_id(self, date: dt.date) -> str:
        (plan_id,) = self.plans.active([date.isoformat()])
        if not plan_id:
            raise NotFound(
                f"no active plan for {date.isoformat()}; run Solve", resource=("plan", date.isoformat())
            )
        return plan_id

    def view(self, plan_id: str) -> PlanView:
        with self._guard:
            view = self._views.get(plan_id)
            if view is not None:
                self._views.move_to_end(plan_id)
                return view
        with self._view_load:  # one load at a time: concurrent callers of a new plan wait, then hit
            with self._guard:
                view = self._views.get(plan_id)
            if view is not None:
                return view
            data = self.plans.data(plan_id)
            if data is None:
                raise NotFound(f"plan {plan_id!r} not found (unknown or expired)", resource=("plan", plan_id))
            view = PlanView(decode_plan(data))
            memory.trim_when_freed(view)  # its arrays go back to the system once dropped (allocator.memory)
            with self._guard:
                self._views[plan_id] = view
                while len(self._views) > self._view_cache_size:
                    self._views.popitem(last=False)
            return view

    def _local_lock(self, plan_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(plan_id, threading.Lock())


class _Reporter:
    """Progress of one Solve call: phase events with elapsed time and the problem's size."""

    def __init__(self, sink: ProgressSink | None) -> None:
        self._sink = sink
        self._start = time.perf_counter()
        self._sizes = (0, 0, 0)

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def counts(self, nodes: int, demands: int, arcs: int) -> None:
        self._sizes = (int(nodes), int(demands), int(arcs))

    def emit(self, phase: str, detail: str = "") -> None:
        if self._sink is not None:
            nodes, demands, arcs = self._sizes
            self._sink(Progress(phase, self.elapsed(), nodes, demands, arcs, detail))


def _dates_of(summary: pb.PlanSummary) -> list[str]:
    start, end = dt.date.fromisoformat(summary.start_date), dt.date.fromisoformat(summary.end_date)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _with_flag(summary: pb.PlanSummary, **flags: bool) -> pb.PlanSummary:
    out = pb.PlanSummary()
    out.CopyFrom(summary)
    for name, value in flags.items():
        setattr(out, name, value)
    return out


def summary_pb(plan_id: str, dates: tuple[dt.date, ...], plan: Plan, figures: PlanFigures) -> pb.PlanSummary:
    created = timestamp_pb2.Timestamp()
    created.GetCurrentTime()
    return pb.PlanSummary(
        plan_id=plan_id,
        start_date=dates[0].isoformat(),
        end_date=dates[-1].isoformat(),
        status=pb.PlanStatus.ValueType(plan.status),
        status_detail=plan.status_detail,
        objective=pb.ObjectiveParts(
            value=plan.value, under_delivery_penalty=plan.penalty, total=plan.objective
        ),
        programs=[
            pb.ProgramDelivery(
                program=pb.Program.ValueType(p.program),
                redemptions=p.redemptions,
                points_due=p.points_due,
                points_delivered=p.points_delivered,
                points_under_delivered=p.points_under_delivered,
                impressions=p.impressions,
            )
            for p in figures.programs
        ],
        channels=[
            pb.ChannelFill(
                channel=pb.Channel.ValueType(c.channel),
                capacity_impressions=c.capacity_impressions,
                paid_impressions=c.paid_impressions,
                free_impressions=c.free_impressions,
                fill_rate=c.fill_rate,
            )
            for c in figures.channels
        ],
        free_impressions=figures.free_impressions,
        free_merchants=figures.free_merchants,
        free_min_level=figures.free_min_level,
        free_jain_index=figures.free_jain,
        supply_nodes=figures.nodes,
        demands=figures.demands,
        arcs=figures.arcs,
        build_seconds=plan.build_seconds,
        solve_seconds=plan.solve_seconds,
        create_time=created,
    )


__all__ = ["Planner", "SolveOutcome", "Unavailable"]
