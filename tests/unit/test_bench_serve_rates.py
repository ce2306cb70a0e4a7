"""bench.serve --rates: what the latency curve accepts."""

from __future__ import annotations

import argparse

import pytest

from bench.serve import MAX_RATES, parse_rates


def test_rates_are_positive_calls_a_second_in_order() -> None:
    assert parse_rates("600,1000,1400.5") == [600.0, 1000.0, 1400.5]
    assert parse_rates("") == []


@pytest.mark.parametrize(
    "text",
    ["600,x", "0", "-5", "nan", "inf", ",".join(["100"] * (MAX_RATES + 1))],
    ids=["not a number", "zero", "negative", "nan", "inf", "too many"],
)
def test_rates_that_cannot_be_run_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_rates(text)
