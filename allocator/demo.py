"""`make demo`: a realistic day end to end against a real server process, through the client library only.

Starts ``python -m allocator.server`` on a free port with its embedded Redis, generates and loads a day
(~6,000 paid and ~2,000 daily-promotion merchants, 8 regions), solves it (streaming the solver's
phases), shows a few allocations, shows that a second solve is a cache hit, writes the plan report to
demo-out/plan.png and demo-out/plan.html, then stops the server with SIGTERM and checks that it exited
with 0 and left no redis-server behind. Prints the headline figures as one JSON line; exits non-zero on
failure.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from rich.console import Console
from rich.rule import Rule

from allocator_client import AllocatorClient, AllocatorError, render
from allocator_client.report import MissingReportDependency, write_report
from allocator_client.scenario import Scenario, generate_day
from trafficalloc.v1 import allocator_pb2 as pb

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 60.0
SOLVE_TIMEOUT_S = 600.0
REPORT_DIR = Path("demo-out")  # relative to the current directory: `make demo` runs from the repo root
console = Console(highlight=False)


class DemoFailure(Exception):
    """A check of the demo did not hold."""


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """The server as a child process on port 0, with its own embedded Redis under ``workdir``."""
    port_file, log_file = workdir / "port", workdir / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "ALLOCATOR_REDIS_URL"}  # force the embedded Redis
    command = [sys.executable, "-m", "allocator.server", "--listen", "127.0.0.1:0"]
    command += ["--port-file", str(port_file), "--data-dir", str(workdir / "data")]
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    return process, log_file


def wait_for_port(process: subprocess.Popen[bytes], port_file: Path, deadline: float) -> int:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoFailure(f"server exited early with code {process.returncode}")
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text().strip())
        time.sleep(0.1)
    raise DemoFailure(f"no port file after {STARTUP_TIMEOUT_S:.0f} s")


def pick_merchants(scenario: Scenario) -> list[tuple[str, str]]:
    """The largest STAR and LUOMA redeemers of the day, and the first free merchant."""
    picks = []
    programs = ((pb.PROGRAM_STAR_PLAN, "paid, Star Plan"), (pb.PROGRAM_LUOMA_PLAN, "paid, Luoma plan"))
    for program, label in programs:
        single_day = (scenario.date, scenario.date)
        one_day = [
            r
            for r in scenario.redemptions
            if r.program == program and (r.flight_start_date, r.flight_end_date) == single_day
        ]
        if one_day:
            picks.append((max(one_day, key=lambda r: r.points).merchant_id, label))
    if scenario.eligibility:
        picks.append((scenario.eligibility[0].merchant_id, "free, daily promotion"))
    return picks


def busiest_node(client: AllocatorClient, scenario: Scenario) -> pb.GetNodeAllocationRequest:
    """The node shared by the most merchants (ties: the most impressions), asking the server for each."""

    def probe(node: pb.SupplyNode) -> tuple[int, int, pb.GetNodeAllocationRequest]:
        request = pb.GetNodeAllocationRequest(
            date=scenario.date, hour=node.hour, channel=node.channel, region=node.region, page_size=1
        )
        response = client.get_node_allocation(request)
        return response.total_size, response.paid_impressions + response.free_impressions, request

    with ThreadPoolExecutor(max_workers=8) as pool:
        _, _, request = max(pool.map(probe, scenario.inventory), key=lambda found: found[:2])
    request.page_size = 10
    return request


def run(workdir: Path) -> dict[str, object]:
    process, log_file = start_server(workdir)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        port = wait_for_port(process, workdir / "port", deadline)
        children = psutil.Process(process.pid).children(recursive=True)
        with AllocatorClient(f"127.0.0.1:{port}", timeout=60.0) as client:
            client.wait_until_serving(max(deadline - time.monotonic(), 1.0))
            console.print(f"server pid {process.pid} serving on 127.0.0.1:{port} (embedded Redis)")
            headline = exercise(client)
        stop_server(process, children)
        return headline
    except BaseException:
        console.print(f"[red]demo failed; last lines of {log_file}:[/]")
        console.print("\n".join(log_file.read_text(errors="replace").splitlines()[-20:]), markup=False)
        raise
    finally:
        kill_leftovers(process, children)


def exercise(client: AllocatorClient) -> dict[str, object]:
    console.print(Rule("Rules"))
    rules = client.get_rules()
    console.print(render.rules_view(rules))

    console.print(Rule("A generated day"))
    date = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    started = time.perf_counter()
    scenario = generate_day(date, merchants=6000, free_merchants=2000, rules=rules)
    paid_merchants = len({r.merchant_id for r in scenario.redemptions})
    console.print(
        f"{date}: {len(scenario.inventory):,} supply nodes, {len(scenario.redemptions):,} redemptions from "
        f"{paid_merchants:,} merchants, {len(scenario.eligibility):,} daily-promotion merchants "
        f"(generated in {time.perf_counter() - started:.2f} s)"
    )
    counts = render.apply_with_progress(client, scenario, console)
    console.print(", ".join(f"{key} {value:,}" for key, value in counts.items()))

    console.print(Rule("Solve"))
    started = time.perf_counter()
    solve_request = pb.SolveStreamRequest(start_date=date)
    plan = render.solve_with_progress(client, solve_request, console, timeout=SOLVE_TIMEOUT_S)
    first_wall = time.perf_counter() - started
    console.print(render.plan_view(plan))
    console.print(f"first solve: {first_wall:.2f} s wall-clock on the client")
    if plan.status == pb.PLAN_STATUS_FAILED:
        raise DemoFailure(f"solve failed: {plan.status_detail}")

    console.print(Rule("Three merchants"))
    for merchant_id, label in pick_merchants(scenario):
        console.print(f"[bold]{label}[/]")
        request = pb.GetMerchantAllocationRequest(merchant_id=merchant_id, date=date)
        console.print(render.merchant_allocation_view(client.get_merchant_allocation(request)))

    console.print(Rule("Solve again: the plan cache"))
    started = time.perf_counter()
    again = client.solve(pb.SolveRequest(start_date=date), timeout=SOLVE_TIMEOUT_S).plan
    cache_wall = time.perf_counter() - started
    console.print(f"plan {again.plan_id}: cache_hit={again.cache_hit}, {cache_wall * 1000:.1f} ms wall-clock")
    if not again.cache_hit or again.plan_id != plan.plan_id:
        raise DemoFailure("the second solve of identical inputs was not a cache hit of the same plan")

    console.print(Rule("The busiest supply node"))
    node = busiest_node(client, scenario)
    console.print(render.node_allocation_view(node, client.get_node_allocation(node)))

    console.print(Rule("The plan report"))
    png, html = write_report(client.get_plan_report(pb.GetPlanReportRequest(date=date)), REPORT_DIR)
    console.print(f"wrote {png} and {html}")
    return {
        "merchants": paid_merchants,
        "free_merchants": len(scenario.eligibility),
        "supply_nodes": plan.supply_nodes,
        "arcs": plan.arcs,
        "solve_seconds": round(plan.solve_seconds, 3),
        "first_solve_wall_s": round(first_wall, 3),
        "cache_hit_wall_s": round(cache_wall, 4),
        "status": pb.PlanStatus.Name(plan.status),
        "report": str(html),
    }


def stop_server(process: subprocess.Popen[bytes], children: list[psutil.Process]) -> None:
    """SIGTERM, wait, and check: exit code 0 and no child (the embedded redis-server) still running."""
    console.print(Rule("Shutdown"))
    names = ", ".join(f"{p.name()}({p.pid})" for p in children) or "none"
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise DemoFailure("server did not exit within 30 s of SIGTERM") from None
    _, alive = psutil.wait_procs(children, timeout=10)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    console.print(f"server exited with code {code}; its children ({names}): {len(alive)} left running")
    if code != 0:
        raise DemoFailure(f"server exited with code {code}")
    if alive:
        raise DemoFailure(f"processes left behind: {', '.join(str(p.pid) for p in alive)}")


def kill_leftovers(process: subprocess.Popen[bytes], children: list[psutil.Process]) -> None:
    """Whatever happened, leave nothing running: the server, then the children it started."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for child in children:
        try:
            if child.is_running():
                child.kill()
        except psutil.Error:
            pass


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="allocator-demo-") as tmp:
        try:
            headline = run(Path(tmp))
        except (DemoFailure, AllocatorError, MissingReportDependency) as error:
            console.print(f"[bold red]demo failed:[/] {error}")
            return 1
    console.print(Rule("Headline"))
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
