"""Request validation: collect a violation for every bad field, then reject the call as a whole.

Nothing is written before validation passes, so a rejected call changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from allocator.convert import parse_date
from allocator.domain import MAX_REDEMPTION_POINTS, Channel, Program, Rules
from allocator.errors import InvalidArgument
from trafficalloc.v1 import allocator_pb2 as pb

# Exactly YYYY-MM-DD in ASCII digits: date.fromisoformat alone also takes "2026-W49-2" and "20261201".
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
# The alphabet of the tokens make_page_token issues (URL-safe base64 without padding).
_TOKEN = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
# An offset in a page token: ASCII digits only (str.isdigit also takes "²" and "٣"), bounded.
_OFFSET = re.compile(r"[0-9]{1,18}", re.ASCII)


@dataclass(frozen=True)
class Limits:
    max_batch: int = 10_000  # eligibility entries or merchant ids per call
    max_nodes: int = 100_000  # supply nodes per date
    max_id_len: int = 128
    max_region_len: int = 64
    max_regions: int = 64
    max_points: int = MAX_REDEMPTION_POINTS
    max_capacity: int = 10**12
    max_price: int = 10**6
    max_weight: float = 1_000.0
    max_score: float = 1_000.0
    max_flight_days: int = 366
    max_solve_days: int = 31
    max_time_limit_s: float = 3_600.0
    max_page_size: int = 1_000
    default_page_size: int = 100


@dataclass
class Checker:
    """Accumulates (field, description) pairs; `raise_if_any` turns them into INVALID_ARGUMENT."""

    limits: Limits
    violations: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, description: str) -> None:
        self.violations.append((path, description))

    def raise_if_any(self, what: str) -> None:
        if self.violations:
            raise InvalidArgument(
                f"invalid {what}: {len(self.violations)} bad field(s)", violations=self.violations
            )

    def ident(self, path: str, value: str, *, required: bool = True) -> None:
        if not value:
            if required:
                self.add(path, "must not be empty")
        elif len(value) > self.limits.max_id_len:
            self.add(path, f"must be at most {self.limits.max_id_len} characters")
        elif not value.isprintable() or any(ch.isspace() for ch in value):
            self.add(path, "must be printable with no whitespace")

    def date(self, path: str, value: str) -> dt.date | None:
        try:
            if not _DATE.fullmatch(value):
                raise ValueError(value)
            return parse_date(value)
        except ValueError:
            self.add(path, f"must be a date in YYYY-MM-DD form, got {value[:40]!r}")
            return None

    def date_range(self, start_path: str, start: str, end_path: str, end: str, max_days: int) -> None:
        a, b = self.date(start_path, start), self.date(end_path, end)
        if a and b:
            if b < a:
                self.add(end_path, f"must not be before {start_path} ({start})")
            elif (b - a).days + 1 > max_days:
                self.add(end_path, f"the range may span at most {max_days} days")

    def channel(self, path: str, value: int) -> Channel | None:
        if value not in Channel._value2member_map_:
            self.add(
                path, f"unknown channel {value}; use one of {', '.join('CHANNEL_' + c.name for c in Channel)}"
            )
            return None
        return Channel(value)

    def program_channels(self, program_value: int, channels: Sequence[int], rules: Rules) -> None:
        """A known program, at least one channel, none repeated, each one the program's points may buy."""
        program = Program(program_value) if program_value in Program._value2member_map_ else None
        if program is None:
            self.add("program", "must be PROGRAM_STAR_PLAN or PROGRAM_LUOMA_PLAN")
        if not channels:
            self.add("channels", "must name at least one channel")
        if len(set(channels)) != len(channels):
            self.add("channels", "must not repeat a channel")
        allowed = rules.program_channels.get(program, frozenset()) if program else frozenset()
        for i, value in enumerate(channels):
            channel = self.channel(f"channels[{i}]", value)
            if channel is not None and program is not None and channel not in allowed:
                self.add(
                    f"channels[{i}]",
                    f"CHANNEL_{channel.name} may not be bought with PROGRAM_{program.name} points",
                )

    def regions(self, path: str, values: Iterable[str]) -> None:
        values = list(values)
        if not values:
            self.add(path, "must name at least one region")
        if len(values) > self.limits.max_regions:
            self.add(path, f"at most {self.limits.max_regions} regions")
        for i, r in enumerate(values[: self.limits.max_regions]):
            self.region(f"{path}[{i}]", r)
        if len(set(values)) != len(values):
            self.add(path, "must not repeat a region")

    def region(self, path: str, value: str) -> None:
        if not value:
            self.add(path, "must not be empty")
        elif len(value) > self.limits.max_region_len or not value.isprintable():
            self.add(path, f"must be printable and at most {self.limits.max_region_len} characters")

    def positive_float(self, path: str, value: float, maximum: float) -> None:
        if not math.isfinite(value) or value <= 0 or value > maximum:
            self.add(path, f"must be a finite number > 0 and <= {maximum:g}, got {value!r}")

    def page_size(self, path: str, value: int) -> int:
        if value < 0 or value > self.limits.max_page_size:
            self.add(
                path,
                f"must be within 0..{self.limits.max_page_size} (0 means {self.limits.default_page_size})",
            )
        return value or self.limits.default_page_size

    def page_token(self, path: str, token: str) -> str:
        """The cursor of a token make_page_token issued: an id or an offset (printable, no whitespace)."""
        if not token:
            return ""
        decoded = ""
        if len(token) <= 8 * self.limits.max_id_len and _TOKEN.fullmatch(token):
            try:
                decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            except (binascii.Error, ValueError, UnicodeDecodeError):
                decoded = ""
        cursor = decoded[2:]
        if not decoded.startswith("c:") or (
            cursor
            and (
                len(cursor) > self.limits.max_id_len
                or not cursor.isprintable()
                or any(ch.isspace() for ch in cursor)
            )
        ):
            self.add(path, "is not a token this service issued")
            return ""
        return cursor


