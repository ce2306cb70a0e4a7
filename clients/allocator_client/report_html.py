"""plan.html: the plan report as one self-contained page (inline CSS, the PNG as a data URI, tables)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from html import escape

from allocator_client.report import ReportData, node_fill, summary_mismatches
from allocator_client.report_png import channel_label, program_label, status_colour, status_label

logger = logging.getLogger(__name__)

__all__ = ["render_html"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #212121; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
h2 { font-size: 17px; margin: 28px 0 8px 0; border-bottom: 1px solid #e0e0e0; padding-bottom: 4px; }
.sub { color: #555; margin-bottom: 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #e0e0e0; border-radius: 8px; padding: 10px 14px; min-width: 150px; }
.card .k { font-size: 12px; color: #666; } .card .v { font-size: 20px; font-weight: 600; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #e0e0e0; padding: 4px 8px; }
th { background: #eceff1; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.heat { text-align: center; min-width: 26px; padding: 4px 2px; }
tr.relieves td { background: #ffebee; }
.warn { color: #b35900; } img { max-width: 100%; border: 1px solid #e0e0e0; }
"""


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' * (i in numeric)}>{escape(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _heat_colour(value: float) -> str:
    """White (empty) to deep red (full), as an rgb() string."""
    v = min(max(value, 0.0), 1.0)
    return f"rgb({255 - int(40 * v)},{int(255 - 200 * v)},{int(235 - 215 * v)})"


def _fill_table(data: ReportData) -> str:
    head = "<th>channel</th>" + "".join(f"<th>{h:02d}</th>" for h in range(24))
    rows = []
    for channel, row in zip(data.channels, data.fill, strict=True):
        cells = "".join(
            '<td class=heat style="background:#e0e0e0">–</td>'
            if v is None
            else f'<td class=heat style="background:{_heat_colour(v)}">{v * 100:.0f}</td>'
            for v in row
        )
        rows.append(f"<tr><th>{escape(channel_label(channel))}</th>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _card(key: str, value: str, colour: str = "") -> str:
    style = f' style="color:{colour}"' if colour else ""
    return f"<div class=card><div class=k>{escape(key)}</div><div class=v{style}>{escape(value)}</div></div>"


def render_html(data: ReportData, png: bytes) -> str:
    """The page: header, headline cards, the figure inline, then every figure as a table."""
    plan = data.plan
    dates = plan.start_date if plan.start_date == plan.end_date else f"{plan.start_date} .. {plan.end_date}"
    status = status_label(plan.status)
    title = f"Traffic plan {plan.plan_id} · {dates} · {status}"
    delivered = sum(r.points_delivered for r in data.programs)
    due = sum(r.points_due for r in data.programs)
    cards = "".join(
        [
            _card("status", status, status_colour(plan.status)),
            _card("dates", dates),
            _card("objective (total)", f"{plan.objective.total:,.1f}"),
            _card("solve time", f"{plan.solve_seconds:.2f} s"),
            _card("points delivered", f"{delivered / due:.1%}" if due else "–"),
            _card("free Jain index", f"{data.jain:.4f}"),
        ]
    )
    detail = f"<p class=warn>{escape(plan.status_detail)}</p>" if plan.status_detail else ""
    problems = summary_mismatches(data)
    mismatch = (
        "<p class=warn>Report figures that disagree with the plan summary: "
        + escape("; ".join(problems))
        + "</p>"
        if problems
        else ""
    )
    image = base64.b64encode(png).decode("ascii")
    channel_rows = [
        [channel_label(t.channel), _n(t.capacity_impressions), _n(t.paid_impressions),
         _n(t.free_impressions), f"{t.fill_rate:.1%}"]
        for t in data.channel_totals
    ]  # fmt: skip
    program_table = [
        [program_label(r.program), _n(r.redemptions), _n(r.points_due), _n(r.points_delivered),
         _n(r.points_under_delivered), f"{r.delivered_share:.1%}", _n(r.impressions)]
        for r in data.programs
    ]  # fmt: skip
    many_dates = plan.start_date != plan.end_date
    node_rows = []
    for rank, node in enumerate(data.top_nodes, start=1):
        cells = [
            str(rank),
            *([node.date] if many_dates else []),
            channel_label(node.channel),
            f"{node.hour:02d}:00",
            node.region,
            f"{node_fill(node):.1%}",
            _n(node.paid_impressions),
            _n(node.free_impressions),
            _n(node.capacity_impressions),
            _n(node.price_points_per_mille),
            f"{node.shadow_value_per_mille:,.2f}",
            "yes" if node.relieves_under_delivery else "no",
        ]
        cls = " class=relieves" if node.relieves_under_delivery else ""
        offset = 1 if many_dates else 0
        tds = "".join(
            f"<td{' class=n' * (i == 0 or i >= 5 + offset)}>{escape(c)}</td>" for i, c in enumerate(cells)
        )
        node_rows.append(f"<tr{cls}>{tds}</tr>")
    node_head = "".join(
        f"<th>{escape(h)}</th>"
        for h in ["#", *(["date"] if many_dates else []), "channel", "hour", "region", "fill", "paid",
                  "free", "capacity", "price (pts/mille)", "shadow value per mille",
                  "relieves under-delivery"]
    )  # fmt: skip
    lowest = f"{data.free_levels[0]:,.1f}" if data.free_levels else "–"
    free_rows = [
        ["merchants with eligible supply", _n(data.free_merchants)],
        ["free impressions", _n(data.free_impressions)],
        ["lowest impressions per unit weight", lowest],
        ["min level (summary)", f"{plan.free_min_level:,.1f}"],
        ["Jain's index (computed from the shares)", f"{data.jain:.6f}"],
        ["Jain's index (plan summary)", f"{plan.free_jain_index:.6f}"],
    ]
    sub = (
        f"objective value {plan.objective.value:,.1f}, under-delivery penalty "
        f"{plan.objective.under_delivery_penalty:,.1f}; build {plan.build_seconds:.2f} s, "
        f"solve {plan.solve_seconds:.2f} s; {plan.supply_nodes:,} nodes, {plan.demands:,} demands, "
        f"{plan.arcs:,} arcs"
    )
    program_head = ["program", "redemptions", "points due", "delivered", "under-delivered", "delivered %"]
    programs = _table([*program_head, "impressions"], program_table, {1, 2, 3, 4, 5, 6})
    channels = _table(["channel", "capacity", "paid", "free", "fill"], channel_rows, {1, 2, 3, 4})
    top = f"<table><thead><tr>{node_head}</tr></thead><tbody>{''.join(node_rows)}</tbody></table>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<div class=sub>{escape(sub)}</div>
{detail}{mismatch}
<div class=cards>{cards}</div>
<h2>Overview</h2>
<img alt="plan report figure" src="data:image/png;base64,{image}">
<h2>Fill per channel (all hours, regions and dates)</h2>
{channels}
<h2>Fill by channel × hour, % ((paid + free) / capacity, regions and dates summed)</h2>
{_fill_table(data)}
<h2>Paid points per program</h2>
{programs}
<h2>Free pool (daily promotion)</h2>
{_table(["figure", "value"], free_rows, {1})}
<h2>The {len(data.top_nodes)} most saturated supply nodes (highest fill, ties by shadow price)</h2>
{top}
</body></html>
"""
