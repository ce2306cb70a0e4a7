"""What a solve tells the outside while it runs: progress for callers, outcomes for metrics.

Plain callbacks and a Protocol, so the planner knows nothing of gRPC streams or Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from allocator.domain import Plan
from allocator.summary import PlanFigures

# Phase names, in order; SolvePhase in the API has the same names.
READING_INPUTS, BUILDING, PAID_FLOW, FREE_POOL, STORING, DONE = (
    "READING_INPUTS",
    "BUILDING",
    "PAID_FLOW",
    "FREE_POOL",
    "STORING",
    "DONE",
)


@dataclass(frozen=True)
class Progress:
    phase: str
    elapsed_s: float
    nodes: int = 0
    demands: int = 0
    arcs: int = 0
    detail: str = ""


ProgressSink = Callable[[Progress], None]


class SolveObserver(Protocol):
    """Told about every Solve: whether the cache answered, and each plan actually solved."""

    def cache(self, hit: bool) -> None: ...

    def solved(self, plan: Plan, figures: PlanFigures, seconds_by_phase: dict[str, float]) -> None: ...
