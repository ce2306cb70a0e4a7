"""allocatorctl: operate the traffic allocation service from a shell.

Exit codes: 0 ok, 1 other failure, 2 usage, 3 NOT_FOUND, 4 INVALID_ARGUMENT or FAILED_PRECONDITION
(each field violation printed), 5 UNAVAILABLE. ``--json`` prints the response messages in the
proto's JSON mapping for scripts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from allocator_client import render
from allocator_client.cli_common import (
    MAX_TIMEOUT_S,
    CliState,
    connect,
    console,
    finite,
    report_error,
    state,
    tomorrow,
)
from allocator_client.cli_explain import availability
from allocator_client.cli_inputs import eligibility_app, inventory_app, read_json, redemption_app
from allocator_client.cli_paths import check_output_file, write_failed
from allocator_client.cli_plans import allocation_app, plan_app, rules, solve
from allocator_client.cli_report import report
from allocator_client.daygen import MAX_MERCHANTS
from allocator_client.errors import AllocatorError
from allocator_client.scenario import DEFAULT_REGIONS, Scenario, apply_scenario, dump_scenario, generate_day

logger = logging.getLogger(__name__)


class _AllocatorGroup(TyperGroup):
    """Turns an ``AllocatorError`` from any command into its message and exit code."""

    def invoke(self, ctx: Any) -> Any:  # typer.Context at run time; its base class is private
        try:
            return super().invoke(ctx)
        except AllocatorError as error:
            json_output = isinstance(ctx.obj, CliState) and ctx.obj.json_output
            raise typer.Exit(report_error(error, json_output=json_output)) from None


app = typer.Typer(
    cls=_AllocatorGroup,
    name="allocatorctl",
    help="Operate the public-domain traffic allocation service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(inventory_app, name="inventory")
app.add_typer(redemption_app, name="redemption")
app.add_typer(eligibility_app, name="eligibility")
app.add_typer(plan_app, name="plan")
app.add_typer(allocation_app, name="allocation")
app.command("solve")(solve)
app.command("rules")(rules)
app.command("report")(report)
app.command("availability")(availability)


@app.callback()
def _global_options(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Option(envvar="ALLOCATOR_TARGET", help="Server address host:port.")
    ] = "127.0.0.1:50051",
    timeout: Annotated[
        float,
        typer.Option(min=0.1, max=MAX_TIMEOUT_S, callback=finite, help="Deadline of each call, seconds."),
    ] = 10.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print responses as JSON.")] = False,
) -> None:
    if not target.strip():  # gRPC would fail every call with UNKNOWN "Failed to create channel"
        raise typer.BadParameter("must name the server, host:port", param_hint="--target")
    ctx.obj = CliState(target=target, timeout=timeout, json_output=json_output)


@app.command("load")
def load(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Scenario file (see `generate`).")],
    workers: Annotated[int, typer.Option(min=1, max=64, help="Concurrent redemption calls.")] = 8,
) -> None:
    """Apply a scenario: publish its inventory, record its redemptions, set its eligibility.

    Idempotent: request ids derive from the scenario name, so loading twice records nothing twice.
    """
    try:
        scenario = Scenario.from_dict(read_json(file), default_name=file.stem)
    except ValueError as error:
        raise typer.BadParameter(f"{file}: {error}") from None
    options = state(ctx)
    with connect(ctx) as client:
        if options.json_output:
            counts = apply_scenario(client, scenario, workers=workers)
        else:
            counts = render.apply_with_progress(client, scenario, console, workers=workers)
    if options.json_output:
        typer.echo(json.dumps({"scenario": scenario.name, "date": scenario.date, **counts}))
    else:
        console.print(
            f"loaded [bold]{scenario.name}[/] for {scenario.date}: "
            + ", ".join(f"{key} {value:,}" for key, value in counts.items())
        )


@app.command("generate")
def generate(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Scenario file to write.")],
    date: Annotated[str, typer.Option(help="The day, YYYY-MM-DD (default: tomorrow).")] = "",
    merchants: Annotated[int, typer.Option(min=0, max=MAX_MERCHANTS, help="Paid merchants.")] = 5000,
    free_merchants: Annotated[
        int, typer.Option(min=0, max=MAX_MERCHANTS, help="Daily-promotion merchants.")
    ] = 2000,
    regions: Annotated[str, typer.Option(help="Comma-separated regions.")] = ",".join(DEFAULT_REGIONS),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    server_rules: Annotated[
        bool, typer.Option("--server-rules", help="Size demand with the server's GetRules (else defaults).")
    ] = False,
) -> None:
    """Write a realistic generated day (diurnal supply, paid demand at 85-95 % of paid supply)."""
    check_output_file(out, "--out")
    rules_response = None
    if server_rules:
        with connect(ctx) as client:
            rules_response = client.get_rules()
    try:
        scenario = generate_day(
            date or tomorrow(),
            merchants=merchants,
            free_merchants=free_merchants,
            regions=tuple(r.strip() for r in regions.split(",") if r.strip()),
            seed=seed,
            rules=rules_response,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    try:
        dump_scenario(scenario, out)
    except OSError as error:
        raise write_failed(out, error) from None
    summary = {
        "scenario": scenario.name,
        "date": scenario.date,
        "out": str(out),
        "supply_nodes": len(scenario.inventory),
        "redemptions": len(scenario.redemptions),
        "eligibility": len(scenario.eligibility),
    }
    if state(ctx).json_output:
        typer.echo(json.dumps(summary))
    else:
        console.print(
            f"wrote {out}: {summary['supply_nodes']:,} nodes, {summary['redemptions']:,} redemptions, "
            f"{summary['eligibility']:,} eligible merchants ({scenario.name})"
        )


def main() -> None:
    """Console entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app(prog_name="allocatorctl")
