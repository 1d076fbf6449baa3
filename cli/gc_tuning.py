"""Garbage collection tuned for a long-running process with a large long-lived heap."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Collect garbage less often: measured ~25% faster on the generator benchmark.

    The flow and the API allocate many short-lived containers per batch or request,
    while their state (dedup keys, windows, catalogs, libraries) is a large
    long-lived heap that the default gen-0 threshold of 700 makes the collector
    walk thousands of times a second. Reference counting frees almost all
    garbage; cycles are rare.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
