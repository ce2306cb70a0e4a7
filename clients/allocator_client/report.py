"""The plan report: pure figures from one ``GetPlanReportResponse``, then plan.png and plan.html.

Everything here is a pure function of the response, so it is testable without a server:

* ``fill_matrix``: fill (paid + free) / capacity per channel × hour, summed over regions and dates;
* ``channel_totals``: capacity, paid, free and fill per channel, summed over every node (these must
  equal the summary's ``channels``);
* ``program_rows``: points due, delivered and under-delivered per program (the summary's ``programs``);
* ``free_levels``, ``lorenz_curve``, ``jain_index``: the free pool's distribution of impressions per
  unit weight over merchants;
* ``most_saturated``: the nodes with the highest fill, ties by shadow price;
* ``summary_mismatches``: every figure above that disagrees with the plan summary (empty when sound).

``write_report`` draws plan.png (matplotlib, imported lazily in ``report_png``) and a self-contained
plan.html (``report_html``) into a directory. Only standard-library imports at module level, so the
CLI works without the ``report`` extra.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from trafficalloc.v1 import allocator_pb2 as pb

logger = logging.getLogger(__name__)

__all__ = [
    "ChannelTotals",
    "MissingReportDependency",
    "ProgramRow",
    "ReportData",
    "channel_totals",
    "fill_matrix",
    "free_levels",
    "jain_index",
    "lorenz_curve",
    "most_saturated",
    "node_fill",
    "program_rows",
    "report_data",
    "require_matplotlib",
    "summary_mismatches",
    "write_report",
]

HOURS = 24
CHANNELS: tuple[pb.Channel.ValueType, ...] = (
    pb.CHANNEL_HOMEPAGE_CARD,
    pb.CHANNEL_PAYMENT_SUCCESS,
    pb.CHANNEL_SEARCH_RECOMMENDATION,
)
PROGRAMS: tuple[pb.Program.ValueType, ...] = (pb.PROGRAM_STAR_PLAN, pb.PROGRAM_LUOMA_PLAN)
TOP_NODES = 10


class MissingReportDependency(RuntimeError):
    """matplotlib (the ``report`` extra of allocator-client) is not installed."""


def require_matplotlib() -> None:
    """Raise ``MissingReportDependency`` with the install command when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingReportDependency(
            "the plan report needs matplotlib, which is not installed; "
            "install it with: pip install 'allocator-client[report]' (or pip install matplotlib)"
        )


@dataclass(frozen=True)
class ChannelTotals:
    channel: int
    capacity_impressions: int
    paid_impressions: int
    free_impressions: int
    fill_rate: float  # (paid + free) / capacity, 0.0 without capacity


@dataclass(frozen=True)
class ProgramRow:
    program: int
    redemptions: int
    points_due: int
    points_delivered: int
    points_under_delivered: int
    impressions: int

    @property
    def delivered_share(self) -> float:
        return self.points_delivered / self.points_due if self.points_due else 1.0


@dataclass(frozen=True)
class ReportData:
    """Everything the PNG and the HTML show, computed once."""

    plan: pb.PlanSummary
    channels: tuple[int, ...]  # rows of ``fill``
    fill: tuple[tuple[float | None, ...], ...]  # channel × hour; None where there is no capacity
    channel_totals: tuple[ChannelTotals, ...]
    programs: tuple[ProgramRow, ...]
    free_levels: tuple[float, ...]  # impressions per unit weight, one per merchant, ascending
    free_impressions: int
    free_merchants: int
    jain: float
    lorenz: tuple[tuple[float, ...], tuple[float, ...]]
    top_nodes: tuple[pb.NodeReport, ...]
    node_count: int
    paid_impressions: int  # over every node


def node_fill(node: pb.NodeReport) -> float:
    """(paid + free) / capacity of one node, 0.0 without capacity."""
    cap = node.capacity_impressions
    return (node.paid_impressions + node.free_impressions) / cap if cap else 0.0


def channel_totals(nodes: Iterable[pb.NodeReport]) -> tuple[ChannelTotals, ...]:
    """Per channel (enum order), summed over every node: the same sums as the summary's ``channels``."""
    sums = {c: [0, 0, 0] for c in CHANNELS}
    for node in nodes:
        acc = sums.setdefault(node.channel, [0, 0, 0])
        acc[0] += node.capacity_impressions
        acc[1] += node.paid_impressions
        acc[2] += node.free_impressions
    return tuple(
        ChannelTotals(c, cap, paid, free, (paid + free) / cap if cap else 0.0)
        for c, (cap, paid, free) in sorted(sums.items())
    )


def fill_matrix(
    nodes: Iterable[pb.NodeReport],
) -> tuple[tuple[int, ...], tuple[tuple[float | None, ...], ...]]:
    """Channels (rows) and fill per channel × hour 0..23, summed over regions and dates.

    A cell is sum(paid + free) / sum(capacity) of its nodes, or None when they have no capacity.
    """
    cap: dict[tuple[int, int], int] = {}
    used: dict[tuple[int, int], int] = {}
    for node in nodes:
        key = (node.channel, node.hour)
        cap[key] = cap.get(key, 0) + node.capacity_impressions
        used[key] = used.get(key, 0) + node.paid_impressions + node.free_impressions
    channels = tuple(sorted({*CHANNELS, *(c for c, _ in cap)}))
    rows = tuple(
        tuple(used[(c, h)] / cap[(c, h)] if cap.get((c, h)) else None for h in range(HOURS)) for c in channels
    )
    return channels, rows


