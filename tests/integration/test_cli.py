"""allocatorctl against a real server on port 0 (real Redis): JSON output, tables, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner, Result

from allocator_client import AllocatorClient
from allocator_client.cli import app
from allocator_client.scenario import load_scenario

if TYPE_CHECKING:
    from tests.integration.conftest import RunningServer

DATE = "2026-12-01"


@pytest.fixture
def target(server: RunningServer, client: AllocatorClient) -> str:
    """The server's address, once it reports SERVING (the ``client`` fixture waits for that)."""
    return server.target


def cli(target: str, *args: str, json_output: bool = True) -> Result:
    options = ["--target", target, "--timeout", "60", *(["--json"] if json_output else [])]
    return CliRunner().invoke(app, [*options, *args])


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_rules_come_from_the_server(target: str) -> None:
    rules = ok_json(cli(target, "rules"))
    programs = {p["program"]: p["channels"] for p in rules["programs"]}
    assert programs["PROGRAM_LUOMA_PLAN"] == ["CHANNEL_HOMEPAGE_CARD", "CHANNEL_PAYMENT_SUCCESS"]
    table = cli(target, "rules", json_output=False)
    assert table.exit_code == 0 and "LUOMA_PLAN" in table.stdout and "daily-promotion share" in table.stdout


def test_generate_load_solve_and_read_back(target: str, tmp_path: Path) -> None:
    path = tmp_path / "day.json"
    sizes = ["--merchants", "40", "--free-merchants", "15"]
    generated = ok_json(cli(target, "generate", "--date", DATE, "--out", str(path), *sizes))
    scenario = load_scenario(path)
    assert generated["redemptions"] == len(scenario.redemptions)

    first = ok_json(cli(target, "load", str(path)))
    counts = (first["inventory_nodes"], first["redemptions"], first["eligibility"])
    assert counts == (576, len(scenario.redemptions), 15)
    assert first["redemptions_replayed"] == 0
    again = ok_json(cli(target, "load", str(path)))  # idempotent: nothing recorded twice
    assert again["redemptions_replayed"] == len(scenario.redemptions)
    listed = ok_json(cli(target, "redemption", "list", "--all", "--page-size", "7"))
    assert len(listed["redemptions"]) == len(scenario.redemptions)
    assert "next_page_token" not in listed
    assert len(ok_json(cli(target, "inventory", "show", "--date", DATE, "--all"))["nodes"]) == 576
    assert len(ok_json(cli(target, "eligibility", "list", "--all", "--page-size", "4"))["entries"]) == 15

    plan = ok_json(cli(target, "solve", "--start", DATE))["plan"]
    assert plan["status"] in ("PLAN_STATUS_OPTIMAL", "PLAN_STATUS_PARTIAL")
    assert plan["active"] is True
    assert ok_json(cli(target, "plan", "get", plan["plan_id"]))["plan"]["plan_id"] == plan["plan_id"]
    assert ok_json(cli(target, "plan", "active", "--date", DATE))["plan"]["plan_id"] == plan["plan_id"]
    assert ok_json(cli(target, "solve", "--start", DATE, "--dry-run"))["plan"]["cache_hit"] is True
    activated = ok_json(cli(target, "plan", "activate", plan["plan_id"]))
    assert activated["plan"]["plan_id"] == plan["plan_id"]

    merchant = scenario.redemptions[0].merchant_id
    allocation = ok_json(cli(target, "allocation", "merchant", merchant, "--date", DATE))
    assert allocation["merchant_id"] == merchant and allocation["plan_id"] == plan["plan_id"]
    delivered = int(allocation.get("points_delivered", 0)) + int(allocation.get("points_under_delivered", 0))
    assert delivered == int(allocation["points_due"]) > 0
    node = ["--date", DATE, "--hour", "20", "--channel", "payment", "--region", "east"]
    node_page = ok_json(cli(target, "allocation", "node", *node, "--all", "--page-size", "3"))
    assert len(node_page.get("entries", [])) == node_page.get("total_size", 0)

    # The human-readable forms render the same answers as tables; solve shows the server's phases first.
    shown_solve = cli(target, "solve", "--start", DATE, "--dry-run", json_output=False)
    assert shown_solve.exit_code == 0, shown_solve.output
    assert "done: cache hit" in shown_solve.stdout and "5/5" in shown_solve.stdout
    assert "576 nodes" in shown_solve.stdout and f"Plan {plan['plan_id']}" in shown_solve.stdout
    assert shown_solve.stdout.index("done: cache hit") < shown_solve.stdout.index("Paid delivery per program")
    assert plan["plan_id"] in cli(target, "plan", "get", plan["plan_id"], json_output=False).stdout
    shown = cli(target, "allocation", "merchant", merchant, "--date", DATE, json_output=False)
    assert shown.exit_code == 0 and merchant in shown.stdout


