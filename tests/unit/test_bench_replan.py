"""bench.replan: a re-plan after a morning delivered at each merchant's own pace is solved warm and cold to
the same objective (the benchmark's own check, on a small day)."""

from __future__ import annotations

import json

import pytest

from bench import replan


@pytest.mark.parametrize("from_hour", [0, 9, 15])
def test_a_replan_solved_warm_reaches_the_cold_objective(
    capsys: pytest.CaptureFixture[str], from_hour: int
) -> None:
    code = replan.main(
        [
            "--merchants",
            "300",
            "--free-merchants",
            "80",
            "--regions",
            "4",
            "--from-hour",
            str(from_hour),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert out["same_objective"] is True
    assert out["replan_arcs"] > 0
    assert (out["delivered_impressions"] > 0) == (from_hour > 0)
    assert out["warm_rounds"] >= 1  # settled warm, not the cold fallback
    if from_hour == 0:  # nothing delivered: the rest of the day is the day planned, its prices settle it
        assert out["warm_rounds"] == 1
