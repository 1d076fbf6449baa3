"""Per-window accumulators, one per aggregation kind.

Each keeps ``count`` (distinct events folded in, the revision of the window),
``emitted`` (the quantity last emitted for the window, None before the first
emission) and ``amount`` (the amount last emitted), so a closed window can be
revised exactly by late events. ``merge`` folds a window into the same kind
of accumulator kept for the whole billing period.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal

from config.meters import Aggregation
from operators.money import EXACT, ZERO


class SumAccumulator:
    """SUM of values."""

    __slots__ = ("amount", "count", "emitted", "total")

    def __init__(self) -> None:
        self.total = ZERO
        self.count = 0
        self.emitted: Decimal | None = None
        self.amount = ZERO

    def fold(self, value: Decimal | str | None, time_ms: int) -> None:
        """Add one event's value."""
        self.total = EXACT.add(self.total, value)  # type: ignore[arg-type]
        self.count += 1

    def quantity(self) -> Decimal:
        """The window's quantity so far."""
        return self.total

    def merge(self, window: SumAccumulator, change: Decimal) -> None:
        """Add a window revision's change in quantity."""
        self.merge_revision(change, window.total, -1, ())

    def merge_revision(
        self, change: Decimal, quantity: Decimal, time_ms: int, values: Collection[str]
    ) -> None:
        """``merge`` from a revision's values, without a window accumulator."""
        self.total = EXACT.add(self.total, change)


class CountAccumulator:
    """COUNT of events."""

    __slots__ = ("amount", "count", "emitted")

    def __init__(self) -> None:
        self.count = 0
        self.emitted: Decimal | None = None
        self.amount = ZERO

    def fold(self, value: Decimal | str | None, time_ms: int) -> None:
        """Count one event."""
        self.count += 1

    def quantity(self) -> Decimal:
        """The window's quantity so far."""
        return Decimal(self.count)

    def merge(self, window: CountAccumulator, change: Decimal) -> None:
        """Add a window revision's change in count."""
        self.merge_revision(change, window.quantity(), -1, ())

    def merge_revision(
        self, change: Decimal, quantity: Decimal, time_ms: int, values: Collection[str]
    ) -> None:
        """``merge`` from a revision's values, without a window accumulator."""
        self.count += int(change)


class MaxAccumulator:
    """MAX of values (for example peak GB stored)."""

    __slots__ = ("amount", "best", "count", "emitted")

    def __init__(self) -> None:
        self.best = ZERO
        self.count = 0
        self.emitted: Decimal | None = None
        self.amount = ZERO

    def fold(self, value: Decimal | str | None, time_ms: int) -> None:
        """Keep the larger value."""
        self.best = max(self.best, value)  # type: ignore[type-var,assignment]
        self.count += 1

    def quantity(self) -> Decimal:
        """The window's quantity so far."""
        return self.best

    def merge(self, window: MaxAccumulator, change: Decimal) -> None:
        """Keep the larger maximum (merging a revision twice changes nothing)."""
        self.merge_revision(change, window.best, -1, ())

    def merge_revision(
        self, change: Decimal, quantity: Decimal, time_ms: int, values: Collection[str]
    ) -> None:
        """``merge`` from a revision's values, without a window accumulator."""
        self.best = max(self.best, quantity)


class UniqueCountAccumulator:
    """Number of distinct values (for example active users), compared as exact text."""

    __slots__ = ("amount", "count", "emitted", "values")

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.count = 0
        self.emitted: Decimal | None = None
        self.amount = ZERO

    def fold(self, value: Decimal | str | None, time_ms: int) -> None:
        """Remember one distinct value."""
        self.values.add(value)  # type: ignore[arg-type]
        self.count += 1

    def quantity(self) -> Decimal:
        """The window's quantity so far."""
        return Decimal(len(self.values))

    def merge(self, window: UniqueCountAccumulator, change: Decimal) -> None:
        """Union the distinct values (merging a revision twice changes nothing)."""
        self.merge_revision(change, window.quantity(), -1, window.values)

    def merge_revision(
        self, change: Decimal, quantity: Decimal, time_ms: int, values: Collection[str]
    ) -> None:
        """``merge`` from a revision's distinct values, without a window accumulator."""
        self.values.update(values)


class LatestAccumulator:
    """Value of the event with the latest time; ties go to the larger value.

    The tie rule makes the result independent of arrival order, which replays
    and partition interleaving do not preserve.
    """

    __slots__ = ("amount", "count", "emitted", "latest", "time_ms")

    def __init__(self) -> None:
        self.time_ms = -1
        self.latest = ZERO
        self.count = 0
        self.emitted: Decimal | None = None
        self.amount = ZERO

    def fold(self, value: Decimal | str | None, time_ms: int) -> None:
        """Keep the value if it is the latest so far."""
        if time_ms > self.time_ms or (time_ms == self.time_ms and value > self.latest):  # type: ignore[operator]
            self.time_ms = time_ms
            self.latest = value  # type: ignore[assignment]
        self.count += 1

    def quantity(self) -> Decimal:
        """The window's quantity so far."""
        return self.latest

    def merge(self, window: LatestAccumulator, change: Decimal) -> None:
        """Keep the later value (merging a revision twice changes nothing)."""
        self.merge_revision(change, window.latest, window.time_ms, ())

    def merge_revision(
        self, change: Decimal, quantity: Decimal, time_ms: int, values: Collection[str]
    ) -> None:
        """``merge`` from a revision's values (its value's time), without a window accumulator."""
        mine, theirs = (self.time_ms, self.latest), (time_ms, quantity)
        self.time_ms, self.latest = max(mine, theirs)


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