def test_redemption_lifecycle(target: str) -> None:
    record = [
        "redemption", "record", "--merchant", "m-cli", "--program", "luoma", "--points", "500",
        "--channel", "homepage,payment", "--region", "east", "--start", DATE, "--request-id", "cli-rec-1",
    ]  # fmt: skip
    recorded = ok_json(cli(target, *record))
    redemption_id = recorded["redemption"]["redemption_id"]
    assert recorded["redemption"]["status"] == "REDEMPTION_STATUS_ACTIVE"
    assert ok_json(cli(target, *record)).get("replayed") is True
    assert ok_json(cli(target, "redemption", "get", redemption_id))["redemption"]["points"] == "500"
    cancelled = ok_json(cli(target, "redemption", "cancel", redemption_id))
    assert cancelled["redemption"]["status"] == "REDEMPTION_STATUS_CANCELLED"
    listed = ok_json(cli(target, "redemption", "list", "--merchant", "m-cli", "--status", "cancelled"))
    assert [r["redemption_id"] for r in listed["redemptions"]] == [redemption_id]


def test_eligibility_set_and_clear(target: str) -> None:
    setting = ["eligibility", "set", "--merchant", "f-cli", "--weight", "2", "--region", "east,west"]
    assert ok_json(cli(target, *setting, "--from", DATE, "--to", "2026-12-05"))["updated"] == 1
    entries = ok_json(cli(target, "eligibility", "list"))["entries"]
    assert [(e["merchant_id"], e["weight"], e["regions"]) for e in entries] == [
        ("f-cli", 2.0, ["east", "west"])
    ]
    assert ok_json(cli(target, "eligibility", "clear", "f-cli", "f-unknown"))["cleared"] == 1


def test_not_found_exits_3(target: str) -> None:
    result = cli(target, "redemption", "get", "rdm-missing")
    assert result.exit_code == 3
    assert json.loads(result.stderr)["code"] == "NOT_FOUND"
    assert cli(target, "plan", "get", "no-such-plan", json_output=False).exit_code == 3


def test_bad_input_exits_4_and_names_each_field(target: str) -> None:
    result = cli(
        target, "redemption", "record", "--merchant", "m1", "--program", "luoma", "--points", "0",
        "--channel", "search", "--region", "east", "--start", "2026-13-01", json_output=False,
    )  # fmt: skip
    assert result.exit_code == 4, result.output
    assert "INVALID_ARGUMENT" in result.stderr
    for field in ("points", "channels[0]", "flight_start_date"):
        assert f"  {field}: " in result.stderr
    machine = cli(target, "solve", "--start", "2026-12-02", "--end", "2026-12-01")
    assert machine.exit_code == 4
    assert "end_date" in [v["field"] for v in json.loads(machine.stderr)["field_violations"]]


def test_usage_errors_exit_2(target: str, tmp_path: Path) -> None:
    node = ["--date", DATE, "--hour", "1", "--channel", "tv", "--region", "x"]
    assert cli(target, "allocation", "node", *node).exit_code == 2
    assert cli(target, "inventory", "show").exit_code == 2  # --date is required
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert cli(target, "load", str(broken)).exit_code == 2


def test_unreachable_server_exits_5() -> None:
    result = CliRunner().invoke(app, ["--target", "127.0.0.1:1", "--timeout", "5", "rules"])
    assert result.exit_code == 5
    assert "UNAVAILABLE" in result.stderr


def test_explain_and_availability(target: str, client: AllocatorClient) -> None:
    from tests.integration.helpers import HOME, inventory, redemption
    from trafficalloc.v1 import allocator_pb2 as pb

    client.publish_inventory(inventory(date=DATE, capacity=1_000))  # HOME north: 24 x 45 paid points
    client.record_redemption(redemption("r-big", "m-big", 2_000, channels=(HOME,)))
    client.solve(pb.SolveRequest(start_date=DATE))

    why = ok_json(cli(target, "allocation", "explain", "m-big", "--date", DATE))
    (first,) = why["redemptions"]
    assert first["points_under_delivered"] == "920"  # int64 is a JSON string
    assert first["reasons"][0]["kind"] == "REASON_KIND_SUPPLY_SATURATED"
    table = cli(target, "allocation", "explain", "m-big", "--date", DATE, json_output=False)
    assert table.exit_code == 0 and "SUPPLY_SATURATED" in table.stdout and "Full nodes" in table.stdout

    args = [
        "availability",
        "--program",
        "star",
        "--channel",
        "home,payment",
        "--region",
        "north",
        "--start",
        DATE,
    ]
    room = ok_json(cli(target, *args))
    assert room["points_available"] == str(24 * 42)  # HOME north is full; PAY north has 24 x 42 points
    assert cli(target, "allocation", "explain", "ghost", "--date", DATE).exit_code == 3
    bad = cli(target, "availability", "--program", "luoma", "--channel", "search", "--region", "north",
              "--start", DATE)  # fmt: skip
    assert bad.exit_code == 4 and "channels[0]" in bad.stderr


