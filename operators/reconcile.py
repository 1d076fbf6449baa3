"""Compare usage recomputed from stored events with the rated windows."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple


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
