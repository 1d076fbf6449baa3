"""Per-window accumulators, one per aggregation kind.

Each keeps ``count`` (distinct events folded in, the revision of the window)
and ``emitted`` (the quantity last emitted for the window, None before the
first emission), so a closed window can be revised exactly by late events.
"""

from __future__ import annotations

from decimal import Decimal

from config.meters import Aggregation
from operators.money import EXACT, ZERO


class SumAccumulator:
    """SUM of values."""

    __slots__ = ("count", "emitted", "total")

    def __init__(self) -> None:
        self.total = ZERO
        self.count = 0
        self.emitted: Decimal | None = None

    def fold(self, value: Decimal | str | None, time_ms: int) -> None:
        """Add one event's value."""
        self.total = EXACT.add(self.total, value)  # type: ignore[arg-type]
        self.count += 1

    def quantity(self) -> Decimal:
        """The window's quantity so far."""
        return self.total


class CountAccumulator:
    """COUNT of events."""

    __slots__ = ("count", "emitted")

    def __init__(self) -> None:
        self.count = 0
        self.emitted: Decimal | None = None

    def fold(self, value: Decimal | str | None, time_ms: int) -> None:
        """Count one event."""
        self.count += 1

    def quantity(self) -> Decimal:
        """The window's quantity so far."""
        return Decimal(self.count)


class MaxAccumulator:
    """MAX of values (for example peak GB stored)."""

    __slots__ = ("best", "count", "emitted")

    def __init__(self) -> None:
        self.best = ZERO
        self.count = 0
        self.emitted: Decimal | None = None

    def fold(self, value: Decimal | str | None, time_ms: int) -> None:
        """Keep the larger value."""
        self.best = max(self.best, value)  # type: ignore[type-var,assignment]
        self.count += 1

    def quantity(self) -> Decimal:
        """The window's quantity so far."""
        return self.best


class UniqueCountAccumulator:
    """Number of distinct values (for example active users)."""

    __slots__ = ("count", "emitted", "values")

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.count = 0
        self.emitted: Decimal | None = None

    def fold(self, value: Decimal | str | None, time_ms: int) -> None:
        """Remember one distinct value."""
        self.values.add(value)  # type: ignore[arg-type]
        self.count += 1

    def quantity(self) -> Decimal:
        """The window's quantity so far."""
        return Decimal(len(self.values))


class LatestAccumulator:
    """Value of the event with the latest time; ties go to the larger value.

    The tie rule makes the result independent of arrival order, which replays
    and partition interleaving do not preserve.
    """

    __slots__ = ("count", "emitted", "latest", "time_ms")

    def __init__(self) -> None:
        self.time_ms = -1
        self.latest = ZERO
        self.count = 0
        self.emitted: Decimal | None = None

    def fold(self, value: Decimal | str | None, time_ms: int) -> None:
        """Keep the value if it is the latest so far."""
        if time_ms > self.time_ms or (time_ms == self.time_ms and value > self.latest):  # type: ignore[operator]
            self.time_ms = time_ms
            self.latest = value  # type: ignore[assignment]
        self.count += 1

    def quantity(self) -> Decimal:
        """The window's quantity so far."""
        return self.latest


Accumulator = (
    SumAccumulator | CountAccumulator | MaxAccumulator | UniqueCountAccumulator | LatestAccumulator
)

ACCUMULATORS: dict[Aggregation, type[Accumulator]] = {
    Aggregation.SUM: SumAccumulator,
    Aggregation.COUNT: CountAccumulator,
    Aggregation.MAX: MaxAccumulator,
    Aggregation.UNIQUE_COUNT: UniqueCountAccumulator,
    Aggregation.LATEST: LatestAccumulator,
}
