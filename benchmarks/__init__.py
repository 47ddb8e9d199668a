"""Benchmarks: each checks its answers inside the timed runs and ends with one JSON line."""
