"""A tenant's usage of a meter over a billing period, as run summaries report it.

One row per invoice usage line: (tenant, meter, period, plan, price version,
currency). The quantity follows the meter's aggregation over the whole period
(a MAX meter's peak, a UNIQUE_COUNT's distinct values), never a sum of window
values; the amount is the exact cost of that usage, which the invoice rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from config.meters import Aggregation
from config.pricing import PricingCatalog
from operators.estimates import ADDITIVE
from operators.money import ZERO, exact_sum
from operators.periods import billing_segment


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """One meter's usage and cost in one billing period (or its part under one price version).

    ``quantity`` is None when what it was computed from cannot tell the period's
    usage; ``period_start_ms`` is None for a tenant the pricing catalog no longer knows.
    """

    tenant: str
    meter: str
    period_start_ms: int | None
    plan_id: str
    price_version: str
    currency: str
    quantity: Decimal | None
    amount: Decimal


@dataclass(frozen=True, slots=True)
class WindowTotal:
    """The stored windows of one tenant, meter and window start, over their group values."""

    tenant: str
    meter: str
    plan_id: str
    price_version: str
    currency: str
    window_start_ms: int
    quantity_sum: Decimal
    quantity_max: Decimal
    amount: Decimal
    # The value at the latest event time, and that time (LATEST).
    latest: Decimal = ZERO
    latest_ms: int = 0
    # The window's distinct values (UNIQUE_COUNT); not known for rows stored
    # before windows kept them.
    distinct_values: frozenset[str] = frozenset()
    distinct_known: bool = True


def period_quantity(
    aggregation: Aggregation | None, windows: Iterable[WindowTotal]
) -> Decimal | None:
    """A period's usage from its windows' quantities, where they determine it.

    SUM and COUNT add up, a period's MAX is the largest window maximum, its
    LATEST the value at the latest event time, its UNIQUE_COUNT the size of the
    union of the windows' distinct values (None where a window's are unknown).
    """
    fold = _PeriodFold()
    for window in windows:
        fold.add(window)
    return fold.quantity(aggregation)


def stored_periods(
    windows: Iterable[WindowTotal],
    pricing: PricingCatalog,
    aggregations: Mapping[str, Aggregation],
) -> list[PeriodUsage]:
    """Stored windows gathered into the billing periods they belong to, sorted.

    Each period's windows are folded as they come, so memory follows the number
    of periods, not of windows (millions at 100k tenants).
    """
    periods: dict[tuple[str, str, int | None, str, str, str], _PeriodFold] = {}
    for window in windows:
        segment = billing_segment(pricing, window.tenant, window.window_start_ms)
        start = None if segment is None else segment.period_start_ms
        key = (
            window.tenant,
            window.meter,
            start,
            window.plan_id,
            window.price_version,
            window.currency,
        )
        fold = periods.get(key)
        if fold is None:
            fold = periods[key] = _PeriodFold()
        fold.add(window)
    out = [
        PeriodUsage(*key, quantity=fold.quantity(aggregations.get(key[1])), amount=fold.amount)
        for key, fold in periods.items()
    ]
    return sorted(out, key=sort_key)


class _PeriodFold:
    """Windows folded by every aggregation's rule; ``quantity`` reads the meter's."""

    def __init__(self) -> None:
        self.quantity_sum = ZERO
        self.quantity_max = ZERO
        self.amount = ZERO
        self.latest = (0, ZERO)
        self.distinct: set[str] = set()
        self.distinct_known = True

    def add(self, window: WindowTotal) -> None:
        self.quantity_sum = exact_sum(self.quantity_sum, window.quantity_sum)
        self.quantity_max = max(self.quantity_max, window.quantity_max)
        self.amount = exact_sum(self.amount, window.amount)
        self.latest = max(self.latest, (window.latest_ms, window.latest))
        self.distinct.update(window.distinct_values)
        self.distinct_known = self.distinct_known and window.distinct_known

    def quantity(self, aggregation: Aggregation | None) -> Decimal | None:
        if aggregation in ADDITIVE:
            return self.quantity_sum
        if aggregation is Aggregation.MAX:
            return self.quantity_max
        if aggregation is Aggregation.LATEST:
            return self.latest[1]
        if aggregation is Aggregation.UNIQUE_COUNT and self.distinct_known:
            return Decimal(len(self.distinct))
        return None


def sort_key(row: PeriodUsage) -> tuple[str, str, int, str, str, str]:
    """Tenant, meter, then periods in time order."""
    start = -1 if row.period_start_ms is None else row.period_start_ms
    return (row.tenant, row.meter, start, row.plan_id, row.price_version, row.currency)
