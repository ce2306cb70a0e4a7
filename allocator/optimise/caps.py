"""Representativeness caps in exact integers: ceil(kappa * amount * part / total), clipped to part.

Both tiers spread a demand over its eligible nodes in proportion to their capacity: the paid tier caps arc
(d, s) at ceil(kappa * due_d * K_s / sum of K over d's nodes), the free pool's spreading likewise with
impressions. The model defines these caps as exact integers, and the API's ranges let the products pass
2^53 (points up to 10^12, K_s up to 10^15) and the sums pass 2^63 (about 9,200 nodes of 10^15 points), where
float64 rounds a quotient that is an exact integer up by one and int64 sums wrap negative. Here kappa is
the decimal it is written as (1.2 is 6/5, not the double just below it), the sums never wrap and the
ceiling is exact: in int64 arithmetic where every product fits (any realistic day), else from a float
estimate, recomputed in Python's integers wherever it is within rounding reach of an integer.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from allocator.domain import I64

_FITS = 2**62  # int64 products and sums must stay below this
_NEAR = 1e-9  # relative distance to an integer under which a float ceiling is recomputed exactly


def kappa_fraction(kappa: float) -> Fraction:
    """kappa as the shortest decimal that reads back as it (1.2 -> 6/5); ValueError unless finite, >= 0."""
    if not np.isfinite(kappa) or kappa < 0:
        raise ValueError(f"kappa must be a finite number >= 0, got {kappa!r}")
    return Fraction(repr(float(kappa)))


def group_sums(groups: np.ndarray, values: I64, n_groups: int) -> np.ndarray:
    """Sum of the non-negative `values` per group, exactly: int64 where every sum is below 2^53 (float64
    adds such integers exactly), else Python integers (an object array), never a wrapped sum."""
    values = np.asarray(values, dtype=np.int64)
    rough = np.bincount(groups, weights=values.astype(np.float64), minlength=n_groups)
    if rough.size == 0 or rough.max() < 2**53:
        return rough.astype(np.int64)
    exact = np.zeros(n_groups, dtype=object)
    np.add.at(exact, groups, values.astype(object))
    return exact


def spread_caps(kappa: float, amount: np.ndarray, part: I64, total: np.ndarray) -> I64:
    """Per arc: min(ceil(kappa * amount * part / max(total, 1)), part), exactly, as int64.

    amount: the demand's points (or impressions) per arc; part: the node's capacity per arc; total: the
    demand's sum of part over its arcs (int64 or, past 2^62, Python integers from group_sums)."""
    k = kappa_fraction(kappa)
    p, q = k.numerator, k.denominator
    part = np.asarray(part, dtype=np.int64)
    if part.size == 0:
        return np.zeros(0, np.int64)
    amount = np.asarray(amount, dtype=np.int64)
    top_num = int(amount.max()) * int(part.max()) * p
    top_den = max(int(np.max(total)), 1) * q
    if top_num < _FITS and top_den < _FITS:  # exact in int64: ceil(a / b) = -((-a) // b)
        den = np.maximum(np.asarray(total, dtype=np.int64), 1) * q
        cap = -((-(amount * part * p)) // den)
        return np.minimum(cap, part)
    den_f = np.maximum(np.asarray(total, dtype=np.float64), 1.0)
    x = float(k) * amount.astype(np.float64) * part.astype(np.float64) / den_f
    cap = np.ceil(np.minimum(x, 2.0**62)).astype(np.int64)
    near = np.flatnonzero(np.abs(x - np.rint(x)) <= _NEAR * np.maximum(x, 1.0))
    for i in near.tolist():
        a_i, b_i = p * int(amount[i]) * int(part[i]), q * max(int(total[i]), 1)
        cap[i] = min(-(-a_i // b_i), 2**62)
    return np.minimum(cap, part)
