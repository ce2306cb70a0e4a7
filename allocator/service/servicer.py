"""AllocatorService: validate -> call the stores and the planner -> map to messages.

Each method is thin; every error path goes through rpc_boundary (allocator/service/status.py).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from queue import Queue
from typing import TypeAlias, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from allocator.convert import redemption_from_pb, rules_to_pb, stored_redemption
from allocator.domain import Channel, Program, Rules
from allocator.errors import FailedPrecondition, NotFound
from allocator.events import DONE, Progress
from allocator.explain import explain
from allocator.plan_codec import Cell, PlanView
from allocator.planner import Planner, SolveOutcome
from allocator.service import validation as v
from allocator.service.digest import content_digest
from allocator.service.serving_rpcs import ServingRpcs
from allocator.service.status import rpc_boundary
from allocator.store.keys import Keys
from allocator.store.records import RecordStore
from trafficalloc.v1 import allocator_pb2 as pb
from trafficalloc.v1 import allocator_pb2_grpc as pb_grpc

Ctx: TypeAlias = grpc.ServicerContext
T = TypeVar("T")


class AllocatorServicer(ServingRpcs, pb_grpc.AllocatorServiceServicer):
    def __init__(
        self, records: RecordStore, planner: Planner, rules: Rules, keys: Keys, limits: v.Limits
    ) -> None:
        self.records, self.planner, self.rules, self.keys, self.limits = records, planner, rules, keys, limits
        self.on_redis_error: Callable[[str], None] | None = None  # metrics hook, set by the server

    # ---- inventory ---------------------------------------------------------------------------

    @rpc_boundary
    def PublishInventory(
        self, request: pb.PublishInventoryRequest, context: Ctx
    ) -> pb.PublishInventoryResponse:
        date = v.check_inventory(request, self.limits)
        digest = content_digest(request)
        key = self.keys.inventory_request(request.date, request.request_id)
        prior = self.records.writer.previous(key, digest)
        if prior is None:
            nodes = sorted(request.nodes, key=lambda n: (n.channel, n.hour, n.region))
            stored = pb.GetInventoryResponse(date=date.isoformat(), nodes=nodes, total_size=len(nodes))
            response = pb.PublishInventoryResponse(
                date=date.isoformat(),
                node_count=len(nodes),
                total_capacity_impressions=sum(n.capacity_impressions for n in nodes),
            )
            prior = self.records.publish_inventory(
                request.date, request.request_id, digest, stored, response.SerializeToString()
            )
        out = pb.PublishInventoryResponse.FromString(prior.response)
        out.replayed = prior.replayed
        return out

    @rpc_boundary
    def GetInventory(self, request: pb.GetInventoryRequest, context: Ctx) -> pb.GetInventoryResponse:
        c = v.Checker(self.limits)
        c.date("date", request.date)
        size = c.page_size("page_size", request.page_size)
        start = v.offset_token(c, "page_token", request.page_token)
        c.raise_if_any("inventory query")
        stored = self.records.inventory(request.date)
        if stored is None:
            raise NotFound(f"no inventory published for {request.date}", resource=("inventory", request.date))
        end = min(start + size, len(stored.nodes))
        return pb.GetInventoryResponse(
            date=stored.date,
            nodes=stored.nodes[start:end],
            next_page_token=v.make_page_token(str(end)) if end < len(stored.nodes) else "",
            total_size=len(stored.nodes),
        )

    # ---- redemptions -------------------------------------------------------------------------

    @rpc_boundary
    def RecordRedemption(
        self, request: pb.RecordRedemptionRequest, context: Ctx
    ) -> pb.RecordRedemptionResponse:
        v.check_redemption(request, self.rules, self.limits)
        digest = content_digest(request)
        key = self.keys.redemption_request(request.request_id)
        prior = self.records.writer.previous(key, digest)
        if prior is None:
            redemption = stored_redemption(request, f"rdm-{uuid.uuid4().hex[:20]}")
            redemption.create_time.CopyFrom(_now())
            response = pb.RecordRedemptionResponse(redemption=redemption)
            prior = self.records.record_redemption(
                request.request_id, digest, redemption, response.SerializeToString()
            )
        out = pb.RecordRedemptionResponse.FromString(prior.response)
        out.replayed = prior.replayed
        return out

    @rpc_boundary
    def CancelRedemption(
        self, request: pb.CancelRedemptionRequest, context: Ctx
    ) -> pb.CancelRedemptionResponse:
        c = v.Checker(self.limits)
        c.ident("request_id", request.request_id)
        c.ident("redemption_id", request.redemption_id)
        c.raise_if_any("cancel request")
        digest = content_digest(request)
        prior = self.records.writer.previous(self.keys.redemption_request(request.request_id), digest)
        if prior is None:
            redemption = self._redemption(request.redemption_id)
            changed = redemption.status != pb.REDEMPTION_STATUS_CANCELLED  # cancelled already: no write
            redemption.status = pb.REDEMPTION_STATUS_CANCELLED
            response = pb.CancelRedemptionResponse(redemption=redemption).SerializeToString()
            prior = self.records.update_redemption(request.request_id, digest, redemption, response, changed)
        return pb.CancelRedemptionResponse.FromString(prior.response)

    @rpc_boundary
    def GetRedemption(self, request: pb.GetRedemptionRequest, context: Ctx) -> pb.GetRedemptionResponse:
        c = v.Checker(self.limits)
        c.ident("redemption_id", request.redemption_id)
        c.raise_if_any("redemption query")
        return pb.GetRedemptionResponse(redemption=self._redemption(request.redemption_id))

    @rpc_boundary
    def ListRedemptions(self, request: pb.ListRedemptionsRequest, context: Ctx) -> pb.ListRedemptionsResponse:
        c = v.Checker(self.limits)
        size = c.page_size("page_size", request.page_size)
        cursor = c.page_token("page_token", request.page_token)
        c.ident("merchant_id", request.merchant_id, required=False)
        if request.status not in pb.RedemptionStatus.values():
            c.add("status", f"unknown redemption status {request.status}")
        c.raise_if_any("redemption list")
        items, next_cursor = self.records.redemption_page(cursor, size, request.merchant_id)
        if request.status:  # filter, reading on until the page is full or the list ends
            items = [r for r in items if r.status == request.status]
            while len(items) < size and next_cursor:
                more, next_cursor = self.records.redemption_page(next_cursor, size, request.merchant_id)
                items += [r for r in more if r.status == request.status]
            if len(items) > size:
                items, next_cursor = items[:size], items[size - 1].redemption_id
        return pb.ListRedemptionsResponse(redemptions=items, next_page_token=v.make_page_token(next_cursor))

    def _redemption(self, redemption_id: str) -> pb.Redemption:
        found = self.records.redemption(redemption_id)
        if found is None:
            raise NotFound(f"redemption {redemption_id!r} not found", resource=("redemption", redemption_id))
        return found

    # ---- eligibility -------------------------------------------------------------------------

    @rpc_boundary
    def SetEligibility(self, request: pb.SetEligibilityRequest, context: Ctx) -> pb.SetEligibilityResponse:
        v.check_eligibility(request, self.limits)
        digest = content_digest(request)
        prior = self.records.writer.previous(self.keys.eligibility_request(request.request_id), digest)
        if prior is None:
            response = pb.SetEligibilityResponse(updated=len(request.entries)).SerializeToString()
            prior = self.records.set_eligibility(request.request_id, digest, request.entries, response)
        out = pb.SetEligibilityResponse.FromString(prior.response)
        out.replayed = prior.replayed
        return out

    @rpc_boundary
    def ClearEligibility(
        self, request: pb.ClearEligibilityRequest, context: Ctx
    ) -> pb.ClearEligibilityResponse:
        v.check_clear(request, self.limits)
        digest = content_digest(request)
        prior = self.records.writer.previous(self.keys.eligibility_request(request.request_id), digest)
        if prior is None:
            ids = list(dict.fromkeys(request.merchant_ids))
            response = pb.ClearEligibilityResponse(
                cleared=self.records.eligible_count(ids)
            ).SerializeToString()
            prior = self.records.clear_eligibility(request.request_id, digest, ids, response)
        out = pb.ClearEligibilityResponse.FromString(prior.response)
        out.replayed = prior.replayed
        return out

    @rpc_boundary
    def ListEligibility(self, request: pb.ListEligibilityRequest, context: Ctx) -> pb.ListEligibilityResponse:
        c = v.Checker(self.limits)
        size = c.page_size("page_size", request.page_size)
        cursor = c.page_token("page_token", request.page_token)
        c.raise_if_any("eligibility list")
        items, next_cursor = self.records.eligibility_page(cursor, size)
        return pb.ListEligibilityResponse(entries=items, next_page_token=v.make_page_token(next_cursor))

    # ---- solve and plans ---------------------------------------------------------------------

    @rpc_boundary
    def Solve(self, request: pb.SolveRequest, context: Ctx) -> pb.SolveResponse:
        dates = v.check_solve(request, self.limits)
        outcome = self.planner.solve(dates, dry_run=request.dry_run, time_limit_s=request.time_limit_seconds)
        return pb.SolveResponse(plan=outcome.summary)

    def SolveStream(self, request: pb.SolveStreamRequest, context: Ctx) -> Iterator[pb.SolveStreamResponse]:
        """Solve in a worker thread; stream its progress events, the last one carrying the summary."""
        plain = pb.SolveRequest(
            start_date=request.start_date,
            end_date=request.end_date,
            dry_run=request.dry_run,
            time_limit_seconds=request.time_limit_seconds,
        )
        dates = _checked(context, lambda: v.check_solve(plain, self.limits))
        queue: Queue[Progress | SolveOutcome | BaseException] = Queue()
        start = time.perf_counter()

        def run() -> None:
            try:
                limit = request.time_limit_seconds
                queue.put(
                    self.planner.solve(dates, dry_run=request.dry_run, time_limit_s=limit, progress=queue.put)
                )
            except BaseException as exc:  # handed to the RPC thread, which maps it to a status
                queue.put(exc)

        threading.Thread(target=run, name="solve-stream", daemon=True).start()
        while True:
            item = queue.get()
            if isinstance(item, BaseException):
                _checked(context, _raiser(item))
            elif isinstance(item, SolveOutcome):
                done = pb.SolveProgress(
                    phase=pb.SOLVE_PHASE_DONE,
                    elapsed_seconds=time.perf_counter() - start,
                    supply_nodes=item.summary.supply_nodes,
                    demands=item.summary.demands,
                    arcs=item.summary.arcs,
                    detail="cache hit" if item.cache_hit else "solved",
                    plan=item.summary,
                )
                yield pb.SolveStreamResponse(progress=done)
                return
            elif item.phase != DONE:  # DONE goes out with the summary, above
                yield pb.SolveStreamResponse(
                    progress=pb.SolveProgress(
                        phase=pb.SolvePhase.Value(f"SOLVE_PHASE_{item.phase}"),
                        elapsed_seconds=item.elapsed_s,
                        supply_nodes=item.nodes,
                        demands=item.demands,
                        arcs=item.arcs,
                        detail=item.detail,
                    )
                )

    @rpc_boundary
    def ExplainAllocation(
        self, request: pb.ExplainAllocationRequest, context: Ctx
    ) -> pb.ExplainAllocationResponse:
        date = v.check_merchant_query(request.merchant_id, request.date, request.plan_id, self.limits)
        plan_id, view = self._plan_for(request.plan_id, date, request.merchant_id)
        day = date.toordinal()
        ids = [str(view.s.demand_redemption[d]) for d in view.demands_on(request.merchant_id, day)]
        records = {
            m.redemption_id: redemption_from_pb(m) for m in (self.records.redemption(i) for i in ids) if m
        }
        why = explain(view, request.merchant_id, date, records, self.rules, self.planner.params.kappa)
        regions = view.s.regions.tolist()
        return pb.ExplainAllocationResponse(
            merchant_id=request.merchant_id,
            date=request.date,
            plan_id=plan_id,
            redemptions=[
                pb.RedemptionExplanation(
                    redemption_id=r.redemption_id,
                    points_due=r.due,
                    points_delivered=r.delivered,
                    points_under_delivered=r.under,
                    eligible_nodes=r.eligible_nodes,
                    eligible_paid_points=r.eligible_points,
                    saturated_nodes=r.saturated_nodes,
                    reasons=[
                        pb.Reason(kind=pb.ReasonKind.Value(f"REASON_KIND_{k}"), text=t) for k, t in r.reasons
                    ],
                )
                for r in why.redemptions
            ],
            binding_nodes=[
                pb.BindingNode(
                    channel=pb.Channel.ValueType(int(view.s.node_channel[b.node])),
                    hour=int(view.s.node_hour[b.node]),
                    region=regions[int(view.s.node_region[b.node])],
                    paid_capacity_points=b.paid_capacity_points,
                    merchant_points=b.merchant_points,
                    shadow_value_per_mille=b.shadow_value_per_mille,
                    relieves_under_delivery=b.relieves_under_delivery,
                )
                for b in why.binding
            ],
            free_impressions=sum(x.impressions for x in view.merchant_day(request.merchant_id, date).free),
        )

    def _plan_for(self, plan_id: str, date: dt.date, merchant_id: str) -> tuple[str, PlanView]:
        """The plan asked for (or the date's active one), checked to cover the date and know the merchant."""
        plan_id = plan_id or self.planner.active_plan_id(date)
        summary = self.planner.summary(plan_id)
        if not summary.start_date <= date.isoformat() <= summary.end_date:
            raise FailedPrecondition(
                f"plan {plan_id} covers {summary.start_date}..{summary.end_date}, not {date.isoformat()}",
                violations=[("date", "outside the plan's dates")],
            )
        view = self.planner.view(plan_id)
        if not view.has_merchant(merchant_id):
            raise NotFound(
                f"merchant {merchant_id!r} has no redemption or eligibility in plan {plan_id}",
                resource=("merchant", merchant_id),
            )
        return plan_id, view

    @rpc_boundary
    def CheckAvailability(
        self, request: pb.CheckAvailabilityRequest, context: Ctx
    ) -> pb.CheckAvailabilityResponse:
        dates = v.check_availability(request, self.rules, self.limits)
        plan_id, rooms, most = self.planner.availability(
            dates,
            Program(request.program),
            {Channel(c) for c in request.channels},
            set(request.regions),
        )
        return pb.CheckAvailabilityResponse(
            points_available=most,
            days=[
                pb.DayAvailability(date=d.isoformat(), points=r) for d, r in zip(dates, rooms, strict=True)
            ],
            plan_id=plan_id,
        )

    @rpc_boundary
    def GetPlanReport(self, request: pb.GetPlanReportRequest, context: Ctx) -> pb.GetPlanReportResponse:
        c = v.Checker(self.limits)
        c.ident("plan_id", request.plan_id, required=False)
        date = c.date("date", request.date) if request.date or not request.plan_id else None
        c.raise_if_any("plan report")
        plan_id = request.plan_id or self.planner.active_plan_id(date)  # type: ignore[arg-type]
        summary = self.planner.summary(plan_id)
        view = self.planner.view(plan_id)
        s = view.s
        paid, free = view.node_totals()
        regions = s.regions.tolist()
        nodes = [
            pb.NodeReport(
                date=dt.date.fromordinal(int(s.node_date[i])).isoformat(),
                hour=int(s.node_hour[i]),
                channel=pb.Channel.ValueType(int(s.node_channel[i])),
                region=regions[int(s.node_region[i])],
                capacity_impressions=int(s.node_capacity[i]),
                price_points_per_mille=int(s.node_price[i]),
                paid_impressions=int(paid[i]),
                free_impressions=int(free[i]),
                shadow_value_per_mille=float(s.node_shadow_value_per_mille[i]),
                relieves_under_delivery=bool(s.node_relieves_under[i]),
            )
            for i in range(s.node_capacity.size)
        ]
        shares = [pb.FreeShare(merchant_id=m, weight=w, impressions=x) for m, w, x in view.free_shares()]
        return pb.GetPlanReportResponse(plan=summary, nodes=nodes, free_shares=shares)

    @rpc_boundary
    def GetPlan(self, request: pb.GetPlanRequest, context: Ctx) -> pb.GetPlanResponse:
        self._check_plan_id(request.plan_id, required=True)
        return pb.GetPlanResponse(plan=self.planner.summary(request.plan_id))

    @rpc_boundary
    def GetActivePlan(self, request: pb.GetActivePlanRequest, context: Ctx) -> pb.GetActivePlanResponse:
        c = v.Checker(self.limits)
        date = c.date("date", request.date)
        c.raise_if_any("active plan query")
        assert date is not None
        return pb.GetActivePlanResponse(plan=self.planner.summary(self.planner.active_plan_id(date)))

    @rpc_boundary
    def ActivatePlan(self, request: pb.ActivatePlanRequest, context: Ctx) -> pb.ActivatePlanResponse:
        c = v.Checker(self.limits)
        c.ident("request_id", request.request_id)
        c.ident("plan_id", request.plan_id)
        c.raise_if_any("activation")
        summary, previous = self.planner.activate(request.plan_id, request.request_id)
        return pb.ActivatePlanResponse(plan=summary, previous_plan_ids=previous)

    def _check_plan_id(self, plan_id: str, *, required: bool) -> None:
        c = v.Checker(self.limits)
        c.ident("plan_id", plan_id, required=required)
        c.raise_if_any("plan id")

    # ---- queries -----------------------------------------------------------------------------

    @rpc_boundary
    def GetMerchantAllocation(
        self, request: pb.GetMerchantAllocationRequest, context: Ctx
    ) -> pb.GetMerchantAllocationResponse:
        date = v.check_merchant_query(request.merchant_id, request.date, request.plan_id, self.limits)
        plan_id, view = self._plan_for(request.plan_id, date, request.merchant_id)
        day = view.merchant_day(request.merchant_id, date)
        paid = [_cell(x) for x in day.paid]
        free = [_cell(x) for x in day.free]
        return pb.GetMerchantAllocationResponse(
            merchant_id=request.merchant_id,
            date=request.date,
            plan_id=plan_id,
            paid=paid,
            free=free,
            points_due=day.points_due,
            points_delivered=day.points_delivered,
            points_under_delivered=max(0, day.points_due - day.points_delivered),
            paid_impressions=sum(x.impressions for x in paid),
            free_impressions=sum(x.impressions for x in free),
        )

    @rpc_boundary
    def GetNodeAllocation(
        self, request: pb.GetNodeAllocationRequest, context: Ctx
    ) -> pb.GetNodeAllocationResponse:
        c = v.Checker(self.limits)
        date = c.date("date", request.date)
        if not 0 <= request.hour <= 23:
            c.add("hour", f"must be within 0..23, got {request.hour}")
        c.channel("channel", request.channel)
        c.region("region", request.region)
        c.ident("plan_id", request.plan_id, required=False)
        size = c.page_size("page_size", request.page_size)
        start = v.offset_token(c, "page_token", request.page_token)
        c.raise_if_any("node query")
        assert date is not None
        plan_id = request.plan_id or self.planner.active_plan_id(date)
        view = self.planner.view(plan_id)
        node = view.node(date, request.hour, request.channel, request.region)
        if node is None:
            name = f"{request.date}/{request.hour}/{pb.Channel.Name(request.channel)}/{request.region}"
            raise NotFound(f"supply node {name} is not in plan {plan_id}", resource=("supply_node", name))
        entries = view.node_entries(node)
        end = min(start + size, len(entries))
        return pb.GetNodeAllocationResponse(
            plan_id=plan_id,
            capacity_impressions=int(view.s.node_capacity[node]),
            price_points_per_mille=int(view.s.node_price[node]),
            paid_impressions=sum(e.impressions for e in entries if not e.free),
            free_impressions=sum(e.impressions for e in entries if e.free),
            entries=[
                pb.NodeAllocationEntry(
                    merchant_id=e.merchant_id,
                    redemption_id=e.redemption_id,
                    impressions=e.impressions,
                    points=e.points,
                    free=e.free,
                )
                for e in entries[start:end]
            ],
            next_page_token=v.make_page_token(str(end)) if end < len(entries) else "",
            total_size=len(entries),
        )

    @rpc_boundary
    def GetRules(self, request: pb.GetRulesRequest, context: Ctx) -> pb.GetRulesResponse:
        return rules_to_pb(self.rules)


def _cell(cell: Cell) -> pb.AllocationCell:
    return pb.AllocationCell(
        channel=pb.Channel.ValueType(cell.channel),
        hour=cell.hour,
        region=cell.region,
        impressions=cell.impressions,
        points=cell.points,
        redemption_id=cell.redemption_id,
    )


def _checked(context: Ctx, fn: Callable[[], T]) -> T:
    """Run fn under the same error mapping as rpc_boundary (for the streaming method)."""

    @rpc_boundary
    def call(_self: object, _request: object, _context: Ctx) -> T:
        return fn()

    return call(None, None, context)


def _raiser(exc: BaseException) -> Callable[[], None]:
    def fn() -> None:
        raise exc

    return fn


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts
