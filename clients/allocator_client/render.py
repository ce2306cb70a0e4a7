"""Rich tables for the service's messages, shared by allocatorctl and the demo."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import grpc
from rich.console import Console, Group, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from allocator_client.client import AllocatorClient
from allocator_client.errors import AllocatorError
from allocator_client.scenario import Scenario, apply_scenario
from trafficalloc.v1 import allocator_pb2 as pb

__all__ = [
    "apply_with_progress",
    "channel_name",
    "eligibility_table",
    "hours_label",
    "inventory_table",
    "merchant_allocation_view",
    "node_allocation_view",
    "plan_view",
    "program_name",
    "redemption_table",
    "rules_view",
    "solve_phase_name",
    "solve_with_progress",
]

_STATUS_STYLE = {
    pb.PLAN_STATUS_OPTIMAL: "bold green",
    pb.PLAN_STATUS_PARTIAL: "bold yellow",
    pb.PLAN_STATUS_TIME_LIMIT: "bold yellow",
    pb.PLAN_STATUS_FAILED: "bold red",
}


_CHANNELS: dict[int, str] = {number: name.removeprefix("CHANNEL_") for name, number in pb.Channel.items()}
_PROGRAMS: dict[int, str] = {number: name.removeprefix("PROGRAM_") for name, number in pb.Program.items()}
_PLAN_STATUSES: dict[int, str] = {
    number: name.removeprefix("PLAN_STATUS_") for name, number in pb.PlanStatus.items()
}
_REDEMPTION_STATUSES: dict[int, str] = {
    n: name.removeprefix("REDEMPTION_STATUS_") for name, n in pb.RedemptionStatus.items()
}


def channel_name(value: int) -> str:
    """HOMEPAGE_CARD for CHANNEL_HOMEPAGE_CARD: short, still unambiguous."""
    return _CHANNELS.get(value, str(value))


def program_name(value: int) -> str:
    return _PROGRAMS.get(value, str(value))


def _status_name(value: int) -> str:
    return _PLAN_STATUSES.get(value, str(value))


def _n(value: float) -> str:
    return f"{value:,.0f}"


def hours_label(hours: Iterable[int]) -> str:
    """Compress hours into ranges: [0,1,2,5,7,8] -> '0-2,5,7-8'."""
    ordered = sorted(set(hours))
    parts: list[str] = []
    start = prev = None
    for hour in [*ordered, None]:
        if start is not None and (hour is None or prev is None or hour != prev + 1):
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = None
        if hour is not None and start is None:
            start = hour
        prev = hour
    return ",".join(parts)


def rules_view(rules: pb.GetRulesResponse) -> RenderableType:
    programs = Table(title="Programs")
    programs.add_column("program")
    programs.add_column("channels")
    for rule in rules.programs:
        programs.add_row(program_name(rule.program), ", ".join(channel_name(c) for c in rule.channels))
    channels = Table(title="Channels")
    channels.add_column("channel")
    channels.add_column("default price (pts/mille)", justify="right")
    channels.add_column("daily-promotion share", justify="right")
    for channel_rule in rules.channels:
        channels.add_row(
            channel_name(channel_rule.channel),
            _n(channel_rule.default_price_points_per_mille),
            f"{channel_rule.daily_promotion_share:.1%}",
        )
    quota = f"daily-promotion quota per weight: {_n(rules.daily_promotion_quota_per_weight)} impressions"
    return Group(programs, channels, quota)


def inventory_table(nodes: Sequence[pb.SupplyNode], *, title: str = "Inventory") -> Table:
    table = Table(title=title)
    for name in ("channel", "hour", "region"):
        table.add_column(name)
    table.add_column("capacity", justify="right")
    table.add_column("price (pts/mille)", justify="right")
    for node in nodes:
        price = _n(node.price_points_per_mille) if node.price_points_per_mille else "default"
        table.add_row(
            channel_name(node.channel), str(node.hour), node.region, _n(node.capacity_impressions), price
        )
    return table


def redemption_table(redemptions: Sequence[pb.Redemption], *, title: str = "Redemptions") -> Table:
    table = Table(title=title)
    for name in ("id", "merchant", "program", "points", "channels", "flight", "regions", "status"):
        table.add_column(name, justify="right" if name == "points" else "left", overflow="fold")
    for r in redemptions:
        flight = (
            r.flight_start_date
            if r.flight_start_date == r.flight_end_date
            else (f"{r.flight_start_date}..{r.flight_end_date}")
        )
        table.add_row(
            r.redemption_id,
            r.merchant_id,
            program_name(r.program),
            _n(r.points),
            ", ".join(channel_name(c) for c in r.channels),
            flight,
            ", ".join(r.regions),
            _REDEMPTION_STATUSES.get(r.status, str(r.status)),
        )
    return table


def eligibility_table(
    entries: Sequence[pb.DailyPromotionEligibility], *, title: str = "Eligibility"
) -> Table:
    table = Table(title=title)
    for name in ("merchant", "weight", "regions", "valid", "channels"):
        table.add_column(name, justify="right" if name == "weight" else "left")
    for e in entries:
        channels = ", ".join(channel_name(c) for c in e.channels) or "all"
        table.add_row(
            e.merchant_id,
            f"{e.weight:g}",
            ", ".join(e.regions),
            f"{e.valid_from_date}..{e.valid_to_date}",
            channels,
        )
    return table


def plan_view(plan: pb.PlanSummary) -> RenderableType:
    """The summary a planner reads first: outcome, delivery per program, fill per channel, fairness."""
    head = Table(title=f"Plan {plan.plan_id}", show_header=False)
    head.add_column(style="bold")
    head.add_column()
    style = _STATUS_STYLE.get(plan.status, "")
    head.add_row(
        "status",
        f"[{style}]{_status_name(plan.status)}[/]" + (f" — {plan.status_detail}" * bool(plan.status_detail)),
    )
    head.add_row("dates", f"{plan.start_date}..{plan.end_date}")
    head.add_row("active / cache hit", f"{plan.active} / {plan.cache_hit}")
    head.add_row(
        "objective",
        f"value {plan.objective.value:,.1f}, penalty {plan.objective.under_delivery_penalty:,.1f}, "
        f"total {plan.objective.total:,.1f}",
    )
    head.add_row("free pool", f"{_n(plan.free_impressions)} impressions to {plan.free_merchants:,} merchants")
    head.add_row(
        "free fairness", f"min level {plan.free_min_level:,.1f} /weight, Jain {plan.free_jain_index:.4f}"
    )
    head.add_row("size", f"{plan.supply_nodes:,} nodes, {plan.demands:,} demands, {plan.arcs:,} arcs")
    head.add_row("time", f"build {plan.build_seconds:.2f} s, solve {plan.solve_seconds:.2f} s")

    programs = Table(title="Paid delivery per program")
    for name in ("program", "redemptions", "points due", "delivered", "under", "impressions"):
        programs.add_column(name, justify="left" if name == "program" else "right")
    for p in plan.programs:
        under = f"[red]{_n(p.points_under_delivered)}[/]" if p.points_under_delivered else "0"
        programs.add_row(
            program_name(p.program),
            _n(p.redemptions),
            _n(p.points_due),
            _n(p.points_delivered),
            under,
            _n(p.impressions),
        )
    channels = Table(title="Fill per channel")
    for name in ("channel", "capacity", "paid", "free", "fill"):
        channels.add_column(name, justify="left" if name == "channel" else "right")
    for c in plan.channels:
        channels.add_row(
            channel_name(c.channel),
            _n(c.capacity_impressions),
            _n(c.paid_impressions),
            _n(c.free_impressions),
            f"{c.fill_rate:.1%}",
        )
    return Group(head, programs, channels)


def _cells_table(title: str, cells: Sequence[pb.AllocationCell], *, paid: bool, detailed: bool) -> Table:
    table = Table(title=title)
    columns = ("channel", "hour", "region") if detailed else ("channel", "region", "hours")
    for name in columns:
        table.add_column(name)
    table.add_column("impressions", justify="right")
    if paid:
        table.add_column("points", justify="right")
    if detailed:
        for cell in cells:
            row = [channel_name(cell.channel), str(cell.hour), cell.region, _n(cell.impressions)]
            table.add_row(*row, *([_n(cell.points)] if paid else []))
        return table
    groups: dict[tuple[int, str], list[pb.AllocationCell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.channel, cell.region)].append(cell)
    for (channel, region), group in sorted(groups.items()):
        row = [
            channel_name(channel),
            region,
            hours_label(c.hour for c in group),
            _n(sum(c.impressions for c in group)),
        ]
        table.add_row(*row, *([_n(sum(c.points for c in group))] if paid else []))
    return table


def merchant_allocation_view(
    resp: pb.GetMerchantAllocationResponse, *, detailed: bool = False
) -> RenderableType:
    """A merchant's day: totals, then paid and free impressions per channel and region (or per cell)."""
    line = (
        f"[bold]{resp.merchant_id}[/] on {resp.date} (plan {resp.plan_id}): "
        f"points due {_n(resp.points_due)}, delivered {_n(resp.points_delivered)}, "
        f"under-delivered {_n(resp.points_under_delivered)}; "
        f"paid {_n(resp.paid_impressions)} + free {_n(resp.free_impressions)} impressions"
    )
    parts: list[RenderableType] = [line]
    if resp.paid:
        parts.append(_cells_table("Paid", resp.paid, paid=True, detailed=detailed))
    if resp.free:
        parts.append(_cells_table("Free (daily promotion)", resp.free, paid=False, detailed=detailed))
    return Group(*parts)


