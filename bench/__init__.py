"""Reproducible benchmarks of the optimiser; each prints one JSON object as its last line."""
