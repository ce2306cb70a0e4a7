"""The network simplex against OR-Tools' min-cost flow, and its basis-from-a-flow start: random networks,
optimal costs equal, flows within bounds and conserved, and potentials that prove it (complementary
slackness) — checked here from the arrays, not by the simplex's own bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from ortools.graph.python import min_cost_flow

from allocator.optimise import network_simplex as ns
from allocator.optimise.flow_optimality import optimal

Network = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _network(rng: np.random.Generator) -> Network:
    """A paid-like network: demands -> nodes (parallel parts, zero capacities), nodes -> sink, and an
    under-delivery arc per demand dearer than any chain of parts, so that every supply can be routed."""
    n_dem, n_nodes = int(rng.integers(1, 9)), int(rng.integers(1, 7))
    n_parts = int(rng.integers(0, 30))
    sink = n_dem + n_nodes
    due = rng.integers(0, 12, n_dem)
    penalty = (sink + 2) * 21
    tails = np.concatenate([rng.integers(0, n_dem, n_parts), np.arange(n_dem, sink), np.arange(n_dem)])
    heads = np.concatenate([rng.integers(n_dem, sink, n_parts), np.full(n_nodes + n_dem, sink)])
    caps = np.concatenate([rng.integers(0, 8, n_parts), rng.integers(0, 15, n_nodes), due])
    costs = np.concatenate([rng.integers(-20, 21, n_parts), np.zeros(n_nodes, int), np.full(n_dem, penalty)])
    supplies = np.zeros(sink + 1, np.int64)
    supplies[:n_dem] = due
    supplies[sink] = -int(due.sum())
    return (
        sink + 1,
        tails.astype(np.int32),
        heads.astype(np.int32),
        caps.astype(np.int64),
        costs.astype(np.int64),
        supplies,
    )


def _reference(n: int, tails, heads, caps, costs, supplies) -> int:  # type: ignore[no-untyped-def]
    smcf = min_cost_flow.SimpleMinCostFlow()
    smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    smcf.set_nodes_supplies(np.arange(n, dtype=np.int32), supplies)
    assert smcf.solve() == smcf.OPTIMAL
    return int(smcf.optimal_cost())


def _proved(n: int, tails, heads, caps, costs, supplies, flow, pi) -> bool:  # type: ignore[no-untyped-def]
    n_dem = int(tails[-1]) + 1  # the under-delivery arcs come last, one per demand in order
    return optimal(tails, heads, caps, costs, flow, pi, n - 1, supplies[:n_dem])


def _undelivered(tails: np.ndarray, supplies: np.ndarray) -> np.ndarray:
    """The worst feasible flow: every demand's points on its under-delivery arc (the last arcs), nothing
    else moving — a cold start."""
    n_dem = int(tails[-1]) + 1
    flow = np.zeros(tails.size, np.int64)
    flow[-n_dem:] = supplies[:n_dem]
    return flow


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["all", "none"]))
def test_from_every_point_undelivered_the_simplex_finds_the_min_cost_flow_and_proves_it(
    seed: int, connect: str
) -> None:
    n, tails, heads, caps, costs, supplies = _network(np.random.default_rng(seed))
    flow = _undelivered(tails, supplies)
    connectors = np.arange(tails.size) if connect == "all" else np.arange(0)
    sx = ns.Simplex.from_flow(n, tails, heads, caps, costs, flow, np.zeros(n, np.int64), connectors)
    assert sx is not None
    assert sx.run(np.arange(tails.size))
    event("pivots" if sx.pivots else "no pivot needed")
    out = sx.flow[: tails.size]
    assert int(np.dot(out, costs)) == _reference(n, tails, heads, caps, costs, supplies)
    assert _proved(n, tails, heads, caps, costs, supplies, out, sx.potential())


def _feasible_flow(rng: np.random.Generator, n, tails, heads, caps, costs, supplies):  # type: ignore[no-untyped-def]
    """A feasible flow that is optimal only with some parts held at a random bound (as the warm path's
    reduced solve leaves it), or None when the held parts alone do not fit."""
    m = tails.size
    held = rng.random(m) < 0.5
    held[-(n - 1) :] = False  # (node -> sink and under-delivery arcs never held)
    value = np.where(rng.random(m) < 0.8, 0, caps)
    rest = supplies.copy()
    np.subtract.at(rest, tails[held], value[held])
    np.add.at(rest, heads[held], value[held])
    smcf = min_cost_flow.SimpleMinCostFlow()
    ids = smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, np.where(held, 0, caps), costs)
    smcf.set_nodes_supplies(np.arange(n, dtype=np.int32), rest)
    if smcf.solve() != smcf.OPTIMAL:
        return None
    flow = np.asarray(smcf.flows(ids), np.int64)
    flow[held] = value[held]
    return flow


def _assert_basis(sx: ns.Simplex) -> None:
    """A valid, strongly feasible basis: a spanning tree whose thread visits every node once, non-tree
    arcs at a bound, nothing on the artificial arcs, tree arcs at potential difference = cost, and every
    node able to send a positive flow to the root along its tree path."""
    m, n = sx.m, sx.n
    root = n
    tree = sx.state == ns.TREE
    assert int(tree.sum()) == n
    real = np.arange(m)
    off = real[~tree[:m]]
    assert bool(np.all((sx.flow[off] == 0) | (sx.flow[off] == sx.cap[off])))
    lower, upper = off[sx.state[off] == ns.LOWER], off[sx.state[off] == ns.UPPER]
    assert lower.size + upper.size == off.size
    assert bool(np.all(sx.flow[lower] == 0)) and bool(np.all(sx.flow[upper] == sx.cap[upper]))
    assert not bool(np.any(sx.flow[m:]))
    seen, u = [], root
    for _ in range(n + 1):
        seen.append(u)
        u = int(sx.thread[u])
    assert u == root and sorted(seen) == list(range(n + 1))
    for v in range(n):
        a, p = int(sx.pred[v]), int(sx.parent[v])
        assert sx.state[a] == ns.TREE
        up = int(sx.pred_dir[v]) == ns.UP
        assert (int(sx.source[a]), int(sx.target[a])) == ((v, p) if up else (p, v))
        assert int(sx.cost[a]) + int(sx.pi[sx.source[a]]) - int(sx.pi[sx.target[a]]) == 0
        assert (sx.flow[a] < sx.cap[a]) if up else (sx.flow[a] > 0), f"node {v}: not strongly feasible"


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["hint", "zero"]),
    st.sampled_from([1, 2, 1000]),
    st.sampled_from(["all", "some", "none"]),
)
def test_a_simplex_started_from_a_feasible_flow_ends_at_the_optimum(
    seed: int, hint: str, listed: int, connect: str
) -> None:
    rng = np.random.default_rng(seed)
    n, tails, heads, caps, costs, supplies = _network(rng)
    flow = _feasible_flow(rng, n, tails, heads, caps, costs, supplies)
    if flow is None:
        event("held parts do not fit")
        return
    # move a point between parallel parts now and then: still feasible, and where both end strictly
    # inside their bounds the basis has a cycle of inner arcs to cancel first
    for a in range(tails.size):
        for b in np.flatnonzero((tails == tails[a]) & (heads == heads[a])):
            if a != b and flow[a] < caps[a] and flow[b] > 0 and rng.random() < 0.5:
                flow[a] += 1
                flow[b] -= 1
    inner = (flow > 0) & (flow < caps)
    pairs = {(int(t), int(h)) for t, h in zip(tails[inner], heads[inner], strict=True)}
    event("inner parallel parts" if len(pairs) < int(inner.sum()) else "no inner parallel parts")
    potentials = rng.integers(-60, 60, n) if hint == "hint" else np.zeros(n, np.int64)
    # connectors: all arcs, some, or none (then every tree of inner arcs hangs from the artificial root)
    order = rng.permutation(tails.size)
    order = {"all": order, "some": order[: order.size // 3], "none": order[:0]}[connect]
    sx = ns.Simplex.from_flow(n, tails, heads, caps, costs, flow, potentials, order)
    assert sx is not None
    _assert_basis(sx)
    hung = int(np.count_nonzero(sx.state[sx.m :] == ns.TREE))
    event("several trees on the artificial root" if hung > 1 else "one tree on the artificial root")
    assert sx.run(np.arange(tails.size), listed=listed)  # candidate lists short and long
    assert sx.violations().size == 0
    _assert_basis(sx)
    event("pivots" if sx.pivots else "no pivot needed")
    out = sx.flow[: tails.size]
    assert int(np.dot(out, costs)) == _reference(n, tails, heads, caps, costs, supplies)
    assert _proved(n, tails, heads, caps, costs, supplies, out, sx.potential())


def test_a_basis_whose_cycles_take_too_many_passes_is_refused() -> None:
    # two parallel arcs, both strictly inside their bounds: one cycle, so at least one pass
    tails, heads = np.array([0, 0], np.int32), np.array([1, 1], np.int32)
    caps, costs, flow = np.array([4, 4]), np.array([1, 2]), np.array([2, 2])
    args = (2, tails, heads, caps, costs, flow, np.zeros(2, np.int64), np.arange(2))
    assert ns.Simplex.from_flow(*args, max_passes=0) is None
    sx = ns.Simplex.from_flow(*args, max_passes=1)
    assert sx is not None
    assert sx.flow[:2].tolist() == [4, 0]  # pushed round the cycle the cheaper way
    _assert_basis(sx)


def _root(parent: list[int], x: int) -> int:
    while parent[x] != x:
        x = parent[x]
    return x


def test_cycles_of_inner_arcs_are_cancelled_without_raising_the_cost() -> None:
    """Random arcs with random costs, most strictly inside their bounds: the basis needs them acyclic,
    and the pushes that make them so keep the flow conserved and never raise its cost."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(2, 8))
        m = int(rng.integers(1, 25))
        tails = rng.integers(0, n, m).astype(np.int32)
        heads = rng.integers(0, n, m).astype(np.int32)
        keep = tails != heads
        tails, heads = tails[keep], heads[keep]
        m = tails.size
        caps = rng.integers(2, 9, m).astype(np.int64)
        costs = rng.integers(-5, 6, m).astype(np.int64)
        # one unit on most arcs (strictly inside: capacities are 2 and more); the nodes' supplies are
        # whatever it leaves there, and must stay so
        flow = (rng.random(m) < 0.8).astype(np.int64)
        balance = np.bincount(heads, weights=flow, minlength=n) - np.bincount(
            tails, weights=flow, minlength=n
        )
        before = flow.copy()
        source = np.concatenate([tails, np.arange(n, dtype=np.int32)])
        target = np.concatenate([heads, np.full(n, n, np.int32)])
        cap = np.concatenate([caps, np.full(n, ns.INF)])
        cost = np.concatenate([costs, np.zeros(n, np.int64)])
        fl = np.concatenate([flow, np.zeros(n, np.int64)])
        inner = np.flatnonzero((fl[:m] > 0) & (fl[:m] < cap[:m]))
        done = ns._cancel_interior_cycles(n, source, target, cap, cost, fl, inner, 10_000)
        assert done >= 0
        after = fl[:m]
        assert bool(np.all((after >= 0) & (after <= caps)))
        moved = np.bincount(heads, weights=after, minlength=n) - np.bincount(
            tails, weights=after, minlength=n
        )
        assert np.array_equal(moved, balance)  # conserved: the same supplies
        assert int(np.dot(after, costs)) <= int(np.dot(before, costs))  # pushed the way that costs no more
        # acyclic: the inner arcs now form a forest
        parent = list(range(n))
        for a in np.flatnonzero((after > 0) & (after < caps)):
            ru, rv = _root(parent, int(tails[a])), _root(parent, int(heads[a]))
            assert ru != rv, "a cycle of inner arcs was left"
            parent[ru] = rv


