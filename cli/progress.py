"""A one-line progress display on a terminal, refreshed from RunStats."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from dataflows.stats import RunStats


class Progress:
    """Redraws ``consumed / accepted / duplicates / rejected / windows`` twice a second."""

    def __init__(self, stats: RunStats, stream: TextIO = sys.stderr, interval_s: float = 0.5):
        self._stats = stats
        self._stream = stream
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="meterwax-progress", daemon=True)
        self._started = 0.0

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._draw()
        self._stream.write("\n")
        self._stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._draw()

    def _draw(self) -> None:
        s = self._stats
        elapsed = max(time.monotonic() - self._started, 1e-9)
        self._stream.write(
            f"\r{s.consumed:,} consumed ({s.consumed / elapsed:,.0f}/s) | "
            f"{s.accepted:,} accepted | {s.duplicates:,} duplicates | "
            f"{s.rejected_total:,} rejected | {s.windows:,} windows, "
            f"{s.adjustments:,} adjustments "
        )
        self._stream.flush()
