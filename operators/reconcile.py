"""Compare usage recomputed from stored events with the rated windows.

Windows are compared by quantity; billing periods by amount: the amounts of a
period's windows must add up to the price of the period's usage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from config.meters import Aggregation
from config.pricing import PricingCatalog
from operators.contributions import Contribution, combine
from operators.money import ZERO
from operators.periods import billing_segment
from operators.pricing import segment_cost


class WindowKey(NamedTuple):
    """One window of one series; ``group_key`` is the canonical JSON of the groups."""

    tenant: str
    meter: str
    group_key: str
    start_ms: int


class SegmentKey(NamedTuple):
    """One billing period (or the part of it under one price version) of a tenant's meter."""

    tenant: str
    meter: str
    period_start_ms: int
    price_version: str


@dataclass(frozen=True, slots=True)
class RecomputedWindow:
    """A window's usage from the event log, with what merging it into a period needs."""

    aggregation: str
    quantity: Decimal
    distinct_values: frozenset[str]
    latest_ms: int


@dataclass(frozen=True, slots=True)
class RatedWindowTotals:
    """A window's latest rated revision."""

    quantity: Decimal
    amount: Decimal
    price_version: str


class Problem(StrEnum):
    """How the rated windows disagree with the events."""

    MISSING_WINDOW = "missing_window"  # events were metered, no rated window
    EXTRA_WINDOW = "extra_window"  # a rated window without metered events
    QUANTITY = "quantity"  # a window's quantity differs
    AMOUNT = "amount"  # a billing period's amount differs


class Difference(NamedTuple):
    """One disagreement: what the events say, and what was rated."""

    key: WindowKey | SegmentKey
    problem: Problem
    expected: Decimal | None
    rated: Decimal | None


def reconcile_windows(
    recomputed: Mapping[WindowKey, Decimal], rated: Mapping[WindowKey, Decimal]
) -> list[Difference]:
    """Windows whose quantity differs, or that exist on one side only, sorted."""
    out: list[Difference] = []
    for key in sorted(recomputed.keys() | rated.keys()):
        expected, got = recomputed.get(key), rated.get(key)
        if got is None:
            out.append(Difference(key, Problem.MISSING_WINDOW, expected, None))
        elif expected is None:
            out.append(Difference(key, Problem.EXTRA_WINDOW, None, got))
        elif got != expected:
            out.append(Difference(key, Problem.QUANTITY, expected, got))
    return out


def reconcile_amounts(
    expected: Mapping[SegmentKey, Decimal], charged: Mapping[SegmentKey, Decimal]
) -> list[Difference]:
    """Billing periods whose windows' amounts do not add up to the price of their usage."""
    zero = Decimal(0)
    return [
        Difference(key, Problem.AMOUNT, expected.get(key, zero), charged.get(key, zero))
        for key in sorted(expected.keys() | charged.keys())
        if expected.get(key, zero) != charged.get(key, zero)
    ]


def differences(
    pricing: PricingCatalog,
    recomputed: Mapping[WindowKey, RecomputedWindow],
    rated: Mapping[WindowKey, RatedWindowTotals],
    *,
    start_ms: int,
    end_ms: int,
) -> list[Difference]:
    """Every difference between the windows as recomputed and as rated in [start, end).

    Quantities are compared window by window. Amounts are compared per billing
    period (and price version): the windows' amounts must add up to the price
    of the period's usage; only periods wholly inside the range are checked.
    """
    found = reconcile_windows(
        {key: w.quantity for key, w in recomputed.items()},
        {key: r.quantity for key, r in rated.items()},
    )
    usage: dict[SegmentKey, list[RecomputedWindow]] = defaultdict(list)
    charged: dict[SegmentKey, Decimal] = defaultdict(Decimal)
    for windows in (recomputed, rated):
        for key, value in windows.items():
            located = _segment(pricing, key)
            if located is None or located[0].period_start_ms < start_ms or located[1] > end_ms:
                continue
            if isinstance(value, RecomputedWindow):
                usage[located[0]].append(value)
            else:
                charged[located[0]] += value.amount
    expected = {key: _price(pricing, key, _period_quantity(ws)) for key, ws in usage.items()}
    return found + reconcile_amounts(expected, charged)


def _segment(pricing: PricingCatalog, key: WindowKey) -> tuple[SegmentKey, int] | None:
    """The billing-period segment a window belongs to, and the segment's end."""
    segment = billing_segment(pricing, key.tenant, key.start_ms)
    if segment is None:
        return None
    period = SegmentKey(key.tenant, key.meter, segment.period_start_ms, segment.version_name)
    return period, segment.period_end_ms


def _period_quantity(windows: list[RecomputedWindow]) -> Decimal:
    """The period's usage from its windows, combined as the meter's aggregation does."""
    parts = [Contribution(w.quantity, ZERO, w.latest_ms, w.distinct_values) for w in windows]
    return combine(Aggregation(windows[0].aggregation), parts).quantity


def _price(pricing: PricingCatalog, key: SegmentKey, quantity: Decimal) -> Decimal:
    plan = pricing.plan_for(key.tenant)
    assert plan is not None, "a located segment has a plan"
    version = plan.version_named(key.price_version)
    return segment_cost(plan, version, key.meter, quantity, key.period_start_ms)