def test_a_pivot_budget_stops_the_simplex_with_a_valid_basis() -> None:
    rng = np.random.default_rng(11)
    n, tails, heads, caps, costs, supplies = _network(rng)
    while int(supplies.max()) == 0 or tails.size < 10:
        n, tails, heads, caps, costs, supplies = _network(rng)
    flow = _undelivered(tails, supplies)
    everything, hint = np.arange(tails.size), np.zeros(n, np.int64)

    def start() -> ns.Simplex:
        sx = ns.Simplex.from_flow(n, tails, heads, caps, costs, flow, hint, everything)
        assert sx is not None
        return sx

    sx = start()
    assert not sx.run(everything, max_pivots=1)
    _assert_basis(sx)
    assert sx.run(everything)  # the basis it stopped at is one to go on from
    assert int(np.dot(sx.flow[: tails.size], costs)) == _reference(n, tails, heads, caps, costs, supplies)
    for listed in (1, 3):  # one pivot a run, pricing going on where it stopped: the same optimum
        sx = start()
        runs = 1
        while not sx.run(everything, max_pivots=1, listed=listed):
            runs += 1
        assert sx.pivots <= runs <= sx.pivots + 1  # (the last run may pivot once, then find none)
        assert int(np.dot(sx.flow[: tails.size], costs)) == _reference(n, tails, heads, caps, costs, supplies)
    with pytest.raises(ValueError):
        start().run(everything, listed=0)


def test_the_optimality_check_refuses_what_is_not_a_min_cost_flow() -> None:
    # one demand of 2 points, two parts to one node: the cheap part (-3) and the dear one (-1)
    tails = np.array([0, 0, 1, 0], np.int32)
    heads = np.array([1, 1, 2, 2], np.int32)
    caps = np.array([2, 2, 5, 2], np.int64)
    costs = np.array([-3, -1, 0, 100], np.int64)
    due = np.array([2])
    best = np.array([2, 0, 2, 0])
    pi = np.array([3, 0, 0])  # rc: 0, 2, 0, 103
    assert optimal(tails, heads, caps, costs, best, pi, 2, due)
    assert not optimal(tails, heads, caps, costs, np.array([0, 2, 2, 0]), pi, 2, due)  # dearer
    assert not optimal(tails, heads, caps, costs, np.array([2, 0, 1, 0]), pi, 2, due)  # not conserved
    assert not optimal(tails, heads, caps, costs, np.array([3, -1, 2, 0]), pi, 2, due)  # out of bounds
