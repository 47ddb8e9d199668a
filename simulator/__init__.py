"""Simulated regions of care visits: feeds for the demo, the tests and the benchmarks."""