def usage_error(result: Result, *phrases: str) -> None:
    """Exit 2 with a message, never a traceback (a crash is exit 1 with the exception kept)."""
    assert result.exit_code == 2, (result.output, result.exception)
    text = " ".join(result.stderr.replace("│", " ").split())  # the error panel wraps long lines
    for phrase in phrases:
        assert phrase in text, text


def test_numbers_the_api_cannot_take_are_usage_errors(target: str, tmp_path: Path) -> None:
    record = ["redemption", "record", "--merchant", "m1", "--program", "star", "--channel", "home",
              "--region", "east", "--start", DATE, "--points"]  # fmt: skip
    for points in ("99999999999999999999", "-99999999999999999999"):  # past int64: cannot even be sent
        usage_error(cli(target, *record, points), "--points", "out of range", "1..10^12")
    assert cli(target, *record, "0").exit_code == 4  # representable: the server names every bad field
    for limit in ("inf", "nan", "3601"):  # the server's 0..3600; inf made the deadline inf
        usage_error(cli(target, "solve", "--start", DATE, "--time-limit", limit), "--time-limit")
    for timeout in ("inf", "nan", "1e12"):  # gRPC fails such a deadline at once with DEADLINE_EXCEEDED
        result = CliRunner().invoke(app, ["--target", target, "--timeout", timeout, "rules"])
        usage_error(result, "--timeout")
    usage_error(CliRunner().invoke(app, ["--target", "", "rules"]), "--target")
    assert "redemptions" not in ok_json(cli(target, "redemption", "list"))  # nothing was recorded


def test_empty_or_malformed_input_files_are_usage_errors(target: str, tmp_path: Path) -> None:
    empty, scalar = tmp_path / "empty.json", tmp_path / "scalar.json"
    empty.write_text("[]")
    scalar.write_text("[5]")
    usage_error(cli(target, "eligibility", "set", "--file", str(empty)), "--file", "no eligibility entries")
    usage_error(cli(target, "eligibility", "set", "--file", str(scalar)), "entry 0", "JSON object")
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"date": DATE, "inventory": [5]}))
    usage_error(cli(target, "load", str(scenario)), "inventory[0]", "JSON object")
    assert "entries" not in ok_json(cli(target, "eligibility", "list"))  # nothing was sent


def test_generate_refuses_what_it_cannot_make_or_write(tmp_path: Path) -> None:
    def generate(*args: str) -> Result:  # local: no server is called
        return CliRunner().invoke(app, ["--json", "generate", *args])

    out = tmp_path / "day.json"
    small = ["--merchants", "3", "--free-merchants", "2"]
    usage_error(generate("--out", str(out), "--regions", ","), "at least one region")
    for option in ("--merchants", "--free-merchants"):  # used to run out of memory (killed, exit 137)
        usage_error(generate("--out", str(out), option, "1000001"), "1000000")
    usage_error(generate("--out", str(out), "--regions", "east,east"), "must not repeat: east")
    for date in ("9999-12-31", "0001-01-01"):  # its flights and eligibility windows leave the calendar
        usage_error(generate("--out", str(out), "--date", date, *small), "0001-01-11..9999-12-11")
    usage_error(generate("--out", str(tmp_path / "missing" / "day.json"), *small), "does not exist")
    usage_error(generate("--out", str(tmp_path), *small), "is a directory")
    (tmp_path / "plain").write_text("")
    usage_error(generate("--out", str(tmp_path / "plain" / "day.json"), *small), "not a directory")
    assert not out.exists()
    if Path("/dev/full").exists():  # a write that fails after the checks: an I/O error, exit 1, no traceback
        full = generate("--out", "/dev/full", *small)
        assert full.exit_code == 1 and isinstance(full.exception, SystemExit), full.exception
        assert "cannot write /dev/full" in full.stderr
    # no paid merchant: a day of daily-promotion merchants only
    free_only = ok_json(
        generate("--out", str(out), "--date", DATE, "--merchants", "0", "--free-merchants", "4")
    )
    assert (free_only["redemptions"], free_only["eligibility"], free_only["supply_nodes"]) == (0, 4, 576)
    assert load_scenario(out).redemptions == []
