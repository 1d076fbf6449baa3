"""Combining what several flow incarnations stored for one window or billing period.

Each incarnation (a flow started without recovery state) stores its own
contribution to a window: the value of the events it counted (the durable
idempotency layer gives every event to one incarnation only) and the amounts
it charged. The stored value is the contributions combined with the meter's
aggregation: summed for SUM and COUNT, the largest for MAX, the one with the
latest event time for LATEST (ties to the larger value, as windows do), the
union of distinct values for UNIQUE_COUNT. Amounts always add up: each
incarnation charged the changes it made to the period's cost.

``window_usage`` (sinks/clickhouse_schema.py) does the same in SQL; the same
rule combines a period's windows when a new flow is seeded with them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from config.meters import Aggregation
from operators.aggregation import (
    ACCUMULATORS,
    Accumulator,
    CountAccumulator,
    LatestAccumulator,
    MaxAccumulator,
    SumAccumulator,
    UniqueCountAccumulator,
)
from operators.money import EXACT, ZERO

# Event time of a contribution that has none (no LATEST event yet).
NO_TIME_MS = -1


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one incarnation stored for a window (or a period): enough to combine exactly.

    ``latest_ms`` is the time of the LATEST value; ``distinct_values`` the
    UNIQUE_COUNT values (other aggregations leave them empty).
    """

    quantity: Decimal
    amount: Decimal = ZERO
    latest_ms: int = NO_TIME_MS
    distinct_values: frozenset[str] = frozenset()


def combine(aggregation: Aggregation, parts: Iterable[Contribution]) -> Contribution:
    """The contributions combined as the meter aggregates them; amounts summed."""
    parts = list(parts)
    amount = ZERO
    for part in parts:
        amount = EXACT.add(amount, part.amount)
    if not parts:
        return Contribution(ZERO)
    if aggregation is Aggregation.UNIQUE_COUNT:
        values = frozenset().union(*(part.distinct_values for part in parts))
        # Rows stored before distinct values were kept have none: never below any part.
        quantity = max(Decimal(len(values)), *(part.quantity for part in parts))
        return Contribution(quantity, amount, NO_TIME_MS, values)
    if aggregation is Aggregation.LATEST:
        latest = max(parts, key=lambda part: (part.latest_ms, part.quantity))
        return Contribution(latest.quantity, amount, latest.latest_ms)
    if aggregation is Aggregation.MAX:
        return Contribution(max(part.quantity for part in parts), amount)
    total = ZERO
    for part in parts:
        total = EXACT.add(total, part.quantity)
    return Contribution(total, amount)


def contribution_of(window: Accumulator, amount: Decimal = ZERO) -> Contribution:
    """What a window accumulator contributes (with the amount charged for it)."""
    if isinstance(window, UniqueCountAccumulator):
        return Contribution(window.quantity(), amount, NO_TIME_MS, frozenset(window.values))
    if isinstance(window, LatestAccumulator):
        return Contribution(window.quantity(), amount, window.time_ms)
    return Contribution(window.quantity(), amount)


def accumulator_of(aggregation: Aggregation, part: Contribution) -> Accumulator:
    """A period accumulator holding ``part``: what merging its windows would have built."""
    acc = ACCUMULATORS[aggregation]()
    if isinstance(acc, SumAccumulator):
        acc.total = part.quantity
    elif isinstance(acc, CountAccumulator):
        acc.count = int(part.quantity)
    elif isinstance(acc, MaxAccumulator):
        acc.best = part.quantity
    elif isinstance(acc, UniqueCountAccumulator):
        acc.values = set(part.distinct_values)
    else:
        acc.time_ms, acc.latest = part.latest_ms, part.quantity
    return acc
