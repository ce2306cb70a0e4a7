"""Pacing through an hour window: how much of a line's plan may be shown by now, and how to prefer.

Pure functions over numpy arrays. A line is one merchant's planned impressions on one supply node (paid
by one redemption, or free). `frac` is the fraction of the hour window elapsed.
"""

from __future__ import annotations

import math

import numpy as np

from allocator.domain import F64, I64

# A line may run this far ahead of a perfectly even pace (a fraction of its plan, and at least one
# impression), so the first page views of an hour can be served and small plans are not starved.
BURST_SHARE = 0.02
# Most extra preference for a line behind its pace (4x the weight of a line on pace).
BEHIND_BOOST = 3.0
# A line this far behind (as a share of its plan) gets the whole boost.
BEHIND_FULL = 0.05


def hour_fraction(seconds_into_hour: float) -> float:
    """Fraction of the hour window elapsed, in [0, 1]."""
    return min(1.0, max(0.0, seconds_into_hour / 3600.0))


def allowance(cap: I64, frac: float) -> I64:
    """Impressions each line may have been shown by now: its even pace plus a burst, at most its plan."""
    burst = np.maximum(1, np.ceil(cap * BURST_SHARE)).astype(np.int64)
    paced = np.floor(cap * frac).astype(np.int64) + burst
    return np.minimum(cap, paced)


def weights(cap: I64, count: I64, frac: float, allow: I64 | None = None) -> F64:
    """Preference of each line: what is left of its plan, boosted while it is behind its pace.

    Zero for lines that are used up or ahead of their allowance (held back until the pace catches up);
    `allow` is allowance(cap, frac) when the caller has it already.
    """
    left = np.maximum(cap - count, 0).astype(np.float64)
    behind = np.maximum(cap * frac - count, 0.0) / np.maximum(cap * BEHIND_FULL, 1.0)
    w = left * (1.0 + BEHIND_BOOST * np.minimum(behind, 1.0))
    w[count >= (allowance(cap, frac) if allow is None else allow)] = 0.0
    return w


def candidate_order(w: F64, k: int, rng: np.random.Generator) -> I64:
    """Up to k line indices in a weighted random order without replacement (Efraimidis-Spirakis keys).

    Lines of zero weight never appear. The order is a draw in proportion to the weights: the first is
    line i with probability w_i / sum(w), the next from the rest in proportion, and so on.
    """
    live = np.flatnonzero(w > 0)
    if live.size == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    u = rng.random(live.size)
    keys = np.log(np.maximum(u, 1e-300)) / w[live]  # larger is earlier
    k = min(k, live.size)
    top = np.argpartition(-keys, k - 1)[:k] if k < live.size else np.arange(live.size)
    return live[top[np.argsort(-keys[top], kind="stable")]].astype(np.int64)


def candidates_for(count: int) -> int:
    """How many candidates to send for a pick of `count` merchants (room for used-up and repeated ones)."""
    return 2 * count + 8 + int(math.sqrt(count))
