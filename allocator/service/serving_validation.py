"""Validation of the serving RPCs (PickMerchants, ReportDelivery, Replan, GetDelivery)."""

from __future__ import annotations

import datetime as dt
import math

from allocator.service.validation import Checker, Limits
from trafficalloc.v1 import allocator_pb2 as pb

MAX_PICK = 50
MAX_DELIVERY_IMPRESSIONS = 10**9
_MIN_TS, _MAX_TS = 0, 253_402_300_799  # 1970-01-01 .. 9999-12-31 (a later time is surely a mistake)


def check_pick(req: pb.PickMerchantsRequest, limits: Limits, tz: dt.tzinfo) -> dt.datetime | None:
    """The request's time (None: now), after checking every field. `tz`: the service's time zone, in
    which the pick looks up its date and hour: the time must have a date there too (9999-12-31 23:00 UTC
    is already year 10000 east of UTC, which no date can hold)."""
    c = Checker(limits)
    c.ident("request_id", req.request_id)
    c.channel("channel", req.channel)
    c.region("region", req.region)
    if not 1 <= req.count <= MAX_PICK:
        c.add("count", f"must be within 1..{MAX_PICK}, got {req.count}")
    when = None
    if req.HasField("time"):
        if not (_MIN_TS <= req.time.seconds <= _MAX_TS and 0 <= req.time.nanos < 10**9):
            c.add("time", "must be a valid time between 1970 and 9999")
        else:
            when = req.time.ToDatetime(tzinfo=dt.UTC)
            if not _local_date_exists(when, tz):
                c.add("time", f"must fall on a date up to 9999-12-31 in the service's time zone ({tz})")
                when = None
    c.raise_if_any("pick request")
    return when


def _local_date_exists(when: dt.datetime, tz: dt.tzinfo) -> bool:
    try:
        when.astimezone(tz)
    except (OverflowError, ValueError):  # past datetime.max (or before datetime.min) in that zone
        return False
    return True


def check_report(req: pb.ReportDeliveryRequest, limits: Limits) -> dt.date:
    c = Checker(limits)
    c.ident("request_id", req.request_id)
    date = c.date("date", req.date)
    if not 0 <= req.hour <= 23:
        c.add("hour", f"must be within 0..23, got {req.hour}")
    c.channel("channel", req.channel)
    c.region("region", req.region)
    if not req.deliveries:
        c.add("deliveries", "must hold at least one entry")
    if len(req.deliveries) > limits.max_batch:
        c.add("deliveries", f"at most {limits.max_batch} entries, got {len(req.deliveries)}")
    else:
        seen: set[tuple[str, str]] = set()
        for i, d in enumerate(req.deliveries):
            c.ident(f"deliveries[{i}].merchant_id", d.merchant_id)
            c.ident(f"deliveries[{i}].redemption_id", d.redemption_id, required=False)
            if not 1 <= d.impressions <= MAX_DELIVERY_IMPRESSIONS:
                c.add(f"deliveries[{i}].impressions", f"must be within 1..{MAX_DELIVERY_IMPRESSIONS}")
            key = (d.merchant_id, d.redemption_id)
            if key in seen:
                c.add(f"deliveries[{i}]", "repeats an earlier entry's merchant and redemption")
            seen.add(key)
    c.raise_if_any("delivery report")
    assert date is not None
    return date


def check_replan(req: pb.ReplanRequest, limits: Limits) -> dt.date:
    c = Checker(limits)
    c.ident("request_id", req.request_id)
    date = c.date("date", req.date)
    if req.HasField("from_hour") and not 0 <= req.from_hour <= 23:
        c.add("from_hour", f"must be within 0..23, got {req.from_hour}")
    t = req.time_limit_seconds
    if not math.isfinite(t) or t < 0 or t > limits.max_time_limit_s:
        c.add("time_limit_seconds", f"must be within 0..{limits.max_time_limit_s:g} (0: the default)")
    c.raise_if_any("re-plan request")
    assert date is not None
    return date


def check_delivery_query(req: pb.GetDeliveryRequest, limits: Limits) -> dt.date:
    c = Checker(limits)
    c.ident("merchant_id", req.merchant_id)
    date = c.date("date", req.date)
    c.raise_if_any("delivery query")
    assert date is not None
    return date