def offset_token(c: Checker, path: str, token: str) -> int:
    """A page token that carries a position in a fixed list (inventory nodes, node entries)."""
    cursor = c.page_token(path, token)
    if cursor and not _OFFSET.fullmatch(cursor):
        c.add(path, "is not a token of this list")
        return 0
    return int(cursor) if cursor else 0


def make_page_token(cursor: str) -> str:
    return base64.urlsafe_b64encode(f"c:{cursor}".encode()).decode().rstrip("=") if cursor else ""


def check_inventory(req: pb.PublishInventoryRequest, limits: Limits) -> dt.date:
    c = Checker(limits)
    c.ident("request_id", req.request_id)
    date = c.date("date", req.date)
    if not req.nodes:
        c.add("nodes", "must hold at least one supply node")
    if len(req.nodes) > limits.max_nodes:
        c.add("nodes", f"at most {limits.max_nodes} supply nodes per date, got {len(req.nodes)}")
    else:
        seen: set[tuple[int, int, str]] = set()
        for i, n in enumerate(req.nodes):
            p = f"nodes[{i}]"
            if not 0 <= n.hour <= 23:
                c.add(f"{p}.hour", f"must be within 0..23, got {n.hour}")
            c.channel(f"{p}.channel", n.channel)
            c.region(f"{p}.region", n.region)
            if not 0 <= n.capacity_impressions <= limits.max_capacity:
                c.add(f"{p}.capacity_impressions", f"must be within 0..{limits.max_capacity}")
            if not 0 <= n.price_points_per_mille <= limits.max_price:
                c.add(
                    f"{p}.price_points_per_mille",
                    f"must be within 0..{limits.max_price} (0: channel default)",
                )
            key = (n.hour, n.channel, n.region)
            if key in seen:
                c.add(p, f"duplicates the node (hour {n.hour}, channel {n.channel}, region {n.region!r})")
            seen.add(key)
    c.raise_if_any("inventory")
    assert date is not None
    return date


def check_redemption(req: pb.RecordRedemptionRequest, rules: Rules, limits: Limits) -> None:
    c = Checker(limits)
    c.ident("request_id", req.request_id)
    c.ident("merchant_id", req.merchant_id)
    c.program_channels(req.program, req.channels, rules)
    if not 0 < req.points <= limits.max_points:
        c.add("points", f"must be > 0 and <= {limits.max_points}, got {req.points}")
    c.date_range(
        "flight_start_date",
        req.flight_start_date,
        "flight_end_date",
        req.flight_end_date,
        limits.max_flight_days,
    )
    c.regions("regions", req.regions)
    seen: set[int] = set()
    for i, q in enumerate(req.quality):
        c.channel(f"quality[{i}].channel", q.channel)
        c.positive_float(f"quality[{i}].score", q.score, limits.max_score)
        if q.channel in seen:
            c.add(f"quality[{i}].channel", "scored twice")
        seen.add(q.channel)
    c.raise_if_any("redemption")


