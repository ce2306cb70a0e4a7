"""allocatorctl commands for the inputs: inventory, redemptions, daily-promotion eligibility."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf import json_format
from rich.console import Group

from allocator_client import render
from allocator_client.cli_common import (
    collect_pages,
    connect,
    emit,
    int64,
    parse_channel,
    parse_channels,
    parse_program,
    parse_redemption_status,
    parse_regions,
)
from allocator_client.scenario import ELIGIBILITY_BATCH
from trafficalloc.v1 import allocator_pb2 as pb

logger = logging.getLogger(__name__)

inventory_app = typer.Typer(help="Publish and read supply nodes.", no_args_is_help=True)
redemption_app = typer.Typer(help="Record, cancel and read points redemptions.", no_args_is_help=True)
eligibility_app = typer.Typer(help="Daily-promotion eligibility.", no_args_is_help=True)

PageSize = Annotated[
    int, typer.Option("--page-size", min=0, max=1000, help="Items per page (0: server default).")
]
PageToken = Annotated[str, typer.Option("--page-token", help="Continue from this token.")]
AllPages = Annotated[bool, typer.Option("--all", help="Fetch every page.")]
RequestId = Annotated[str, typer.Option("--request-id", help="Idempotency key (default: a fresh one).")]


def read_json(path: Path) -> Any:
    """A JSON file, or a usage error (exit 2) naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"cannot read {path}: {error}") from None


def _parse(data: Any, message: Any, what: str) -> Any:
    if not isinstance(data, dict):  # the parser would fail on it with a TypeError, not a ParseError
        raise typer.BadParameter(f"bad {what}: expected a JSON object, got {json.dumps(data)[:40]}")
    try:
        return json_format.ParseDict(data, message)
    except json_format.ParseError as error:
        raise typer.BadParameter(f"bad {what}: {error}") from None


# -- inventory ---------------------------------------------------------------------------------


@inventory_app.command("publish")
def inventory_publish(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="A scenario file, a PublishInventoryRequest or a list of nodes.")
    ],
    date: Annotated[str, typer.Option(help="The date (default: the file's).")] = "",
    request_id: RequestId = "",
) -> None:
    """Replace the supply of a date with the nodes of FILE."""
    data = read_json(file)
    request = pb.PublishInventoryRequest(request_id=request_id)
    if isinstance(data, list):
        request.nodes.extend(_parse({"nodes": data}, pb.PublishInventoryRequest(), "nodes").nodes)
    elif isinstance(data, dict) and "inventory" in data:
        request.date = str(data.get("date", ""))
        request.nodes.extend(
            _parse({"nodes": data["inventory"]}, pb.PublishInventoryRequest(), "inventory").nodes
        )
    elif isinstance(data, dict):
        _parse(data, request, "PublishInventoryRequest")
        request.request_id = request_id or request.request_id
    else:
        raise typer.BadParameter(f"{file}: expected a JSON object or list")
    request.date = date or request.date
    if not request.date:
        raise typer.BadParameter("no date in the file; pass --date")
    with connect(ctx) as client:
        response = client.publish_inventory(request)
    emit(
        ctx,
        response,
        lambda: (
            f"published {response.node_count:,} nodes for {response.date}, "
            f"{response.total_capacity_impressions:,} impressions"
            + (" (replayed)" if response.replayed else "")
        ),
    )


@inventory_app.command("show")
def inventory_show(
    ctx: typer.Context,
    date: Annotated[str, typer.Option(help="The date, YYYY-MM-DD.")],
    page_size: PageSize = 0,
    page_token: PageToken = "",
    all_pages: AllPages = False,
) -> None:
    """The supply nodes of a date."""
    request = pb.GetInventoryRequest(date=date, page_size=page_size, page_token=page_token)
    with connect(ctx) as client:
        response = collect_pages(client.get_inventory, request, "nodes", all_pages=all_pages)
    title = f"Inventory {response.date}: {len(response.nodes)} of {response.total_size} nodes"
    emit(ctx, response, lambda: render.inventory_table(response.nodes, title=title))


# -- redemptions -------------------------------------------------------------------------------


def _quality(values: list[str]) -> list[pb.ChannelQuality]:
    scores = []
    for value in values:
        channel, sep, score = value.partition("=")
        try:
            scores.append(pb.ChannelQuality(channel=parse_channel(channel), score=float(score)))
        except ValueError:
            raise typer.BadParameter(f"--quality {value!r}: expected CHANNEL=SCORE") from None
        if not sep:
            raise typer.BadParameter(f"--quality {value!r}: expected CHANNEL=SCORE")
    return scores


@redemption_app.command("record")
def redemption_record(
    ctx: typer.Context,
    merchant: Annotated[str, typer.Option(help="The merchant id.")],
    program: Annotated[str, typer.Option(help="star or luoma.")],
    points: Annotated[int, typer.Option(help="Points spent.")],
    channel: Annotated[list[str], typer.Option(help="Channel (repeat or comma-separate).")],
    region: Annotated[list[str], typer.Option(help="Region (repeat or comma-separate).")],
    start: Annotated[str, typer.Option(help="First flight day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last flight day (default: start).")] = "",
    quality: Annotated[list[str] | None, typer.Option(help="CHANNEL=SCORE (repeatable).")] = None,
    request_id: RequestId = "",
) -> None:
    """Record a redemption of points for exposure."""
    request = pb.RecordRedemptionRequest(
        request_id=request_id,
        merchant_id=merchant,
        program=parse_program(program),
        points=int64(points, "--points", "a redemption takes 1..10^12 points"),
        channels=parse_channels(channel),
        flight_start_date=start,
        flight_end_date=end or start,
        regions=parse_regions(region),
        quality=_quality(quality or []),
    )
    with connect(ctx) as client:
        response = client.record_redemption(request)
    title = "Recorded (replayed)" if response.replayed else "Recorded"
    emit(ctx, response, lambda: render.redemption_table([response.redemption], title=title))


