"""plan.png: the plan report as one figure (matplotlib, Agg backend, imported only when drawing)."""

from __future__ import annotations

import io
import logging
from typing import Any

from allocator_client.report import ReportData, node_fill
from trafficalloc.v1 import allocator_pb2 as pb

logger = logging.getLogger(__name__)

__all__ = ["channel_label", "compact", "program_label", "render_png", "status_colour", "status_label"]

_CHANNEL_LABELS = {
    pb.CHANNEL_HOMEPAGE_CARD: "Homepage card",
    pb.CHANNEL_PAYMENT_SUCCESS: "Payment success",
    pb.CHANNEL_SEARCH_RECOMMENDATION: "Search recommendation",
}
_PROGRAM_LABELS = {pb.PROGRAM_STAR_PLAN: "Star Plan 2.0", pb.PROGRAM_LUOMA_PLAN: "Luoma plan"}
_STATUS_COLOURS = {
    pb.PLAN_STATUS_OPTIMAL: "#1a7f37",
    pb.PLAN_STATUS_PARTIAL: "#b35900",
    pb.PLAN_STATUS_TIME_LIMIT: "#b35900",
    pb.PLAN_STATUS_FAILED: "#c62828",
}
DUE, DELIVERED, UNDER = "#9e9e9e", "#2e7d32", "#c62828"


def channel_label(channel: int) -> str:
    return _CHANNEL_LABELS.get(channel, f"channel {channel}")  # type: ignore[call-overload]


def program_label(program: int) -> str:
    return _PROGRAM_LABELS.get(program, f"program {program}")  # type: ignore[call-overload]


def status_label(status: int) -> str:
    try:
        return pb.PlanStatus.Name(status).removeprefix("PLAN_STATUS_")  # type: ignore[arg-type]
    except ValueError:
        return str(status)


def status_colour(status: int) -> str:
    return _STATUS_COLOURS.get(status, "#333333")  # type: ignore[call-overload]


def compact(value: float) -> str:
    """12,345,678 -> '12.3M'; 45,600 -> '45.6k'; 950 -> '950'."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:,.0f}"


def render_png(data: ReportData, *, dpi: int = 100) -> bytes:
    """The report figure as PNG bytes: header, fill heatmap, delivery bars, Lorenz curve, top nodes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 13), dpi=dpi, layout="constrained")
    header = 0.17 if data.plan.status_detail else 0.13
    grid = fig.add_gridspec(4, 2, height_ratios=[header, 1.0, 1.35, 1.15], width_ratios=[1.1, 1.0])
    _header(fig.add_subplot(grid[0, :]), data)
    _heatmap(fig, fig.add_subplot(grid[1, :]), data)
    _programs(fig.add_subplot(grid[2, 0]), data)
    _lorenz(fig.add_subplot(grid[2, 1]), data)
    _top_nodes(fig.add_subplot(grid[3, :]), data)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


def _header(ax: Any, data: ReportData) -> None:
    ax.axis("off")
    plan = data.plan
    dates = plan.start_date if plan.start_date == plan.end_date else f"{plan.start_date} .. {plan.end_date}"
    status = status_label(plan.status)
    ax.text(
        0.5,
        1.0,
        f"Traffic plan {plan.plan_id}   ·   {dates}   ·   {status}",
        ha="center",
        va="top",
        fontsize=17,
        fontweight="bold",
        color=status_colour(plan.status),
        transform=ax.transAxes,
    )
    line = (
        f"objective {plan.objective.total:,.1f} (value {plan.objective.value:,.1f}, "
        f"under-delivery penalty {plan.objective.under_delivery_penalty:,.1f})   ·   "
        f"solve {plan.solve_seconds:.2f} s + build {plan.build_seconds:.2f} s   ·   "
        f"{plan.supply_nodes:,} nodes, {plan.demands:,} demands, {plan.arcs:,} arcs"
    )
    if plan.status_detail:
        line += f"\n{plan.status_detail}"
    ax.text(0.5, 0.45, line, ha="center", va="top", fontsize=11, color="#333333", transform=ax.transAxes)


