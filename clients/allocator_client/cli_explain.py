"""allocatorctl allocation explain and allocatorctl availability: the why and the what-if."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from allocator_client.cli_common import connect, emit, parse_channels, parse_program, parse_regions
from allocator_client.cli_plans import allocation_app
from trafficalloc.v1 import allocator_pb2 as pb


@allocation_app.command("explain")
def allocation_explain(
    ctx: typer.Context,
    merchant_id: str,
    date: Annotated[str, typer.Option(help="The date, YYYY-MM-DD.")],
    plan: Annotated[str, typer.Option(help="Plan id (default: the active plan).")] = "",
) -> None:
    """Why a merchant got what it got: reasons, saturated nodes and their shadow prices."""
    request = pb.ExplainAllocationRequest(merchant_id=merchant_id, date=date, plan_id=plan)
    with connect(ctx) as client:
        response = client.explain_allocation(request)
    emit(ctx, response, lambda: explanation_view(response))


def availability(
    ctx: typer.Context,
    program: Annotated[str, typer.Option(help="star or luoma.")],
    channel: Annotated[list[str], typer.Option(help="Channels (repeat or comma-separate).")],
    region: Annotated[list[str], typer.Option(help="Regions (repeat or comma-separate).")],
    start: Annotated[str, typer.Option(help="First day of the flight, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last day of the flight (default: start).")] = "",
) -> None:
    """How many points a redemption could still take now without under-delivering anyone."""
    request = pb.CheckAvailabilityRequest(
        program=parse_program(program),
        channels=parse_channels(channel),
        regions=parse_regions(region),
        flight_start_date=start,
        flight_end_date=end or start,
    )
    with connect(ctx) as client:
        response = client.check_availability(request)
    emit(ctx, response, lambda: availability_view(response))


def explanation_view(r: pb.ExplainAllocationResponse) -> RenderableType:
    parts: list[RenderableType] = [
        Text(f"{r.merchant_id} on {r.date} (plan {r.plan_id}); free impressions {r.free_impressions:,}")
    ]
    for e in r.redemptions:
        parts.append(
            Text(
                f"{e.redemption_id}: due {e.points_due:,}, delivered {e.points_delivered:,}, "
                f"under-delivered {e.points_under_delivered:,}; {e.eligible_nodes} eligible nodes "
                f"({e.eligible_paid_points:,} paid points), {e.saturated_nodes} full",
                style="bold",
            )
        )
        parts += [
            Text(f"  - {pb.ReasonKind.Name(x.kind).removeprefix('REASON_KIND_')}: {x.text}")
            for x in e.reasons
        ]
    if r.binding_nodes:
        table = Table(title="Full nodes it could use (dearest first)")
        for column in (
            "channel",
            "hour",
            "region",
            "paid capacity",
            "its points",
            "shadow/mille",
            "relieves",
        ):
            table.add_column(column, justify="right" if column not in ("channel", "region") else "left")
        for b in r.binding_nodes:
            table.add_row(
                pb.Channel.Name(b.channel).removeprefix("CHANNEL_"),
                f"{b.hour:02d}",
                b.region,
                f"{b.paid_capacity_points:,}",
                f"{b.merchant_points:,}",
                f"{b.shadow_value_per_mille:,.2f}",
                "yes" if b.relieves_under_delivery else "no",
            )
        parts.append(table)
    return Group(*parts)


def availability_view(r: pb.CheckAvailabilityResponse) -> RenderableType:
    table = Table(title=f"Room per day (plan {r.plan_id})")
    table.add_column("date")
    table.add_column("points", justify="right")
    for d in r.days:
        table.add_row(d.date, f"{d.points:,}")
    return Group(Text(f"points available now: {r.points_available:,}", style="bold"), table)