def program_rows(plan: pb.PlanSummary) -> tuple[ProgramRow, ...]:
    """Paid delivery per program, in enum order; a program absent from the summary counts as zeros."""
    given = {p.program: p for p in plan.programs}
    rows = []
    for program in sorted({*PROGRAMS, *given}):
        p = given.get(program, pb.ProgramDelivery(program=program))
        rows.append(
            ProgramRow(
                program,
                p.redemptions,
                p.points_due,
                p.points_delivered,
                p.points_under_delivered,
                p.impressions,
            )
        )
    return tuple(rows)


def free_levels(shares: Iterable[pb.FreeShare]) -> tuple[float, ...]:
    """Free impressions per unit weight of each merchant, ascending (merchants with weight 0 skipped)."""
    return tuple(sorted(s.impressions / s.weight for s in shares if s.weight > 0))


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index (sum x)^2 / (n * sum x^2); 1.0 when empty or all zero (as the server)."""
    square = math.fsum(x * x for x in values)
    if not values or square == 0.0:
        return 1.0
    return math.fsum(values) ** 2 / (len(values) * square)


def lorenz_curve(values: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Cumulative share of merchants (x) against cumulative share of the total (y), from (0, 0).

    ``values`` are sorted ascending first; with no values or a zero total the curve is the diagonal.
    """
    ordered = sorted(values)
    total = math.fsum(ordered)
    n = len(ordered)
    if n == 0 or total == 0.0:
        return (0.0, 1.0), (0.0, 1.0)
    xs, ys, running = [0.0], [0.0], 0.0
    for i, x in enumerate(ordered, start=1):
        running += x
        xs.append(i / n)
        ys.append(running / total)
    return tuple(xs), tuple(ys)


def most_saturated(nodes: Iterable[pb.NodeReport], limit: int = TOP_NODES) -> tuple[pb.NodeReport, ...]:
    """The ``limit`` nodes with the highest fill; ties by the higher shadow price, then by position."""
    ranked = sorted(
        nodes,
        key=lambda n: (-node_fill(n), -n.shadow_value_per_mille, n.date, n.channel, n.hour, n.region),
    )
    return tuple(ranked[:limit])


def report_data(response: pb.GetPlanReportResponse) -> ReportData:
    """Every figure of the report, from one GetPlanReport response."""
    channels, fill = fill_matrix(response.nodes)
    levels = free_levels(response.free_shares)
    return ReportData(
        plan=response.plan,
        channels=channels,
        fill=fill,
        channel_totals=channel_totals(response.nodes),
        programs=program_rows(response.plan),
        free_levels=levels,
        free_impressions=sum(s.impressions for s in response.free_shares),
        free_merchants=len(response.free_shares),
        jain=jain_index(levels),
        lorenz=lorenz_curve(levels),
        top_nodes=most_saturated(response.nodes),
        node_count=len(response.nodes),
        paid_impressions=sum(n.paid_impressions for n in response.nodes),
    )


def summary_mismatches(data: ReportData, *, jain_tolerance: float = 1e-9) -> list[str]:
    """Every figure computed from the nodes and shares that disagrees with the plan summary.

    The summary's Jain index is over merchant-days; the report's is over merchants for the whole plan,
    so the two are compared only for single-date plans.
    """
    plan, problems = data.plan, []
    summary_channels = {c.channel: c for c in plan.channels}
    for mine in data.channel_totals:
        theirs = summary_channels.get(mine.channel) or pb.ChannelFill()  # type: ignore[call-overload]
        got = (mine.capacity_impressions, mine.paid_impressions, mine.free_impressions)
        want = (theirs.capacity_impressions, theirs.paid_impressions, theirs.free_impressions)
        if got != want or not math.isclose(mine.fill_rate, theirs.fill_rate, rel_tol=1e-12, abs_tol=1e-12):
            problems.append(f"channel {mine.channel}: nodes give {got} fill {mine.fill_rate}, summary {want}")
    for row in data.programs:
        if row.points_delivered + row.points_under_delivered != row.points_due:
            problems.append(f"program {row.program}: delivered + under != due")
    program_impressions = sum(r.impressions for r in data.programs)
    if program_impressions != data.paid_impressions:
        problems.append(f"paid impressions: programs {program_impressions}, nodes {data.paid_impressions}")
    if data.free_impressions != plan.free_impressions:
        problems.append(f"free impressions: shares {data.free_impressions}, summary {plan.free_impressions}")
    if data.free_merchants != plan.free_merchants:
        problems.append(f"free merchants: shares {data.free_merchants}, summary {plan.free_merchants}")
    if data.node_count != plan.supply_nodes:
        problems.append(f"nodes: report {data.node_count}, summary {plan.supply_nodes}")
    single_day = plan.start_date == plan.end_date
    if single_day and not math.isclose(data.jain, plan.free_jain_index, abs_tol=jain_tolerance):
        problems.append(f"Jain index: shares {data.jain!r}, summary {plan.free_jain_index!r}")
    return problems


def write_report(response: pb.GetPlanReportResponse, out_dir: Path) -> tuple[Path, Path]:
    """Write ``out_dir``/plan.png and ``out_dir``/plan.html; return their paths."""
    require_matplotlib()
    from allocator_client.report_html import render_html
    from allocator_client.report_png import render_png

    data = report_data(response)
    for problem in summary_mismatches(data):
        logger.warning("plan report disagrees with the summary: %s", problem)
    png = render_png(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    png_path, html_path = out_dir / "plan.png", out_dir / "plan.html"
    png_path.write_bytes(png)
    html_path.write_text(render_html(data, png), encoding="utf-8")
    return png_path, html_path