def _heatmap(fig: Any, ax: Any, data: ReportData) -> None:
    import numpy as np
    from matplotlib import colormaps

    values = np.ma.masked_invalid(
        np.array([[np.nan if v is None else v for v in row] for row in data.fill], dtype=float)
    )
    cmap = colormaps["YlOrRd"].with_extremes(bad="#e0e0e0")
    image = ax.imshow(values * 100, cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for r, row in enumerate(data.fill):
        for h, value in enumerate(row):
            text = "–" if value is None else f"{value * 100:.0f}"
            dark = value is not None and value > 0.65
            ax.text(h, r, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
    totals = {t.channel: t for t in data.channel_totals}
    labels = []
    for c in data.channels:
        total = totals.get(c)
        labels.append(f"{channel_label(c)}\n{total.fill_rate:.1%} overall" if total else channel_label(c))
    ax.set_yticks(range(len(data.channels)), labels, fontsize=10)
    ax.set_xticks(range(24), [f"{h:02d}" for h in range(24)], fontsize=9)
    ax.set_xlabel("hour of day (all regions and dates summed)")
    ax.set_title("Fill by channel × hour: (paid + free) / capacity, %", fontsize=13, loc="left")
    colorbar = fig.colorbar(image, ax=ax, pad=0.01, fraction=0.03)
    colorbar.set_label("fill %")


def _programs(ax: Any, data: ReportData) -> None:
    rows = data.programs
    xs = range(len(rows))
    width = 0.26
    series = (
        ("due", DUE, [r.points_due for r in rows], -width),
        ("delivered", DELIVERED, [r.points_delivered for r in rows], 0.0),
        ("under-delivered", UNDER, [r.points_under_delivered for r in rows], width),
    )
    top = max((v for _, _, values, _ in series for v in values), default=0) or 1
    for label, colour, values, offset in series:
        bars = ax.bar([x + offset for x in xs], values, width, label=label, color=colour)
        for bar, value in zip(bars, values, strict=True):
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                bar.get_height() + top * 0.01,
                compact(value),
                ha="center",
                va="bottom",
                fontsize=9,
            )
    ax.set_xticks(
        list(xs),
        [
            f"{program_label(r.program)}\n{r.redemptions:,} redemptions · {r.delivered_share:.1%} delivered"
            for r in rows
        ],
        fontsize=10,
    )
    ax.set_ylim(0, top * 1.15)
    ax.yaxis.set_major_formatter(lambda v, _pos: compact(v))
    ax.set_ylabel("points")
    ax.set_title("Paid points per program: due vs delivered vs under-delivered", fontsize=13, loc="left")
    ax.legend(loc="upper right", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)


def _lorenz(ax: Any, data: ReportData) -> None:
    from matplotlib.ticker import PercentFormatter

    xs, ys = data.lorenz
    ax.plot([0, 1], [0, 1], linestyle="--", color="#757575", label="perfect equality")
    ax.plot(xs, ys, color="#1565c0", linewidth=2, label="this plan")
    ax.fill_between(xs, ys, xs, color="#1565c0", alpha=0.12)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal", adjustable="box")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("share of daily-promotion merchants (least served first)")
    ax.set_ylabel("share of free impressions per weight")
    ax.set_title("Free pool: Lorenz curve over merchants", fontsize=13, loc="left")
    plan = data.plan
    lowest = f"{data.free_levels[0]:,.0f}" if data.free_levels else "–"
    box = (
        f"Jain index (report)   {data.jain:.4f}\n"
        f"Jain index (summary) {plan.free_jain_index:.4f}\n"
        f"merchants {data.free_merchants:,}\n"
        f"free impressions {compact(data.free_impressions)}\n"
        f"min level {lowest} / weight"
    )
    ax.text(
        0.04,
        0.96,
        box,
        transform=ax.transAxes,
        va="top",
        fontsize=10,
        family="monospace",
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#bdbdbd"},
    )
    ax.legend(loc="lower right", frameon=False, fontsize=9)


def _top_nodes(ax: Any, data: ReportData) -> None:
    ax.axis("off")
    ax.set_title(
        f"The {len(data.top_nodes)} most saturated supply nodes (highest fill, ties by shadow price)",
        fontsize=13,
        loc="left",
    )
    if not data.top_nodes:
        ax.text(0.5, 0.5, "no supply nodes", ha="center", va="center", transform=ax.transAxes)
        return
    many_dates = len({n.date for n in data.top_nodes}) > 1 or data.plan.start_date != data.plan.end_date
    columns = [
        *(["date"] if many_dates else []),
        "channel",
        "hour",
        "region",
        "fill",
        "paid",
        "free",
        "capacity",
        "price\npts/mille",
        "shadow value\nper mille",
        "relieves\nunder-delivery",
    ]
    cells, colours = [], []
    for node in data.top_nodes:
        cells.append(
            [
                *([node.date] if many_dates else []),
                channel_label(node.channel),
                f"{node.hour:02d}:00",
                node.region,
                f"{node_fill(node):.1%}",
                f"{node.paid_impressions:,}",
                f"{node.free_impressions:,}",
                f"{node.capacity_impressions:,}",
                f"{node.price_points_per_mille:,}",
                f"{node.shadow_value_per_mille:,.2f}",
                "YES" if node.relieves_under_delivery else "no",
            ]
        )
        colours.append(["#ffebee" if node.relieves_under_delivery else "white"] * len(columns))
    wide = {
        "channel": 0.17,
        "date": 0.09,
        "shadow value\nper mille": 0.095,
        "relieves\nunder-delivery": 0.105,
    }
    widths = [wide.get(name, 0.08) for name in columns]
    table = ax.table(
        cellText=cells,
        colLabels=columns,
        cellColours=colours,
        colWidths=widths,
        loc="upper center",
        cellLoc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1.0, 1.45)
    for (row, _col), cell in table.get_celld().items():
        cell.set_edgecolor("#d0d0d0")
        if row == 0:
            cell.set_facecolor("#eceff1")
            cell.set_text_props(fontweight="bold")
            cell.set_height(cell.get_height() * 1.6)
