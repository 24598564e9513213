"""Helpers for the test suite and the benchmarks (never used by a running server):
things both tests/ and benchmarks/ need, so that neither imports the other."""
