"""The representativeness caps are exact integers at every size the API allows (optimise/caps.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator.domain import SolveParams
from allocator.optimise.caps import group_sums, kappa_fraction, spread_caps
from allocator.optimise.paid_flow import arc_caps_and_costs
from allocator.problem import build_problem, node_paid_points

from .builders import HOME, PAY, inputs, node, red

KAPPAS = (0.0, 0.3, 0.5, 1.0, 1.1, 1.2, 1.25, 2.0, 3.7)


def reference(kappa: float, amount: list[int], part: list[int], total: list[int]) -> list[int]:
    """min(ceil(kappa * a * p / max(t, 1)), p) in Python's integers, kappa as its decimal."""
    k = Fraction(repr(kappa))
    out = []
    for a, p, t in zip(amount, part, total, strict=True):
        num, den = k.numerator * a * p, k.denominator * max(t, 1)
        out.append(min(-(-num // den), p))
    return out


@settings(max_examples=300, deadline=None)
@given(
    kappa=st.sampled_from(KAPPAS),
    rows=st.lists(
        st.tuples(
            st.integers(0, 10**12),  # points due (API: up to 10^12 per redemption)
            st.integers(0, 10**15),  # K_s (capacity 10^12 x price 10^6 / 1000)
            st.integers(0, 10**6),  # the rest of the demand's eligible supply, in K_s units of 10^13
        ),
        min_size=1,
        max_size=30,
    ),
    small=st.booleans(),
)
def test_caps_equal_exact_integer_arithmetic(
    kappa: float, rows: list[tuple[int, int, int]], small: bool
) -> None:
    """Both paths (int64 where products fit, the float estimate with exact recomputation past them)
    against Fraction arithmetic; `small` keeps every product inside int64."""
    div = 10**8 if small else 1
    amount = [a // div for a, _, _ in rows]
    part = [p // div for _, p, _ in rows]
    total = [p + r * (10**13 // div) for p, (_, _, r) in zip(part, rows, strict=True)]
    big = any(t >= 2**62 for t in total)
    total_arr = np.array(total, dtype=object if big else np.int64)
    got = spread_caps(kappa, np.array(amount, np.int64), np.array(part, np.int64), total_arr)
    assert got.dtype == np.int64
    assert got.tolist() == reference(kappa, amount, part, total)


def test_a_quotient_that_is_an_exact_integer_is_not_rounded_up() -> None:
    """Found by review: 353,744,032,572 points over 28 equal nodes of 124,990,317,699 points, kappa 1:
    points * K / E is exactly 12,633,715,449, which float64 rounded to the next integer's side."""
    pts, k_s = 353_744_032_572, 124_990_317_699
    cap = spread_caps(1.0, np.array([pts]), np.array([k_s]), np.array([28 * k_s]))
    assert cap.tolist() == [-(-pts * k_s // (28 * k_s))] == [12_633_715_449]


def test_kappa_is_the_decimal_it_is_written_as() -> None:
    """1.1 x 10 points on a node holding all of the demand's supply is 11, not 12 (the double 1.1 is
    slightly more than 11/10)."""
    assert kappa_fraction(1.1) == Fraction(11, 10) and kappa_fraction(1.2) == Fraction(6, 5)
    assert spread_caps(1.1, np.array([10]), np.array([100]), np.array([100])).tolist() == [11]
    for bad in (float("nan"), float("inf"), -0.5):
        with pytest.raises(ValueError):
            kappa_fraction(bad)


def test_group_sums_never_wrap() -> None:
    """10,000 nodes of 10^15 points: the sum passes 2^63, where int64 wraps negative."""
    groups = np.zeros(10_000, np.int64)
    values = np.full(10_000, 10**15, np.int64)
    sums = group_sums(groups, values, 2)
    assert sums.tolist() == [10**19, 0]
    small = group_sums(np.array([0, 1, 1]), np.array([5, 6, 7]), 3)
    assert small.dtype == np.int64 and small.tolist() == [5, 13, 0]


def test_paid_caps_spread_a_demand_whose_supply_passes_two_to_the_63() -> None:
    """Found by review: with the eligible supply's int64 sum wrapped, every cap became K_s and a demand
    could land on one node at full value. 10,000 nodes of 10^15 paid points, 10^6 points due, kappa 1.2:
    each cap is ceil(1.2 * 10^6 / 10^4) = 120."""
    nodes = [node(10**12, price=10**6, hour=h, region=f"r{g}") for g in range(417) for h in range(24)]
    problem = build_problem(inputs(nodes[:10_000], [red(10**6, channels=(HOME,), regions=tuple(
        f"r{g}" for g in range(417)))]), SolveParams())  # fmt: skip
    assert sum(node_paid_points(problem).tolist()) == 10**19
    cap, _, _ = arc_caps_and_costs(problem, SolveParams())
    assert cap.size == 10_000 and set(cap.tolist()) == {120}


def test_service_sized_caps_match_the_reference() -> None:
    """A realistic two-channel day (its products fit int64): the caps equal the reference."""
    nodes = [node(50_000 + 977 * h, channel=c, hour=h, price=40) for c in (HOME, PAY) for h in range(24)]
    reds = [red(1_000 + 37 * i, channels=(HOME, PAY), rid=f"r{i}") for i in range(7)]
    params = SolveParams()
    problem = build_problem(inputs(nodes, reds), params)
    cap, pc, _ = arc_caps_and_costs(problem, params)
    paid = node_paid_points(problem).tolist()
    due = problem.demand_points.tolist()
    eligible = [0] * len(due)
    for d, s in zip(problem.arc_demand.tolist(), problem.arc_node.tolist(), strict=True):
        eligible[d] += paid[s]
    want = reference(
        params.kappa,
        [due[d] for d in problem.arc_demand.tolist()],
        pc.tolist(),
        [eligible[d] for d in problem.arc_demand.tolist()],
    )
    assert cap.tolist() == want
