"""The default solver runs in a child process (OR-Tools holds the GIL while it solves): plans, progress
events and re-plans come through it, and the child goes away with the server."""

from __future__ import annotations

import time

import psutil

from allocator.domain import SolveParams
from allocator.optimise.worker import NICENESS, SolverProcess
from allocator.problem import build_problem
from allocator_client import AllocatorClient
from tests.integration.conftest import ServerFactory
from tests.integration.helpers import DATE, redemption
from tests.integration.serving_helpers import clock_at, pick, solved_day
from tests.unit.builders import elig, inputs, node, red
from trafficalloc.v1 import allocator_pb2 as pb


def test_solves_and_replans_run_in_a_child_process_that_stops_with_the_server(servers: ServerFactory) -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    srv = servers.start(solve_process=True, clock=clock_at(12))  # the re-plan below is from hour 12
    with AllocatorClient(srv.target, timeout=120) as c:
        c.wait_until_serving(20)
        plan_id = solved_day(c)
        children = [  # the solver (multiprocessing's resource tracker lives on with the test process)
            p
            for p in me.children(recursive=True)
            if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline())
        ]
        assert children, "the solve did not start a solver process"
        # background priority: the replica's serving threads come first on a busy machine
        assert [child.nice() for child in children] == [min(19, me.nice() + NICENESS)] * len(children)
        phases = [r.phase for r in c.solve_stream(pb.SolveStreamRequest(start_date=DATE, dry_run=True))]
        assert phases[-1] == pb.SOLVE_PHASE_DONE
        # a cache hit has no solver phases; a changed input is solved in the child and streams them
        c.record_redemption(redemption("one-more", "m-extra", 700))
        phases = [r.phase for r in c.solve_stream(pb.SolveStreamRequest(start_date=DATE, dry_run=True))]
        assert pb.SOLVE_PHASE_PAID_FLOW in phases and pb.SOLVE_PHASE_FREE_POOL in phases
        assert pick(c, 10, 30, count=3).plan_id == plan_id
        out = c.replan(pb.ReplanRequest(date=DATE, from_hour=12))
        assert out.plan.active and out.previous_plan_id == plan_id
    srv.app.stop(1)
    for child in children:
        child.wait(timeout=10)  # the solver process is gone with the server


def test_the_solver_process_is_started_with_the_server_before_any_solve(servers: ServerFactory) -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    srv = servers.start(solve_process=True)
    deadline = time.monotonic() + 30
    started: list[psutil.Process] = []
    while not started and time.monotonic() < deadline:  # nothing has been solved: the server started it
        started = [
            p
            for p in me.children(recursive=True)
            if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline())
        ]
        time.sleep(0.05)
    assert len(started) == 1, "the server did not start its solver process"
    child = started[0]
    assert srv.app.solver_process is not None
    assert srv.app.solver_process.warm().result(timeout=60) == child.pid  # the same child, now ready
    assert child.nice() == min(19, me.nice() + NICENESS)
    srv.app.stop(1)
    child.wait(timeout=10)


def test_every_phase_of_a_solve_is_forwarded_before_its_plan_returns() -> None:
    # The phases come back on an event queue and the plan through the pool's result pipe; a small solve's
    # plan can overtake its last phases, which then missed the caller's progress stream (seen in CI).
    problem = build_problem(inputs([node(capacity=100)], [red(60)], [elig(1.0)]), SolveParams())
    solver = SolverProcess()
    try:
        for _ in range(100):
            phases: list[str] = []
            solver.solve(problem, SolveParams(), phases.append)
            assert phases == ["PAID_FLOW", "FREE_POOL"]
    finally:
        solver.close()
