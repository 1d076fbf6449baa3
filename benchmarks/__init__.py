"""Benchmarks: a load generator with ground truth (``load``), used by ``meterwax bench``."""
