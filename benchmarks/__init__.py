"""Benchmark scripts: each prints figures and a ratio against a reference run alongside."""
