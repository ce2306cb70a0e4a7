"""Property tests: on random small instances every plan is feasible and optimal against HiGHS LP oracles."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from allocator.domain import (
    Channel,
    Eligibility,
    Problem,
    ProblemInputs,
    Program,
    Redemption,
    Rules,
    SolveParams,
    SupplyNode,
)
from allocator.optimise import free_pool, solve
from allocator.optimise.free_pool import node_free_capacity, solve_free
from allocator.problem import build_problem
from allocator.validate import assert_plan_feasible
from bench.oracle import free_lp_level, paid_lp_objective

from .builders import D0, free_pool_problem

DAYS = [D0 + dt.timedelta(days=k) for k in range(-1, 3)]
REGIONS = ["north", "south"]
channels = st.sampled_from(list(Channel))
channel_sets = st.lists(channels, min_size=1, max_size=3, unique=True).map(tuple)
wide_channel_sets = st.one_of(st.just(tuple(Channel)), channel_sets)
region_sets = st.lists(st.sampled_from(REGIONS), min_size=1, max_size=2, unique=True).map(tuple)


@st.composite
def flight(draw: st.DrawFn) -> tuple[dt.date, dt.date]:
    return draw(st.sampled_from(DAYS[:2])), draw(st.sampled_from(DAYS[1:]))  # always covers D0


@st.composite
def problem_inputs(draw: st.DrawFn) -> ProblemInputs:
    dates = tuple(DAYS[1 : 1 + draw(st.integers(1, 2))])
    nodes = tuple(
        SupplyNode(draw(st.sampled_from(dates)), draw(st.integers(0, 23)), draw(channels),
                   draw(st.sampled_from(REGIONS)), draw(st.integers(0, 300)),
                   draw(st.sampled_from([10, 40, 333, 1000, 2500])))
        for _ in range(draw(st.integers(1, 6)))
    )  # fmt: skip
    reds = []
    for i in range(draw(st.integers(0, 8))):
        start, end = draw(flight())
        quality = tuple((c, draw(st.sampled_from([0.5, 1.0, 1.7, 3.0]))) for c in draw(channel_sets))
        reds.append(
            Redemption(
                f"r{i}",
                f"m{i}",
                draw(st.sampled_from(list(Program))),
                draw(st.integers(1, 400)),
                draw(channel_sets),
                start,
                end,
                draw(region_sets),
                quality,
            )
        )
    eligs = []
    for i in range(draw(st.integers(0, 5))):
        start, end = draw(flight())
        chans = draw(st.one_of(st.just(()), channel_sets))
        eligs.append(
            Eligibility(
                f"f{i}", draw(st.sampled_from([0.3, 1.0, 2.0, 5.0])), draw(region_sets), start, end, chans
            )
        )
    rules = Rules(
        program_channels={
            Program.STAR_PLAN: frozenset(Channel),
            Program.LUOMA_PLAN: frozenset(draw(channel_sets)),
        },
        default_price={c: 100 for c in Channel},
        free_share={c: draw(st.sampled_from([0.0, 0.1, 0.5])) for c in Channel},
        free_quota_per_weight=draw(st.sampled_from([5, 40, 1000])),
    )
    return ProblemInputs(dates, nodes, tuple(reds), tuple(eligs), rules)


params_st = st.builds(
    SolveParams, kappa=st.sampled_from([0.5, 1.0, 2.0]), spread_penalty=st.sampled_from([0, 1, 7])
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem_inputs(), params_st)
def test_plans_are_feasible_and_match_the_oracles(inp: ProblemInputs, params: SolveParams) -> None:
    problem = build_problem(inp, params)
    plan = solve(problem, params)
    assert_plan_feasible(inp, problem, plan)
    event(
        f"paid arcs used: {min(plan.paid_points.size, 3)}+, under-delivery: {bool(plan.demand_under.any())}"
    )
    event(f"free arcs used: {min(plan.free_impressions.size, 3)}+")

    # paid tier: the integral flow's optimum equals the LP optimum
    oracle = paid_lp_objective(problem, params)
    assert abs(plan.objective - oracle) <= 1e-6 * abs(oracle) + 1e-6

    # free pool: the max-min level matches the LP's first level up to one impression per merchant
    node_free = node_free_capacity(problem, plan.paid_node, plan.paid_impressions)
    lp_level = free_lp_level(problem, node_free)
    included = (np.bincount(problem.free_arc_merchant, minlength=problem.free_weight.size) > 0) & (
        problem.free_cap > 0
    )
    if included.any():
        slack = 1.0 / float(problem.free_weight[included].min())
        assert plan.free_level <= lp_level + 1e-6
        assert plan.free_level >= 0.999 * lp_level - slack - 1e-9


@st.composite
def free_pools(draw: st.DrawFn) -> tuple[Problem, np.ndarray]:
    """A bare free pool: merchants with weights and caps, nodes with free capacity, random eligibility."""
    n_f, n_s = draw(st.integers(1, 8)), draw(st.integers(1, 6))
    pairs = draw(
        st.lists(st.tuples(st.integers(0, n_f - 1), st.integers(0, n_s - 1)), max_size=30, unique=True)
    )
    weights = draw(st.lists(st.sampled_from([0.3, 1.0, 2.0, 5.0]), min_size=n_f, max_size=n_f))
    caps = draw(st.lists(st.integers(0, 80), min_size=n_f, max_size=n_f))
    problem = free_pool_problem(weights, caps, [p[0] for p in pairs], [p[1] for p in pairs], [0] * n_s)
    node_free = np.array(draw(st.lists(st.integers(0, 60), min_size=n_s, max_size=n_s)), np.int64)
    return problem, node_free


def _all_served(problem: Problem, node_free: np.ndarray, demand: np.ndarray) -> bool:
    """Whether every merchant can get `demand` at once (scipy's max flow: independent of OR-Tools)."""
    n_f, n_s = demand.size, node_free.size
    src, sink = n_f + n_s, n_f + n_s + 1
    rows = np.concatenate([np.full(n_f, src), problem.free_arc_merchant, n_f + np.arange(n_s)])
    cols = np.concatenate([np.arange(n_f), n_f + problem.free_arc_node, np.full(n_s, sink)])
    caps = np.concatenate([demand, np.full(problem.free_arc_merchant.size, 10**6), node_free])
    graph = csr_matrix((caps.astype(np.int32), (rows, cols)), shape=(sink + 1, sink + 1))
    return bool(maximum_flow(graph, src, sink).flow_value == int(demand.sum()))


@settings(max_examples=300, deadline=None)
@given(free_pools())
def test_no_free_merchant_can_gain_without_one_at_or_below_its_level_losing(
    case: tuple[Problem, np.ndarray],
) -> None:
    problem, node_free = case
    res = solve_free(problem, node_free, None, kappa=1.0)
    n_f = problem.free_weight.size
    got = np.bincount(res.merchant, weights=res.impressions, minlength=n_f).astype(np.int64)
    w, cap = problem.free_weight, problem.free_cap
    # feasible: only eligible arcs, no node over its free capacity, no merchant over its cap
    eligible = set(zip(problem.free_arc_merchant.tolist(), problem.free_arc_node.tolist(), strict=True))
    assert all((int(f), int(s)) in eligible for f, s in zip(res.merchant, res.node, strict=True))
    assert (np.bincount(res.node, weights=res.impressions, minlength=node_free.size) <= node_free).all()
    assert (got <= cap).all()
    included = (np.bincount(problem.free_arc_merchant, minlength=n_f) > 0) & (cap > 0)
    assert (got[~included] == 0).all()
    level = got / w
    for f in np.flatnonzero(included & (got < cap)):
        # f gains one impression; merchants clearly above f (still above after losing one to f) may lose
        # any amount, so they are left out; everyone else keeps what it has
        above = (got - 1) / w > (got[f] + 1) / w[f]
        demand = np.where(above, 0, got)
        demand[f] += 1
        assert not _all_served(problem, node_free, demand), (f, got.tolist(), level.tolist())
    if included.any():
        assert res.level == level[included].min()


@settings(max_examples=500, deadline=None)  # (about 40 % of the pools have nothing to spread)
@given(free_pools(), st.sampled_from([0.5, 1.0, 2.0]))
def test_the_spread_keeps_the_totals_and_uses_the_least_overflow(
    case: tuple[Problem, np.ndarray], kappa: float
) -> None:
    """The split within the caps (one max flow) whenever it holds every total, else the min-cost flow:
    either way the fair totals exactly, every node within its free capacity, and as little overflow as the
    min-cost flow alone uses."""
    problem, node_free = case
    res = solve_free(problem, node_free, None, kappa=kappa)
    n_f = problem.free_weight.size
    totals = np.bincount(res.merchant, weights=res.impressions, minlength=n_f).astype(np.int64)
    extras: dict[str, float] = {}
    got = free_pool._spread(problem, node_free, totals, kappa, extras)
    assert (np.bincount(problem.free_arc_merchant, weights=got, minlength=n_f) == totals).all()
    assert (np.bincount(problem.free_arc_node, weights=got, minlength=node_free.size) <= node_free).all()
    assert (got >= 0).all()
    with pytest.MonkeyPatch.context() as mp:  # the min-cost flow alone: the reference
        mp.setattr(free_pool, "_split", lambda *args: None)  # (its other use: only if that fails)
        reference: dict[str, float] = {}
        free_pool._spread(problem, node_free, totals, kappa, reference)
    overflow = extras.get("free_spread_overflow", 0.0)  # (not set when there is nothing to spread)
    if not totals.any():
        event("nothing to spread")
    else:
        event("within the caps" if overflow == 0 else "overflow needed")
    assert overflow == reference.get("free_spread_overflow", 0.0)
    if overflow == 0:  # and then every arc within its cap
        fm, fn = problem.free_arc_merchant, problem.free_arc_node
        nf = node_free[fn]
        eligible = np.bincount(fm, weights=nf, minlength=n_f)
        cap = np.minimum(np.ceil(kappa * totals[fm] * nf / np.maximum(eligible[fm], 1)), nf)
        assert (got <= cap).all()
