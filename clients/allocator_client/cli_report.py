"""allocatorctl report: plan.png and a self-contained plan.html from one GetPlanReport call."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from allocator_client.cli_common import EXIT_OTHER, connect, console, err_console, state
from allocator_client.cli_paths import check_output_dir, write_failed
from allocator_client.report import MissingReportDependency, require_matplotlib, write_report
from trafficalloc.v1 import allocator_pb2 as pb

logger = logging.getLogger(__name__)


def report(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Directory to write plan.png and plan.html into.")],
    date: Annotated[str, typer.Option(help="Report the active plan of this date, YYYY-MM-DD.")] = "",
    plan_id: Annotated[
        str, typer.Option("--plan-id", help="Report this plan instead of the active one.")
    ] = "",
) -> None:
    """Draw a plan: fill by channel × hour, delivery per program, free-pool fairness, saturated nodes.

    Needs matplotlib (pip install 'allocator-client[report]'). Writes OUT/plan.png and OUT/plan.html
    (one file, no external assets).
    """
    if not date and not plan_id:
        raise typer.BadParameter("give --date (its active plan) or --plan-id", param_hint="--date")
    try:
        require_matplotlib()
    except MissingReportDependency as error:
        err_console.print(f"[bold red]error[/]: {escape(str(error))}")
        raise typer.Exit(EXIT_OTHER) from None
    check_output_dir(out, "--out")  # before the call: a bad path is a usage error, not a lost report
    options = state(ctx)
    with connect(ctx) as client:
        response = client.get_plan_report(pb.GetPlanReportRequest(plan_id=plan_id, date=date))
    try:
        png, html = write_report(response, out)
    except OSError as error:
        raise write_failed(Path(error.filename or out), error) from None
    if options.json_output:
        typer.echo(json.dumps({"plan_id": response.plan.plan_id, "png": str(png), "html": str(html)}))
    else:
        console.print(f"plan {response.plan.plan_id}: wrote {png} and {html}")
