"""Pacing and the weighted candidate order (pure functions)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from allocator.serving.pacing import allowance, candidate_order, hour_fraction, weights

caps = st.lists(st.integers(0, 10_000), min_size=1, max_size=40).map(lambda x: np.array(x, dtype=np.int64))


@given(caps, st.floats(0, 1), st.floats(0, 1))
def test_allowance_is_within_the_plan_and_grows_through_the_hour(cap: np.ndarray, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert (allowance(cap, lo) <= allowance(cap, hi)).all()
    assert (allowance(cap, hi) <= cap).all()
    assert (allowance(cap, 1.0) == cap).all()  # by the end of the hour the whole plan may be shown
    assert (allowance(cap, 0.0)[cap > 0] >= 1).all()  # the first page view of the hour can be served


@given(caps, st.floats(0, 1), st.integers(0, 2**31))
def test_weights_hold_back_lines_ahead_of_pace_and_never_used_up_ones(
    cap: np.ndarray, frac: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    count = (cap * rng.random(cap.size) * 1.2).astype(np.int64)
    w = weights(cap, count, frac)
    assert (w >= 0).all()
    assert (w[count >= allowance(cap, frac)] == 0).all()
    assert (w[count >= cap] == 0).all()
    order = candidate_order(w, 10, rng)
    assert len(set(order.tolist())) == order.size <= 10
    assert (w[order] > 0).all()  # held back and used-up lines are never candidates


def test_behind_pace_is_favoured_and_first_choice_is_proportional() -> None:
    cap = np.array([1000, 1000], dtype=np.int64)
    w = weights(cap, np.array([100, 500], dtype=np.int64), 0.5)  # the first is 400 behind, the second on pace
    assert w[0] > w[1] * 1.5
    rng = np.random.default_rng(7)
    w = np.array([1.0, 3.0])
    first = np.bincount([candidate_order(w, 1, rng)[0] for _ in range(20_000)], minlength=2) / 20_000
    assert abs(first[1] - 0.75) < 0.02  # drawn in proportion to the weights


def test_hour_fraction_is_clamped() -> None:
    assert hour_fraction(-5) == 0.0 and hour_fraction(1800) == 0.5 and hour_fraction(4000) == 1.0


def _positions(orders: list[np.ndarray], lines: int) -> np.ndarray:
    """Share of orders with each line at each position (positions x lines)."""
    at = np.zeros((len(orders[0]), lines))
    for o in orders:
        at[np.arange(o.size), o] += 1
    return at / len(orders)


def test_the_whole_order_is_successive_sampling() -> None:
    w = np.r_[5000.0, np.arange(1.0, 40.0)]  # one heavy line and 39 unequal light ones
    rng = np.random.default_rng(13)
    n = 30_000
    got = [candidate_order(w, 9, rng) for _ in range(n)]
    assert all(len(set(o.tolist())) == o.size == 9 for o in got)

    def reference() -> np.ndarray:  # the definition: each next line in proportion to the rest
        left, order = w.copy(), []
        for _ in range(9):
            i = int(rng.choice(w.size, p=left / left.sum()))
            order.append(i)
            left[i] = 0.0
        return np.array(order)

    want = [reference() for _ in range(n)]
    assert np.abs(_positions(got, w.size) - _positions(want, w.size)).max() < 0.015


def test_the_order_stays_exact_when_one_line_carries_nearly_all_the_weight() -> None:
    """The heavy line comes first; the order of the rest is still in proportion to their weights."""
    w = np.array([1e9, 1.0, 2.0, 3.0])
    rng = np.random.default_rng(5)
    got = [candidate_order(w, 3, rng) for _ in range(20_000)]
    assert all(o[0] == 0 and len(set(o.tolist())) == 3 for o in got)
    second = np.bincount([int(o[1]) for o in got], minlength=4) / len(got)
    assert abs(second[3] - 0.5) < 0.02 and abs(second[1] - 1 / 6) < 0.02  # in proportion to the rest
    assert candidate_order(w, 10, rng).size == 4  # k past the live lines: all of them, in order