def node_allocation_view(
    request: pb.GetNodeAllocationRequest, resp: pb.GetNodeAllocationResponse
) -> RenderableType:
    node = f"{request.date} {channel_name(request.channel)} hour {request.hour} {request.region}"
    line = (
        f"[bold]{node}[/] (plan {resp.plan_id}): capacity {_n(resp.capacity_impressions)}, "
        f"price {_n(resp.price_points_per_mille)} pts/mille, paid {_n(resp.paid_impressions)}, "
        f"free {_n(resp.free_impressions)}, {resp.total_size:,} entries"
    )
    table = Table()
    for name in ("merchant", "redemption", "impressions", "points", "kind"):
        table.add_column(
            name, justify="right" if name in ("impressions", "points") else "left", overflow="fold"
        )
    for e in resp.entries:
        table.add_row(
            e.merchant_id,
            e.redemption_id or "-",
            _n(e.impressions),
            _n(e.points),
            "free" if e.free else "paid",
        )
    more = f"next page: {resp.next_page_token}" if resp.next_page_token else ""
    return Group(line, table, *([more] if more else []))


def apply_with_progress(
    client: AllocatorClient, scenario: Scenario, console: Console, *, workers: int = 8
) -> dict[str, int]:
    """``apply_scenario`` with one progress bar per phase; each bar's clock starts with its phase."""
    columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        sizes = {
            "inventory": 1,
            "redemptions": len(scenario.redemptions),
            "eligibility": len(scenario.eligibility),
        }
        tasks = {phase: bar.add_task(phase, total=size, start=False) for phase, size in sizes.items()}

        def progress(phase: str, done: int, total: int) -> None:
            bar.start_task(tasks[phase])
            bar.update(tasks[phase], completed=done, total=total)

        return apply_scenario(client, scenario, progress, workers=workers)


