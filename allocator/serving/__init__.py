"""Serving: which merchants to show now, delivery counts, and intraday re-planning."""
