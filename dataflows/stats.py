"""Counters of one run, shared by the flow's steps and read by the progress line and summary.

Updated once per batch, under a lock because Bytewax workers are threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from dataflows.metrics import Metrics
from operators.model import RatedColumns, RatedWindow
from operators.period_usage import PeriodUsage

# tenant, meter, period start, plan, price version, currency: one invoice usage line
_PeriodKey = tuple[str, str, int, str, str, str]


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
    # Where each billing period this run rated stands: (usage, cost) after its last revision.
    # Decimals, or exact texts from the native engine's columns (read at the end).
    periods: dict[_PeriodKey, tuple[Decimal | str, Decimal | str]] = field(default_factory=dict)
    # Mirrors every count into Prometheus when given.
    metrics: Metrics | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # Periods the native engine's shards note themselves, read at the end (rated_periods).
    _sources: list[Callable[[], Mapping[_PeriodKey, tuple[Decimal | str, Decimal | str]]]] = field(
        default_factory=list, repr=False, compare=False
    )

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

    def rated(self, windows: Iterable[RatedWindow] | RatedColumns) -> None:
        """Note the billing periods of rated window revisions (in the order they were rated)."""
        with self._lock:
            if isinstance(windows, RatedColumns):
                self.periods.update(windows.periods())
                return
            for w in windows:
                key = (w.tenant, w.meter, w.period_start_ms, w.plan_id, w.price_version, w.currency)
                self.periods[key] = (w.period_quantity, w.period_amount)

    def watch_periods(
        self, source: Callable[[], Mapping[_PeriodKey, tuple[Decimal | str, Decimal | str]]]
    ) -> None:
        """Include the periods ``source`` returns (a shard's own record) in ``rated_periods``.

        Read once the flow has stopped: a native ledger cannot be read while its
        shard rates (the core works with the GIL released).
        """
        with self._lock:
            self._sources.append(source)

    def rated_periods(self) -> list[PeriodUsage]:
        """The billing periods this run rated, as the flow's state last priced them."""
        with self._lock:
            periods = dict(self.periods)
            sources = list(self._sources)
        for source in sources:
            periods.update(source())
        items = sorted(periods.items())
        return [PeriodUsage(*key, quantity=Decimal(q), amount=Decimal(a)) for key, (q, a) in items]

    @property
    def rejected_total(self) -> int:
        """All rejections, whatever the reason."""
        return sum(self.rejected.values())

    @property
    def reconciles(self) -> bool:
        """Whether every consumed message is accounted for exactly once."""
        return self.consumed == self.accepted + self.duplicates + self.rejected_total
