"""PickMerchants on the hot path: the active plan in memory, one Redis script per call, and a bounded
degraded mode that answers from memory while Redis is unreachable and reconciles when it is back.

What a replica keeps in memory, per date and node: the active plan's lines (immutable) and the last
counts it saw (hints for the weights; the limits are enforced in Redis). Safety lives in the pick script:
a line's plan and pace, the node's capacity and a redemption's points due are checked and counted there
atomically, so replicas sharing one Redis never over-deliver together.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import redis

from allocator.errors import NotFound, Unavailable
from allocator.planner import Planner
from allocator.serving.lines import NodeLines, PlanLines
from allocator.serving.pacing import allowance, candidate_order, candidates_for, hour_fraction, weights
from allocator.store.serving import (
    NODE_TOTAL,
    FlushBatch,
    NodeBatch,
    ServingStore,
    encode_answer,
    pack_candidates,
)

logger = logging.getLogger(__name__)

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
PLANS_KEPT = 2  # the active plan and the one it replaced (picks in flight during a swap)
MAX_ROUNDS = 3  # script calls per pick at most: later rounds only when the first candidates ran out
EXPIRED_KEPT = 64  # expired active plan ids remembered (each warned about once)


@dataclass(frozen=True)
class ServingConfig:
    timezone: str = "UTC"  # the dates and hour windows of the plans
    plan_refresh_s: float = 1.0  # a replica picks up a newly activated plan within this time
    counts_refresh_s: float = 2.0  # how often a node's count hints are re-read in full
    degraded_max_s: float = 300.0  # answer from memory at most this long after Redis was last reached
    degraded_share: float = 0.5  # share of a line's remaining plan one replica may show while degraded
    replay_cache_size: int = 100_000  # request ids answered while degraded, kept for retries


@dataclass(frozen=True)
class Picked:
    merchant_id: str
    redemption_id: str
    free: bool


@dataclass(frozen=True)
class PickResult:
    merchants: list[Picked]
    plan_id: str
    date: dt.date
    hour: int
    degraded: bool = False
    replayed: bool = False


@dataclass
class _NodeState:
    lines: NodeLines
    known: np.ndarray  # last counts seen, aligned with lines
    refreshed: float = 0.0  # monotonic time of the last full read (0: never)
    outage_base: np.ndarray | None = None  # counts when this replica went degraded on the node
    lock: threading.Lock = field(default_factory=threading.Lock)
    _allow: tuple[int, np.ndarray] = (-1, np.zeros(0, dtype=np.int64))  # (second of the hour, allowance)

    def allowance(self, second: int) -> np.ndarray:
        """The lines' pace allowance at the start of this second of the hour, computed once a second
        (a second's start is the lower allowance, so within the second it errs on the side of less)."""
        at, allow = self._allow
        if at != second:
            allow = allowance(self.lines.cap, hour_fraction(second))
            self._allow = (second, allow)  # one assignment: readers on other threads see old or new
        return allow


def picked_of(field_name: str, merchant: str) -> Picked:
    kind, _, ident = field_name.partition(":")
    return Picked(merchant, ident if kind == "p" else "", kind == "f")


class ServingEngine:
    def __init__(
        self,
        store: ServingStore,
        planner: Planner,
        config: ServingConfig,
        *,
        on_degraded: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.planner, self.config = store, planner, config
        self.tz = ZoneInfo(config.timezone)
        self._on_degraded = on_degraded
        self._clock = clock
        self._guard = threading.Lock()
        self._load = threading.Lock()
        self._active: dict[str, tuple[str, float]] = {}  # date -> (plan id, monotonic time read)
        self._expired: OrderedDict[str, None] = OrderedDict()  # active plan ids found expired (warned)
        self._plans: OrderedDict[str, PlanLines] = OrderedDict()
        self._states: OrderedDict[tuple[str, int], _NodeState] = OrderedDict()
        self._local = threading.local()
        self._last_redis_ok = time.monotonic()
        self._batches: dict[str, FlushBatch] = {}  # date -> counts taken while degraded, not yet sealed
        self._sealed: list[FlushBatch] = []
        self._replay: OrderedDict[str, tuple[PickResult, str]] = OrderedDict()
        self._flush_lock = threading.Lock()

    # ---- time ----------------------------------------------------------------------------------

    def slot_of(self, when: dt.datetime | None) -> tuple[dt.date, int, float]:
        """(date, hour, seconds into the hour) of a time in the service's time zone."""
        moment = (when or dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC)).astimezone(self.tz)
        return moment.date(), moment.hour, moment.minute * 60 + moment.second + moment.microsecond / 1e6

    # ---- plans ---------------------------------------------------------------------------------

    def active_lines(self, date: dt.date) -> PlanLines | None:
        """The active plan of the date as serving lines (None: no plan), re-read every plan_refresh_s.

        An active pointer whose plan has expired (ALLOCATOR_PLAN_TTL_SECONDS) counts as no plan: there is
        nothing to serve or count against, and the docs promise callers an empty pick and a
        FAILED_PRECONDITION report then, not a NOT_FOUND about a plan they never named. The re-read
        checks that the plan is still stored, so a replica holding it in memory stops serving it too (all
        replicas agree within plan_refresh_s); a re-solve of the same inputs that stores it again brings
        it back at the next re-read."""
        key = date.isoformat()
        now = time.monotonic()
        cached = self._active.get(key)
        if cached is None or now - cached[1] >= self.config.plan_refresh_s:
            try:
                (plan_id,) = self.planner.plans.active([key])
                if plan_id and not self.planner.plans.stored(plan_id):
                    plan_id = self._expired_plan(key, plan_id)
                self._redis_ok()
            except REDIS_DOWN:
                if cached is None:
                    raise
                plan_id = cached[0]  # the last known plan, while degraded
            else:
                self._active[key] = (plan_id, now)
        else:
            plan_id = cached[0]
        if not plan_id:
            return None
        try:
            return self.plan_lines(plan_id)
        except NotFound:  # expired between the re-read and the load
            self._active[key] = (self._expired_plan(key, plan_id), now)
            return None

    def _expired_plan(self, date: str, plan_id: str) -> str:
        """Note an active plan found expired, warning once per replica and plan; "": serve no plan."""
        with self._guard:
            first = plan_id not in self._expired
            self._expired[plan_id] = None
            while len(self._expired) > EXPIRED_KEPT:
                self._expired.popitem(last=False)
        if first:
            logger.warning(
                "active plan %s of %s has expired (plan TTL); the date is served as having no plan "
                "until a plan is activated for it",
                plan_id,
                date,
                extra={"date": date, "plan_id": plan_id},
            )
        return ""

    def plan_lines(self, plan_id: str) -> PlanLines:
        with self._guard:
            found = self._plans.get(plan_id)
            if found is not None:
                self._plans.move_to_end(plan_id)
                return found
        with self._load:  # a new plan is decoded once, however many calls arrive together
            with self._guard:
                found = self._plans.get(plan_id)
            if found is not None:
                return found
            lines = PlanLines(plan_id, self.planner.view(plan_id))
            with self._guard:
                self._plans[plan_id] = lines
                while len(self._plans) > PLANS_KEPT:
                    gone, _ = self._plans.popitem(last=False)
                    for key in [k for k in self._states if k[0] == gone]:  # its nodes' state goes too
                        del self._states[key]
            return lines

    def forget_active(self, date: dt.date) -> None:
        """Re-read the date's active plan on the next call (after this replica activated a new one)."""
        self._active.pop(date.isoformat(), None)

    # ---- the hot path --------------------------------------------------------------------------

    def pick(
        self, request_id: str, channel: int, region: str, when: dt.datetime | None, count: int
    ) -> PickResult:
        date, hour, seconds = self.slot_of(when)
        local = self._replay.get(request_id)
        if local is not None and local[1] == date.isoformat():
            return _replayed(local[0])
        if self._sealed or self._batches:
            self.reconcile()
        try:
            plan = self.active_lines(date)
        except REDIS_DOWN as exc:
            raise Unavailable("redis is unreachable and no plan of the date is in memory") from exc
        if plan is None:
            return PickResult([], "", date, hour)
        node = plan.node(date.toordinal(), hour, channel, region)
        if node is None:
            return PickResult([], plan.plan_id, date, hour)
        state = self._state(plan, node, date, channel, hour, region)
        lines = state.lines
        frac = hour_fraction(seconds)
        allow = state.allowance(int(seconds))
        node_key = self.store.node_key(date.isoformat(), channel, hour, region)
        tried = np.zeros(lines.size, dtype=bool)
        chosen: list[tuple[str, str]] = []
        for attempt in range(MAX_ROUNDS):
            w = weights(lines.cap, state.known, frac, allow)
            if attempt:  # a further round: lines not tried yet, of merchants not chosen yet
                w[tried] = 0.0
                taken = {m for _, m in chosen}
                w[[m in taken for m in lines.merchants]] = 0.0
            order = candidate_order(w, candidates_for(count - len(chosen)), self._rng())
            if order.size == 0:
                break
            idx = order.tolist()
            candidates = pack_candidates(
                [lines.fields[i] for i in idx],
                [lines.merchants[i] for i in idx],
                allow[order].tolist(),
                lines.budget_limit[order].tolist(),
                lines.unit_cost[order].tolist(),
            )
            try:
                outcome = self.store.pick(
                    date.isoformat(),
                    node_key,
                    request_id,
                    count - len(chosen),
                    lines.node_limit,
                    candidates,
                    append=attempt > 0,
                )
            except REDIS_DOWN:
                if attempt:
                    raise Unavailable("redis went away in the middle of a pick; retry") from None
                return self._degraded_pick(
                    request_id, plan, state, order, allow, count, date, (channel, hour, region)
                )
            self._redis_ok()
            if outcome.replayed:
                picked = [picked_of(f, m) for f, m in outcome.chosen]
                return PickResult(picked, plan.plan_id, date, hour, replayed=True)
            state.known[order] = np.maximum(state.known[order], outcome.counts)
            state.outage_base = None
            tried[order] = True
            chosen = outcome.chosen
            if len(chosen) >= count or outcome.node_total >= lines.node_limit:
                break
        return PickResult([picked_of(f, m) for f, m in chosen], plan.plan_id, date, hour)

    def _state(
        self, plan: PlanLines, node: int, date: dt.date, channel: int, hour: int, region: str
    ) -> _NodeState:
        key = (plan.plan_id, node)
        state = self._states.get(key)
        if state is None:
            lines = plan.lines(node)
            state = _NodeState(lines, np.zeros(lines.size, dtype=np.int64))
            with self._guard:
                state = self._states.setdefault(key, state)
                while len(self._states) > 20_000:
                    self._states.popitem(last=False)
        now = time.monotonic()
        if now - state.refreshed >= self.config.counts_refresh_s and state.lock.acquire(blocking=False):
            try:  # one full read of the node's counts now and then keeps the weights honest
                counts = self.store.node_counts(self.store.node_key(date.isoformat(), channel, hour, region))
                fresh = np.fromiter(
                    (counts.get(f, 0) for f in state.lines.fields), dtype=np.int64, count=state.lines.size
                )
                state.known = np.maximum(state.known, fresh)
                state.refreshed = now
                self._redis_ok()
            except REDIS_DOWN:
                state.refreshed = now  # try again later; the pick itself will find out
            finally:
                state.lock.release()
        return state

    def _rng(self) -> np.random.Generator:
        rng = getattr(self._local, "rng", None)
        if rng is None:
            rng = self._local.rng = np.random.default_rng()
        return rng

    # ---- degraded mode -------------------------------------------------------------------------

    def _redis_ok(self) -> None:
        self._last_redis_ok = time.monotonic()

    def degraded_for(self) -> float:
        """Seconds since Redis last answered this replica."""
        return time.monotonic() - self._last_redis_ok

    def _degraded_pick(
        self,
        request_id: str,
        plan: PlanLines,
        state: _NodeState,
        order: np.ndarray,
        allow: np.ndarray,
        count: int,
        date: dt.date,
        node_id: tuple[int, int, str],
    ) -> PickResult:
        """Answer from memory: each line gets at most degraded_share of what was left of it when this
        replica lost Redis, within its pace; counted locally and flushed once when Redis is back."""
        if self.degraded_for() > self.config.degraded_max_s:
            raise Unavailable(
                f"redis has been unreachable for {self.degraded_for():.0f} s, longer than the "
                f"{self.config.degraded_max_s:.0f} s this replica may serve from memory"
            )
        lines = state.lines
        chosen: list[tuple[str, str]] = []
        with self._guard:
            if state.outage_base is None:
                state.outage_base = state.known.copy()
            base = state.outage_base
            limit = base + np.floor(self.config.degraded_share * np.maximum(lines.cap - base, 0)).astype(
                np.int64
            )
            seen: set[str] = set()
            batch = self._batches.setdefault(date.isoformat(), FlushBatch(date.isoformat()))
            node_batch = batch.nodes.setdefault(node_id, NodeBatch())
            for i in order.tolist():
                if len(chosen) >= count:
                    break
                m = lines.merchants[i]
                if m in seen or state.known[i] >= min(int(allow[i]), int(limit[i])):
                    continue
                seen.add(m)
                f = lines.fields[i]
                state.known[i] += 1
                node_batch.counts[f] = node_batch.counts.get(f, 0) + 1
                node_batch.counts[NODE_TOTAL] = node_batch.counts.get(NODE_TOTAL, 0) + 1
                batch.budget[f] = batch.budget.get(f, 0) + int(lines.unit_cost[i])
                chosen.append((f, m))
            result = PickResult(
                [picked_of(f, m) for f, m in chosen], plan.plan_id, date, node_id[1], degraded=True
            )
            batch.answers[request_id] = encode_answer(chosen)
            self._replay[request_id] = (result, date.isoformat())
            while len(self._replay) > self.config.replay_cache_size:
                self._replay.popitem(last=False)
        if self._on_degraded is not None:
            self._on_degraded()
        return result

    def pending(self) -> int:
        """Impressions counted locally while degraded and not yet in Redis."""
        with self._guard:
            batches = list(self._batches.values()) + list(self._sealed)
            return sum(nb.counts.get(NODE_TOTAL, 0) for b in batches for nb in b.nodes.values())

    def reconcile(self) -> bool:
        """Flush what was counted while degraded, each batch exactly once; True when nothing is left."""
        if not self._flush_lock.acquire(blocking=False):
            return False
        try:
            with self._guard:
                self._sealed += [b for b in self._batches.values() if not b.empty()]
                self._batches.clear()
            while self._sealed:
                batch = self._sealed[0]
                try:
                    applied = self.store.flush(batch)
                except REDIS_DOWN:
                    return False
                self._redis_ok()
                logger.info(
                    "reconciled counts taken while redis was unreachable",
                    extra={"date": batch.date, "flush_id": batch.flush_id, "applied": applied},
                )
                with self._guard:
                    self._sealed.pop(0)
                    for state in self._states.values():
                        state.refreshed = 0.0  # re-read the counts in full
            return True
        finally:
            self._flush_lock.release()


def _replayed(result: PickResult) -> PickResult:
    return PickResult(result.merchants, result.plan_id, result.date, result.hour, result.degraded, True)