# The phases before DONE, in the order the server runs them.
_SOLVE_PHASES: tuple[int, ...] = (
    pb.SOLVE_PHASE_READING_INPUTS,
    pb.SOLVE_PHASE_BUILDING,
    pb.SOLVE_PHASE_PAID_FLOW,
    pb.SOLVE_PHASE_FREE_POOL,
    pb.SOLVE_PHASE_STORING,
)


def solve_phase_name(value: int) -> str:
    """'paid flow' for SOLVE_PHASE_PAID_FLOW."""
    try:
        name = pb.SolvePhase.Name(value)  # type: ignore[arg-type]
    except ValueError:
        return str(value)
    return name.removeprefix("SOLVE_PHASE_").replace("_", " ").lower()


def _problem_size(event: pb.SolveProgress) -> str:
    if not (event.supply_nodes or event.demands or event.arcs):
        return ""
    return f"{event.supply_nodes:,} nodes · {event.demands:,} demands · {event.arcs:,} arcs"


def solve_with_progress(
    client: AllocatorClient, request: pb.SolveStreamRequest, console: Console, *, timeout: float | None = None
) -> pb.PlanSummary:
    """``client.solve_stream`` behind a live progress line: phase, its detail, phases done, elapsed
    seconds, problem size (once the server knows it).

    Returns the plan of the DONE event; raises ``AllocatorError`` if the stream fails or ends without one.
    """
    columns = (
        SpinnerColumn(finished_text="[green]✓[/]"),
        TextColumn("{task.description}"),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.elapsed:.1f} s"),
        TextColumn("[dim]{task.fields[size]}[/]"),
    )
    done: pb.SolveProgress | None = None
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("waiting for the server", total=len(_SOLVE_PHASES), size="")
        for event in client.solve_stream(request, timeout=timeout):
            size = _problem_size(event)
            if event.phase == pb.SOLVE_PHASE_DONE:
                done = event
                label = f"done: {event.detail or 'solved'}"
                bar.update(task, completed=len(_SOLVE_PHASES), description=label, size=size)
                continue
            step = _SOLVE_PHASES.index(event.phase) if event.phase in _SOLVE_PHASES else 0
            label = f"[bold]{solve_phase_name(event.phase)}[/]"
            if event.detail:
                label += f" [dim]({event.detail})[/]"
            bar.update(task, completed=step, description=label, size=size)
    if done is None:
        raise AllocatorError(grpc.StatusCode.INTERNAL, "the solve stream ended without a plan")
    return done.plan
