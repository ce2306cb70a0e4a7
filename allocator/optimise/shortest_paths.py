"""Bellman-Ford relaxation in rounds, vectorised with numpy, for the paid tier's residual graphs.

Each round relaxes, at once, every arc leaving a vertex whose distance changed in the previous round
(arcs in CSR order by tail). After round k every shortest path of at most k arcs is final, so without a
negative cycle it ends within V rounds; on these graphs the shortest-path trees are shallow (a few dozen
rounds). Used for the shadow prices (duals.py) and the warm re-solve's certificate (paid_warm.py).
"""

from __future__ import annotations

import numpy as np

from allocator.domain import I64


def csr(tails: I64, n_vertices: int) -> tuple[I64 | None, I64, I64]:
    """Order of the arcs by tail (None when already sorted), and the start and count of each vertex's arcs."""
    order: I64 | None = None
    if tails.size > 1 and not bool(np.all(tails[1:] >= tails[:-1])):
        order = np.argsort(tails, kind="stable").astype(np.int64)
        tails = tails[order]
    counts = np.bincount(tails, minlength=n_vertices).astype(np.int64)
    starts = np.cumsum(counts) - counts
    return order, starts, counts


def relax(
    starts: I64,
    counts: I64,
    heads: I64,
    costs: I64,
    dist: I64,
    frontier: I64,
    label: np.ndarray | None = None,
) -> int | None:
    """Lower `dist` (in place) along the CSR arcs until nothing changes, starting from `frontier`; returns
    the rounds used, or None when distances still change after V + 1 rounds (a negative cycle). `label`,
    when given, is carried along: a vertex takes the label of (one of) the tails that set its distance."""
    n_vertices = dist.size
    rounds = 0
    while frontier.size:
        if rounds > n_vertices:
            return None
        rounds += 1
        cnt = counts[frontier]
        n_out = int(cnt.sum())
        if n_out == 0:
            break
        offsets = np.cumsum(cnt) - cnt
        idx = np.repeat(starts[frontier] - offsets, cnt) + np.arange(n_out, dtype=np.int64)
        tail = np.repeat(frontier, cnt)
        head = heads[idx]
        cand = dist[tail] + costs[idx]
        better = cand < dist[head]
        if not bool(better.any()):
            break
        head, tail, cand = head[better], tail[better], cand[better]
        np.minimum.at(dist, head, cand)
        if label is not None:
            win = cand == dist[head]
            label[head[win]] = label[tail[win]]
        changed = np.zeros(n_vertices, dtype=bool)  # (np.unique would sort or hash: far slower)
        changed[head] = True
        frontier = np.flatnonzero(changed)
    return rounds