def check_eligibility(req: pb.SetEligibilityRequest, limits: Limits) -> None:
    c = Checker(limits)
    c.ident("request_id", req.request_id)
    if not req.entries:
        c.add("entries", "must hold at least one entry")
    if len(req.entries) > limits.max_batch:
        c.add("entries", f"at most {limits.max_batch} entries per call, got {len(req.entries)}")
        c.raise_if_any("eligibility batch")
    seen: set[str] = set()
    for i, e in enumerate(req.entries):
        p = f"entries[{i}]"
        c.ident(f"{p}.merchant_id", e.merchant_id)
        if e.merchant_id in seen:
            c.add(f"{p}.merchant_id", "appears twice in the batch")
        seen.add(e.merchant_id)
        c.positive_float(f"{p}.weight", e.weight, limits.max_weight)
        c.regions(f"{p}.regions", e.regions)
        c.date_range(
            f"{p}.valid_from_date",
            e.valid_from_date,
            f"{p}.valid_to_date",
            e.valid_to_date,
            limits.max_flight_days,
        )
        if len(set(e.channels)) != len(e.channels):
            c.add(f"{p}.channels", "must not repeat a channel")
        for j, ch in enumerate(e.channels):
            c.channel(f"{p}.channels[{j}]", ch)
    c.raise_if_any("eligibility")


def check_clear(req: pb.ClearEligibilityRequest, limits: Limits) -> None:
    c = Checker(limits)
    c.ident("request_id", req.request_id)
    if not req.merchant_ids:
        c.add("merchant_ids", "must name at least one merchant")
    if len(req.merchant_ids) > limits.max_batch:
        c.add("merchant_ids", f"at most {limits.max_batch} merchants per call, got {len(req.merchant_ids)}")
    else:
        for i, m in enumerate(req.merchant_ids):
            c.ident(f"merchant_ids[{i}]", m)
    c.raise_if_any("clear request")


def check_solve(req: pb.SolveRequest, limits: Limits) -> tuple[dt.date, ...]:
    c = Checker(limits)
    end_text = req.end_date or req.start_date
    if req.end_date:
        c.date_range("start_date", req.start_date, "end_date", req.end_date, limits.max_solve_days)
    else:
        c.date("start_date", req.start_date)
    if (
        not math.isfinite(req.time_limit_seconds)
        or not 0 <= req.time_limit_seconds <= limits.max_time_limit_s
    ):
        c.add("time_limit_seconds", f"must be within 0..{limits.max_time_limit_s:g} (0: the default)")
    c.raise_if_any("solve request")
    start, end = parse_date(req.start_date), parse_date(end_text)
    return tuple(start + dt.timedelta(days=i) for i in range((end - start).days + 1))


def check_availability(req: pb.CheckAvailabilityRequest, rules: Rules, limits: Limits) -> tuple[dt.date, ...]:
    """Validate a hypothetical redemption; returns the flight's dates."""
    c = Checker(limits)
    c.program_channels(req.program, req.channels, rules)
    c.regions("regions", req.regions)
    c.date_range(
        "flight_start_date",
        req.flight_start_date,
        "flight_end_date",
        req.flight_end_date,
        limits.max_solve_days,
    )
    c.raise_if_any("availability check")
    start, end = parse_date(req.flight_start_date), parse_date(req.flight_end_date)
    return tuple(start + dt.timedelta(days=i) for i in range((end - start).days + 1))


def check_merchant_query(merchant_id: str, date: str, plan_id: str, limits: Limits) -> dt.date:
    """A merchant, a date and an optional plan id (allocation and explanation queries)."""
    c = Checker(limits)
    c.ident("merchant_id", merchant_id)
    parsed = c.date("date", date)
    c.ident("plan_id", plan_id, required=False)
    c.raise_if_any("merchant query")
    assert parsed is not None
    return parsed
