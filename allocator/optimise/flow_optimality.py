"""Whether a flow is a min-cost flow, decided from the arrays alone (no solver's bookkeeping): the check
the warm re-solve applies to the network simplex's answer before using it, and the tests' judge."""

from __future__ import annotations

import numpy as np

from allocator.domain import I64


def optimal(
    tails: np.ndarray, heads: np.ndarray, caps: I64, costs: I64, flow: I64, pi: I64, sink: int, due: I64
) -> bool:
    """Whether `flow` is a min-cost flow routing every demand's points (demands 0..len(due)-1) to the sink:
    within bounds, conserved, and with potentials `pi` under which no residual arc has a negative reduced
    cost (complementary slackness), checked from the arrays alone."""
    if bool(np.any(flow < 0)) or bool(np.any(flow > caps)):
        return False
    balance = np.bincount(heads, weights=flow, minlength=sink + 1) - np.bincount(
        tails, weights=flow, minlength=sink + 1
    )
    supply = np.zeros(sink + 1)
    supply[: due.size] = due
    supply[sink] = -float(due.sum())
    if not np.array_equal(balance + supply, np.zeros(sink + 1)):
        return False
    rc = costs + pi[tails] - pi[heads]
    return not bool(np.any((rc < 0) & (flow < caps)) or np.any((rc > 0) & (flow > 0)))
