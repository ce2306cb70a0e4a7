"""allocatorctl commands for the outputs: solve, plans, allocations, rules."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Annotated

import grpc
import typer

from allocator_client import render
from allocator_client.cli_common import (
    MAX_TIME_LIMIT_S,
    collect_pages,
    connect,
    console,
    emit,
    finite,
    parse_channel,
    state,
)
from allocator_client.errors import AllocatorError
from trafficalloc.v1 import allocator_pb2 as pb

logger = logging.getLogger(__name__)

plan_app = typer.Typer(help="Read and activate plans.", no_args_is_help=True)
allocation_app = typer.Typer(help="What a merchant or a supply node gets.", no_args_is_help=True)


def solve(
    ctx: typer.Context,
    start: Annotated[str, typer.Option(help="First date to plan, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last date (default: start).")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Solve and cache, do not activate.")] = False,
    time_limit: Annotated[
        float,
        typer.Option(
            min=0, max=MAX_TIME_LIMIT_S, callback=finite, help="Solver time limit, s (0: server default)."
        ),
    ] = 0.0,
) -> None:
    """Solve a date or a range and (unless --dry-run) activate the plan, showing the server's progress.

    The call's deadline is the larger of --timeout and the time limit plus a minute, so a long solve
    is not cut off by the default deadline.
    """
    options = state(ctx)
    request = pb.SolveStreamRequest(
        start_date=start, end_date=end, dry_run=dry_run, time_limit_seconds=time_limit
    )
    deadline = max(options.timeout, time_limit + 60.0)
    with connect(ctx) as client:
        if options.json_output:
            plan = _streamed_plan(client.solve_stream(request, timeout=deadline))
        else:
            console.print(f"solving {start}{'..' + end if end else ''} on {options.target}")
            plan = render.solve_with_progress(client, request, console, timeout=deadline)
    response = pb.SolveResponse(plan=plan)
    emit(ctx, response, lambda: render.plan_view(response.plan))


def _streamed_plan(events: Iterable[pb.SolveProgress]) -> pb.PlanSummary:
    """The plan of the stream's DONE event, the progress before it unseen (``--json``)."""
    for event in events:
        if event.phase == pb.SOLVE_PHASE_DONE:
            return event.plan
    raise AllocatorError(grpc.StatusCode.INTERNAL, "the solve stream ended without a plan")


def rules(ctx: typer.Context) -> None:
    """The configured program rules, channel prices and reserved shares."""
    with connect(ctx) as client:
        response = client.get_rules()
    emit(ctx, response, lambda: render.rules_view(response))


@plan_app.command("get")
def plan_get(ctx: typer.Context, plan_id: str) -> None:
    """A plan's summary."""
    with connect(ctx) as client:
        response = client.get_plan(plan_id)
    emit(ctx, response, lambda: render.plan_view(response.plan))


@plan_app.command("active")
def plan_active(ctx: typer.Context, date: Annotated[str, typer.Option(help="The date, YYYY-MM-DD.")]) -> None:
    """The active plan of a date."""
    with connect(ctx) as client:
        response = client.get_active_plan(date)
    emit(ctx, response, lambda: render.plan_view(response.plan))


@plan_app.command("activate")
def plan_activate(
    ctx: typer.Context,
    plan_id: str,
    request_id: Annotated[
        str, typer.Option("--request-id", help="Idempotency key (default: a fresh one).")
    ] = "",
) -> None:
    """Make a plan active for every date it covers."""
    with connect(ctx) as client:
        response = client.activate_plan(pb.ActivatePlanRequest(request_id=request_id, plan_id=plan_id))
    previous = ", ".join(p or "(none)" for p in response.previous_plan_ids)
    emit(ctx, response, lambda: f"plan {response.plan.plan_id} active; replaced: {previous or '(none)'}")


@allocation_app.command("merchant")
def allocation_merchant(
    ctx: typer.Context,
    merchant_id: str,
    date: Annotated[str, typer.Option(help="The date, YYYY-MM-DD.")],
    plan: Annotated[str, typer.Option(help="Plan id (default: the active plan).")] = "",
    cells: Annotated[
        bool, typer.Option("--cells", help="One row per supply node instead of a summary.")
    ] = False,
) -> None:
    """What a merchant gets on a date, paid and free."""
    request = pb.GetMerchantAllocationRequest(merchant_id=merchant_id, date=date, plan_id=plan)
    with connect(ctx) as client:
        response = client.get_merchant_allocation(request)
    emit(ctx, response, lambda: render.merchant_allocation_view(response, detailed=cells))


@allocation_app.command("node")
def allocation_node(
    ctx: typer.Context,
    date: Annotated[str, typer.Option(help="The date, YYYY-MM-DD.")],
    hour: Annotated[int, typer.Option(min=0, max=23, help="Hour window.")],
    channel: Annotated[str, typer.Option(help="homepage, payment or search.")],
    region: Annotated[str, typer.Option(help="Region.")],
    plan: Annotated[str, typer.Option(help="Plan id (default: the active plan).")] = "",
    page_size: Annotated[int, typer.Option(min=0, max=1000, help="Entries per page.")] = 0,
    page_token: Annotated[str, typer.Option(help="Continue from this token.")] = "",
    all_pages: Annotated[bool, typer.Option("--all", help="Fetch every page.")] = False,
) -> None:
    """Who gets a supply node, largest first."""
    request = pb.GetNodeAllocationRequest(
        date=date,
        hour=hour,
        channel=parse_channel(channel),
        region=region,
        plan_id=plan,
        page_size=page_size,
        page_token=page_token,
    )
    with connect(ctx) as client:
        response = collect_pages(client.get_node_allocation, request, "entries", all_pages=all_pages)
    emit(ctx, response, lambda: render.node_allocation_view(request, response))
