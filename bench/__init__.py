"""Benchmarks: each prints its figure beside the ceiling it is compared with (never timed tests)."""