@redemption_app.command("cancel")
def redemption_cancel(ctx: typer.Context, redemption_id: str, request_id: RequestId = "") -> None:
    """Cancel a redemption."""
    with connect(ctx) as client:
        response = client.cancel_redemption(
            pb.CancelRedemptionRequest(request_id=request_id, redemption_id=redemption_id)
        )
    emit(ctx, response, lambda: render.redemption_table([response.redemption], title="Cancelled"))


@redemption_app.command("get")
def redemption_get(ctx: typer.Context, redemption_id: str) -> None:
    """Show one redemption."""
    with connect(ctx) as client:
        response = client.get_redemption(redemption_id)
    emit(ctx, response, lambda: render.redemption_table([response.redemption], title="Redemption"))


@redemption_app.command("list")
def redemption_list(
    ctx: typer.Context,
    merchant: Annotated[str, typer.Option(help="Only this merchant.")] = "",
    status: Annotated[str, typer.Option(help="active or cancelled.")] = "",
    page_size: PageSize = 0,
    page_token: PageToken = "",
    all_pages: AllPages = False,
) -> None:
    """List redemptions, one page or --all."""
    request = pb.ListRedemptionsRequest(
        merchant_id=merchant,
        status=parse_redemption_status(status) if status else pb.REDEMPTION_STATUS_UNSPECIFIED,
        page_size=page_size,
        page_token=page_token,
    )
    with connect(ctx) as client:
        response = collect_pages(client.list_redemptions, request, "redemptions", all_pages=all_pages)
    tail = f"next page: {response.next_page_token}" if response.next_page_token else ""
    emit(ctx, response, lambda: Group(render.redemption_table(response.redemptions), tail))


# -- eligibility -------------------------------------------------------------------------------


def _entries_from_file(path: Path) -> list[pb.DailyPromotionEligibility]:
    data = read_json(path)
    if isinstance(data, dict):  # a scenario or a SetEligibilityRequest
        data = data.get("eligibility", data.get("entries"))
    if not isinstance(data, list):
        raise typer.BadParameter(f"{path}: expected a list of entries, a scenario or a SetEligibilityRequest")
    return [_parse(item, pb.DailyPromotionEligibility(), f"entry {i}") for i, item in enumerate(data)]


@eligibility_app.command("set")
def eligibility_set(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Option(help="Entries from a JSON file (list, scenario or request).")
    ] = None,
    merchant: Annotated[str, typer.Option(help="One merchant (instead of --file).")] = "",
    weight: Annotated[float, typer.Option(help="Fairness weight.")] = 1.0,
    region: Annotated[list[str] | None, typer.Option(help="Region (repeat or comma-separate).")] = None,
    valid_from: Annotated[str, typer.Option("--from", help="First valid day.")] = "",
    valid_to: Annotated[str, typer.Option("--to", help="Last valid day (default: --from).")] = "",
    channel: Annotated[list[str] | None, typer.Option(help="Channel (default: every shared one).")] = None,
    request_id: RequestId = "",
) -> None:
    """Mark merchants eligible for daily promotion (a file in batches of 5,000, or one merchant)."""
    if (file is None) == (not merchant):
        raise typer.BadParameter("give either --file or --merchant")
    if file is not None:
        entries = _entries_from_file(file)
        if not entries:  # the server takes 1..10,000 entries a call: nothing to send is not a success
            raise typer.BadParameter(f"{file} holds no eligibility entries", param_hint="--file")
    else:
        entries = [
            pb.DailyPromotionEligibility(
                merchant_id=merchant,
                weight=weight,
                regions=parse_regions(region or []),
                valid_from_date=valid_from,
                valid_to_date=valid_to or valid_from,
                channels=parse_channels(channel or []),
            )
        ]
    total = pb.SetEligibilityResponse()
    with connect(ctx) as client:
        for batch, start in enumerate(range(0, len(entries), ELIGIBILITY_BATCH)):
            batch_id = f"{request_id}-{batch}" if request_id else ""
            chunk = entries[start : start + ELIGIBILITY_BATCH]
            response = client.set_eligibility(pb.SetEligibilityRequest(request_id=batch_id, entries=chunk))
            total.updated += response.updated
            total.replayed = total.replayed or response.replayed
    emit(
        ctx,
        total,
        lambda: f"{total.updated:,} merchants eligible" + (" (replayed)" if total.replayed else ""),
    )


@eligibility_app.command("clear")
def eligibility_clear(
    ctx: typer.Context,
    merchants: Annotated[list[str], typer.Argument(help="Merchant ids.")],
    request_id: RequestId = "",
) -> None:
    """Remove merchants' daily-promotion eligibility."""
    with connect(ctx) as client:
        response = client.clear_eligibility(
            pb.ClearEligibilityRequest(request_id=request_id, merchant_ids=merchants)
        )
    emit(ctx, response, lambda: f"{response.cleared:,} merchants no longer eligible")


@eligibility_app.command("list")
def eligibility_list(
    ctx: typer.Context, page_size: PageSize = 0, page_token: PageToken = "", all_pages: AllPages = False
) -> None:
    """List eligible merchants, one page or --all."""
    request = pb.ListEligibilityRequest(page_size=page_size, page_token=page_token)
    with connect(ctx) as client:
        response = collect_pages(client.list_eligibility, request, "entries", all_pages=all_pages)
    tail = f"next page: {response.next_page_token}" if response.next_page_token else ""
    emit(ctx, response, lambda: Group(render.eligibility_table(response.entries), tail))
