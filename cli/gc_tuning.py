"""Garbage collection tuned for a long-running process with a large long-lived heap."""

from __future__ import annotations

import ctypes
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


def release_freed_memory() -> None:
    """Collect, then hand the heap's free pages back to the system (glibc's malloc_trim).

    Called once the flow has stopped: its state (windows, dedup keys) is freed
    but stays in the process's RSS, scattered among live allocations, and the
    end-of-run queries would otherwise add their memory on top of it.
    """
    gc.collect()
    try:
        # The process's own symbols: the C library it runs on, whichever it is.
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return
    if trim is not None:  # glibc only: best effort, nothing to do elsewhere
        trim.argtypes = [ctypes.c_size_t]
        trim(0)
