"""Benchmarks: `python -m benchmarks.run` (see docs/performance.md). Not part of the tests."""
