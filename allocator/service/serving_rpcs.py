"""The serving RPCs: PickMerchants (the hot path), ReportDelivery, Replan and GetDelivery.

A mixin of AllocatorServicer; the engine, the re-planner and the counters' store are set by the server.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, TypeAlias

import grpc

from allocator.convert import redemption_from_pb
from allocator.errors import FailedPrecondition, NotFound
from allocator.problem import points_due
from allocator.service import serving_validation as sv
from allocator.service.digest import content_digest
from allocator.service.status import rpc_boundary
from trafficalloc.v1 import allocator_pb2 as pb

if TYPE_CHECKING:
    from allocator.planner import Planner
    from allocator.service.validation import Limits
    from allocator.serving.engine import ServingEngine
    from allocator.serving.replanner import Replanner
    from allocator.store.records import RecordStore
    from allocator.store.serving import ServingStore

Ctx: TypeAlias = grpc.ServicerContext


class ServingRpcs:
    engine: ServingEngine
    replanner: Replanner
    serving_store: ServingStore
    planner: Planner
    records: RecordStore
    limits: Limits

    @rpc_boundary
    def PickMerchants(self, request: pb.PickMerchantsRequest, context: Ctx) -> pb.PickMerchantsResponse:
        when = sv.check_pick(request, self.limits, self.engine.tz)
        r = self.engine.pick(request.request_id, request.channel, request.region, when, request.count)
        return pb.PickMerchantsResponse(
            merchants=[
                pb.PickedMerchant(merchant_id=m.merchant_id, redemption_id=m.redemption_id, free=m.free)
                for m in r.merchants
            ],
            plan_id=r.plan_id,
            date=r.date.isoformat(),
            hour=r.hour,
            degraded=r.degraded,
            replayed=r.replayed,
        )

    @rpc_boundary
    def ReportDelivery(self, request: pb.ReportDeliveryRequest, context: Ctx) -> pb.ReportDeliveryResponse:
        date = sv.check_report(request, self.limits)
        key = date.isoformat()
        digest = content_digest(request)  # a report's request id with other counts is a conflict, not a retry
        stored = self.serving_store.stored_report(key, request.request_id, digest)
        if stored is not None:
            return _report_response(*stored, replayed=True)
        plan = self.engine.active_lines(date)
        if plan is None:
            raise FailedPrecondition(
                f"{key} has no active plan to count deliveries against; run Solve first",
                violations=[("date", "no active plan")],
            )
        node = plan.node(date.toordinal(), request.hour, request.channel, request.region)
        if node is None:
            name = f"{key}/{request.hour}/{pb.Channel.Name(request.channel)}/{request.region}"
            raise NotFound(
                f"supply node {name} is not in plan {plan.plan_id}", resource=("supply_node", name)
            )
        lines = plan.lines(node)
        index = lines.index()
        entries: list[tuple[str, int, int, int]] = []
        bad: list[tuple[str, str]] = []
        for i, d in enumerate(request.deliveries):
            field = f"p:{d.redemption_id}" if d.redemption_id else f"f:{d.merchant_id}"
            at = index.get(field)
            if at is None or lines.merchants[at] != d.merchant_id:
                bad.append((f"deliveries[{i}]", f"not planned on this node in plan {plan.plan_id}"))
                continue
            entries.append((field, int(d.impressions), int(lines.unit_cost[at]), int(lines.cap[at])))
        if bad:
            raise FailedPrecondition(
                f"{len(bad)} delivery entries name lines the active plan does not have on this node",
                violations=bad,
            )
        node_key = self.serving_store.node_key(key, request.channel, request.hour, request.region)
        replayed, shown, over, plan_id = self.serving_store.report(
            key, node_key, request.request_id, plan.plan_id, digest, entries
        )
        return _report_response(shown, over, plan_id, replayed=replayed)

    @rpc_boundary
    def Replan(self, request: pb.ReplanRequest, context: Ctx) -> pb.ReplanResponse:
        date = sv.check_replan(request, self.limits)
        return self.replanner.replan(
            request.request_id,
            content_digest(request),
            date,
            request.from_hour if request.HasField("from_hour") else None,
            request.time_limit_seconds,
            request.dry_run,
        )

    @rpc_boundary
    def GetDelivery(self, request: pb.GetDeliveryRequest, context: Ctx) -> pb.GetDeliveryResponse:
        date = sv.check_delivery_query(request, self.limits)
        key = date.isoformat()
        # the plan serving answers from (as picks and reports see it: an expired active plan is no plan)
        plan = self.engine.active_lines(date)
        if plan is None:
            raise NotFound(f"no active plan for {key}; run Solve", resource=("plan", key))
        planned = plan.merchant_lines(request.merchant_id, date.toordinal())
        redemptions = self._redemptions_of(request.merchant_id, date)
        rids = [r.redemption_id for r in redemptions]
        fields = [f"p:{r}" for r in rids] + [f"f:{request.merchant_id}"]
        inventory = self.records.inventory(key)
        published = {(int(n.channel), n.hour, n.region) for n in inventory.nodes} if inventory else set()
        nodes = sorted(published | {(c, h, r) for (c, h, r, _f, _cap) in planned})
        if not planned and not rids and not plan.view.has_merchant(request.merchant_id):
            raise NotFound(
                f"merchant {request.merchant_id!r} has no redemption or eligibility on {key}",
                resource=("merchant", request.merchant_id),
            )
        counts = self.serving_store.fields_on_nodes(
            [self.serving_store.node_key(key, c, h, r) for c, h, r in nodes], fields
        )
        caps = {(c, h, r, f): cap for (c, h, r, f, cap) in planned}
        lines = []
        for (c, h, r), row in zip(nodes, counts, strict=True):
            for f, delivered in zip(fields, row, strict=True):
                cap = caps.get((c, h, r, f), 0)
                if cap or delivered:
                    lines.append(
                        pb.DeliveryLine(
                            channel=pb.Channel.ValueType(c),
                            hour=h,
                            region=r,
                            redemption_id=f[2:] if f.startswith("p:") else "",
                            planned_impressions=cap,
                            delivered_impressions=delivered,
                        )
                    )
        budget = self.serving_store.budget_of(key, fields)
        due = sum(
            points_due(redemption_from_pb(r), [date])
            for r in redemptions
            if r.status == pb.REDEMPTION_STATUS_ACTIVE
        )
        return pb.GetDeliveryResponse(
            merchant_id=request.merchant_id,
            date=key,
            plan_id=plan.plan_id,
            lines=lines,
            points_due=due,
            delivered_millipoints=sum(budget[:-1]),
            free_impressions_delivered=budget[-1],
        )

    def _redemptions_of(self, merchant_id: str, date: dt.date) -> list[pb.Redemption]:
        """Ids of the merchant's redemptions whose flight covers the date (cancelled ones included:
        they may have been delivered before they were cancelled)."""
        out: list[pb.Redemption] = []
        cursor = ""
        while True:
            items, cursor = self.records.redemption_page(cursor, 1000, merchant_id)
            out += [r for r in items if r.flight_start_date <= date.isoformat() <= r.flight_end_date]
            if not cursor:
                return out


def _report_response(shown: int, over: int, plan_id: str, *, replayed: bool) -> pb.ReportDeliveryResponse:
    return pb.ReportDeliveryResponse(
        impressions=shown, impressions_over_plan=over, plan_id=plan_id, replayed=replayed
    )
