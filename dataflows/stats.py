"""Counters of one run, shared by the flow's steps and read by the progress line and summary.

Updated once per batch, under a lock because Bytewax workers are threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from dataflows.metrics import Metrics


@dataclass
class RunStats:
    """What happened to every consumed message: consumed = accepted + duplicates + rejected."""

    consumed: int = 0
    accepted: int = 0
    duplicates: int = 0
    redis_duplicates: int = 0  # of which the durable (Redis) layer caught
    late: int = 0
    windows: int = 0
    adjustments: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    # Mirrors every count into Prometheus when given.
    metrics: Metrics | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        """Add to the named counters."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)
        if self.metrics is not None:
            self.metrics.count(counts)

    def reject(self, reasons: Counter[str]) -> None:
        """Count rejections by reason."""
        with self._lock:
            self.rejected.update(reasons)
        if self.metrics is not None:
            for reason, count in reasons.items():
                self.metrics.rejected.labels(reason).inc(count)

    @property
    def rejected_total(self) -> int:
        """All rejections, whatever the reason."""
        return sum(self.rejected.values())

    @property
    def reconciles(self) -> bool:
        """Whether every consumed message is accounted for exactly once."""
        return self.consumed == self.accepted + self.duplicates + self.rejected_total
