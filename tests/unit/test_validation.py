"""Request validation as pure logic: every bad field is named, page tokens round-trip."""

from __future__ import annotations

import pytest

from allocator.errors import InvalidArgument
from allocator.rules import load_rules
from allocator.service import validation as v
from trafficalloc.v1 import allocator_pb2 as pb


def test_redemption_violations_are_all_reported() -> None:
    req = pb.RecordRedemptionRequest(
        request_id="r",
        merchant_id="m",
        program=2,
        points=5,
        channels=[1, 3, 3],
        flight_start_date="2026-12-01",
        flight_end_date="2027-12-31",
        regions=["a", "a"],
    )
    with pytest.raises(InvalidArgument) as err:
        v.check_redemption(req, load_rules(), v.Limits())
    got = [f for f, _ in err.value.violations]
    assert got == ["channels", "channels[1]", "channels[2]", "flight_end_date", "regions"]


def test_solve_dates_expand_inclusively() -> None:
    dates = v.check_solve(pb.SolveRequest(start_date="2026-12-30", end_date="2027-01-02"), v.Limits())
    assert [d.isoformat() for d in dates] == ["2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02"]
    assert len(v.check_solve(pb.SolveRequest(start_date="2026-12-30"), v.Limits())) == 1


def test_page_tokens_round_trip_and_forgeries_fail() -> None:
    c = v.Checker(v.Limits())
    assert c.page_token("t", v.make_page_token("rdm-123")) == "rdm-123"
    assert v.make_page_token("") == ""
    c.page_token("t", "bm90LW91cnM")  # "not-ours"
    assert c.violations == [("t", "is not a token this service issued")]
