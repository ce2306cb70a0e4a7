"""Optimisation: pure functions from a Problem (numpy arrays) to a Plan."""

from allocator.optimise.solve import solve

__all__ = ["solve"]
