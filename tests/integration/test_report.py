"""The plan report (`allocatorctl report`) against a real server: files, content, and figures that match
the plan summary."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner, Result

from allocator_client import AllocatorClient
from allocator_client.cli import app
from allocator_client.report import (
    fill_matrix,
    jain_index,
    lorenz_curve,
    most_saturated,
    node_fill,
    report_data,
    summary_mismatches,
)
from tests.integration.helpers import DATE, HOME, LUOMA, PAY, SEARCH, eligibility, inventory, redemption
from trafficalloc.v1 import allocator_pb2 as pb

if TYPE_CHECKING:
    from tests.integration.conftest import RunningServer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# A small region with SEARCH supply in four hours only: two daily-promotion merchants limited to it get
# far less than the others, so the free pool is uneven; its nodes are the fullest of the day.
ISLET = [pb.SupplyNode(hour=h, channel=SEARCH, region="islet", capacity_impressions=150) for h in range(4)]


def seed(client: AllocatorClient) -> pb.PlanSummary:
    """A day with under-delivery (HOME north is too small for m-big) and an uneven free pool."""
    day = inventory(capacity=1_000)  # HOME north: 24 nodes x 45 paid points
    day.nodes.extend(ISLET)
    client.publish_inventory(day)
    client.record_redemption(redemption("r-big", "m-big", 2_000, channels=(HOME,)))
    client.record_redemption(redemption("r-star", "m-star", 300, channels=(PAY, SEARCH), regions=("south",)))
    client.record_redemption(redemption("r-luoma", "m-luoma", 150, program=LUOMA, regions=("south",)))
    client.set_eligibility(eligibility("e-wide", "f-a"))
    client.set_eligibility(eligibility("e-heavy", "f-b", weight=2.0))
    narrow = [
        pb.DailyPromotionEligibility(
            merchant_id=m,
            weight=1.0,
            regions=["islet"],
            valid_from_date=DATE,
            valid_to_date=DATE,
            channels=[SEARCH],
        )
        for m in ("f-c", "f-d")
    ]  # 4 nodes x 150 = 600 impressions shared by two: far below the quota of 2,000 each
    client.set_eligibility(pb.SetEligibilityRequest(request_id="e-narrow", entries=narrow))
    return client.solve(pb.SolveRequest(start_date=DATE)).plan


@pytest.fixture
def solved(client: AllocatorClient) -> pb.GetPlanReportResponse:
    seed(client)
    return client.get_plan_report(pb.GetPlanReportRequest(date=DATE))


def cli(target: str, *args: str, json_output: bool = True) -> Result:
    options = ["--target", target, "--timeout", "60", *(["--json"] if json_output else [])]
    return CliRunner().invoke(app, [*options, *args])


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_figures_match_the_plan_summary(solved: pb.GetPlanReportResponse) -> None:
    plan = solved.plan
    assert plan.status == pb.PLAN_STATUS_PARTIAL
    data = report_data(solved)
    assert summary_mismatches(data) == []

    # Per channel: the sums over every node equal the summary's channel fills.
    summary_channels = {c.channel: c for c in plan.channels}
    assert {t.channel for t in data.channel_totals} == set(summary_channels) == {HOME, PAY, SEARCH}
    for totals in data.channel_totals:
        want = summary_channels[totals.channel]
        got = (totals.capacity_impressions, totals.paid_impressions, totals.free_impressions)
        assert got == (want.capacity_impressions, want.paid_impressions, want.free_impressions)
        assert totals.fill_rate == pytest.approx(want.fill_rate, rel=1e-12)
    # The heatmap's cells times the capacity published for their hour add up to the channel's paid + free.
    channels, rows = fill_matrix(solved.nodes)
    assert channels == (HOME, PAY, SEARCH) and all(len(row) == 24 for row in rows)
    for channel, row in zip(channels, rows, strict=True):
        assert None not in row
        published = [2_000 + (150 if channel == SEARCH and hour < 4 else 0) for hour in range(24)]
        used = math.fsum(v * c for v, c in zip(row, published, strict=True) if v is not None)
        want = summary_channels[channel]
        assert used == pytest.approx(want.paid_impressions + want.free_impressions, rel=1e-9)

    # Per program: the bars are the summary's figures, and their impressions are the nodes' paid ones.
    summary_programs = {p.program: p for p in plan.programs}
    for row in data.programs:
        want = summary_programs[pb.Program.ValueType(row.program)]
        got = (row.redemptions, row.points_due, row.points_delivered, row.points_under_delivered)
        assert got == (want.redemptions, want.points_due, want.points_delivered, want.points_under_delivered)
    star = next(r for r in data.programs if r.program == pb.PROGRAM_STAR_PLAN)
    assert star.points_due == 2_300 and star.points_under_delivered > 0
    assert sum(r.impressions for r in data.programs) == sum(n.paid_impressions for n in solved.nodes)

    # Free pool: the shares add up to the summary, their Jain index is the summary's, and it is uneven.
    assert data.free_merchants == plan.free_merchants == 4
    assert data.free_impressions == plan.free_impressions
    assert data.jain == pytest.approx(plan.free_jain_index, abs=1e-9)
    assert data.jain < 0.99
    assert data.free_levels[0] == pytest.approx(plan.free_min_level)
    xs, ys = data.lorenz
    assert xs[0] == ys[0] == 0.0 and xs[-1] == ys[-1] == pytest.approx(1.0)
    assert all(y <= x + 1e-12 for x, y in zip(xs, ys, strict=True))  # below the diagonal

    # The most saturated nodes: the islet, full of free impressions; then HOME north, full of m-big's
    # points (their shadow prices are the server's to get right; the report only ranks and shows them).
    assert len(data.top_nodes) == 10
    fills = [node_fill(n) for n in data.top_nodes]
    assert fills == sorted(fills, reverse=True)
    assert max(node_fill(n) for n in solved.nodes) == fills[0] == 1.0
    islet, home = data.top_nodes[:4], data.top_nodes[4:]
    assert {(n.region, n.channel, n.free_impressions) for n in islet} == {("islet", SEARCH, 150)}
    assert not any(n.relieves_under_delivery for n in islet)
    for node in home:
        assert (node.channel, node.region, node.paid_impressions) == (HOME, "north", 900)


def test_report_command_writes_png_and_html(
    server: RunningServer, solved: pb.GetPlanReportResponse, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = cli(server.target, "report", "--date", DATE, "--out", str(out))
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    plan_id = solved.plan.plan_id
    assert written == {"plan_id": plan_id, "png": str(out / "plan.png"), "html": str(out / "plan.html")}

    png = (out / "plan.png").read_bytes()
    width, height = png_size(png)
    assert width >= 1200 and height >= 900
    assert 30_000 < len(png) < 5_000_000

    html = (out / "plan.html").read_text(encoding="utf-8")
    assert plan_id in html and DATE in html and "PARTIAL" in html
    assert not re.search(r"https?://", html), "the page must not reference external assets"
    assert not re.search(r"<(script|link)\b", html, re.IGNORECASE)
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert embedded is not None and base64.b64decode(embedded.group(1)) == png
    for text in ("Fill by channel", "Paid points per program", "Jain", "most saturated supply nodes"):
        assert text in html
    summary_jain = f"{solved.plan.free_jain_index:.6f}"
    assert html.count(summary_jain) >= 2  # computed and summary figures side by side, equal

    again = cli(server.target, "report", "--plan-id", plan_id, "--out", str(tmp_path / "by-id"))
    assert again.exit_code == 0, again.output
    human = cli(server.target, "report", "--date", DATE, "--out", str(out), json_output=False)
    assert human.exit_code == 0 and "plan.html" in human.stdout


def test_report_errors(server: RunningServer, client: AllocatorClient, tmp_path: Path) -> None:
    out = str(tmp_path / "none")
    assert cli(server.target, "report", "--out", out).exit_code == 2  # neither --date nor --plan-id
    assert cli(server.target, "report", "--plan-id", "no-such-plan", "--out", out).exit_code == 3
    assert cli(server.target, "report", "--date", DATE, "--out", out).exit_code == 3  # nothing active
    assert not Path(out).exists()


def test_a_bad_out_path_is_a_usage_error_before_the_call_and_a_failed_write_exit_1(
    server: RunningServer, solved: pb.GetPlanReportResponse, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.write_text("keep me")
    for out in (plain, plain / "sub"):  # a file, or under one: refused before GetPlanReport, exit 2
        result = cli(server.target, "report", "--date", DATE, "--out", str(out))
        assert result.exit_code == 2, (result.output, result.exception)
        assert "--out" in result.stderr and "directory" in result.stderr
    assert plain.read_text() == "keep me"
    blocked = tmp_path / "blocked"
    (blocked / "plan.png").mkdir(parents=True)  # the write itself fails: an I/O error, not a traceback
    result = cli(server.target, "report", "--date", DATE, "--out", str(blocked), json_output=False)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "cannot write" in result.stderr and "plan.png" in result.stderr


def test_missing_matplotlib_is_a_clear_error(
    server: RunningServer, client: AllocatorClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # find_spec answers None: not installed
    result = cli(server.target, "report", "--date", DATE, "--out", str(tmp_path), json_output=False)
    assert result.exit_code == 1
    assert "matplotlib" in result.stderr and "allocator-client[report]" in result.stderr


def test_cli_imports_without_matplotlib() -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None; import allocator_client.cli, allocator_client.report"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pure_helpers() -> None:
    assert jain_index([]) == 1.0 and jain_index([0.0, 0.0]) == 1.0
    assert jain_index([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert jain_index([1.0, 0.0]) == pytest.approx(0.5)
    assert lorenz_curve([3.0, 1.0]) == ((0.0, 0.5, 1.0), (0.0, 0.25, 1.0))
    assert lorenz_curve([]) == ((0.0, 1.0), (0.0, 1.0))

    def node(hour: int, paid: int, shadow: float) -> pb.NodeReport:
        return pb.NodeReport(
            date=DATE,
            hour=hour,
            channel=HOME,
            region="r",
            capacity_impressions=100,
            paid_impressions=paid,
            shadow_value_per_mille=shadow,
        )

    nodes = [node(0, 50, 9.0), node(1, 90, 1.0), node(2, 90, 5.0), node(3, 0, 0.0)]
    assert [n.hour for n in most_saturated(nodes, 3)] == [2, 1, 0]
    channels, rows = fill_matrix([*nodes, pb.NodeReport(hour=5, channel=PAY, capacity_impressions=0)])
    assert channels == (HOME, PAY, SEARCH)
    assert rows[0][:4] == (0.5, 0.9, 0.9, 0.0) and rows[1][5] is None and rows[2] == (None,) * 24
