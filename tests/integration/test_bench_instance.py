"""bench.solve --instance FILE solves the day a scenario file describes exactly as the service does.

The same generated scenario file goes to a real server (applied through the client library, solved by
the Solve RPC) and to the benchmark; the two plans must agree in sizes and objective. A file the service
would refuse is refused by the benchmark too, naming the entry and field.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from allocator_client import AllocatorClient
from allocator_client.scenario import apply_scenario, dump_scenario, generate_day, load_scenario
from bench import solve as bench_solve
from trafficalloc.v1 import allocator_pb2 as pb

DATE = "2026-12-05"


def _bench(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object], str]:
    code = bench_solve.main([*args, "--json"])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else {}), captured.err


def test_instance_file_is_the_problem_the_service_solves(
    client: AllocatorClient, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = generate_day(DATE, merchants=300, free_merchants=120, seed=11)
    # a multi-day flight: the benchmark, like the service, plans the date's pro-rata slice of it
    scenario.redemptions[0].flight_end_date = "2026-12-07"
    path = tmp_path / "day.json"
    dump_scenario(scenario, path)
    apply_scenario(client, load_scenario(path))
    plan = client.solve(pb.SolveRequest(start_date=DATE)).plan
    assert plan.status == pb.PLAN_STATUS_OPTIMAL

    code, out, _ = _bench(capsys, "--instance", str(path), "--oracle")
    assert code == 0
    assert out["date"] == DATE
    assert out["status"] == "OPTIMAL"
    assert out["nodes"] == plan.supply_nodes
    assert out["redemptions"] == len(scenario.redemptions)
    assert out["arcs"] == plan.arcs
    assert out["objective"] == pytest.approx(plan.objective.total, rel=1e-12)
    # the service numbers redemptions by random ids, so demands come in another order and a tie between
    # optima may fall the other way: the value (impressions, not rounded costs) may differ in its last digits
    assert out["value"] == pytest.approx(plan.objective.value, rel=1e-6)
    assert out["oracle_rel_gap"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < float(out["contention"]) < 1.5  # type: ignore[arg-type]


def test_instance_file_the_service_would_refuse_is_refused_naming_the_field(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = generate_day(DATE, merchants=20, free_merchants=5, seed=3)
    scenario.redemptions[3].points = -5
    path = tmp_path / "bad.json"
    dump_scenario(scenario, path)
    code, out, err = _bench(capsys, "--instance", str(path))
    assert code == 2
    assert out == {}
    assert "redemptions[3]" in err and "points" in err

    scenario.redemptions[3].points = 50  # fixed; now a retry of another write's request id, other content
    scenario.redemptions[3].request_id = scenario.redemptions[4].request_id = "same-id"
    scenario.redemptions[4].points = 51
    dump_scenario(scenario, path)
    code, out, err = _bench(capsys, "--instance", str(path))
    assert code == 2 and "redemptions[4]" in err and "same-id" in err

    path.write_text("{not json", encoding="utf-8")
    code, out, err = _bench(capsys, "--instance", str(path))
    assert code == 2 and "not JSON" in err
