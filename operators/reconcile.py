"""Compare usage recomputed from stored events with the rated windows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple


class WindowKey(NamedTuple):
    """One window of one series; ``group_key`` is the canonical JSON of the groups."""

    tenant: str
    meter: str
    group_key: str
    start_ms: int


class WindowTotals(NamedTuple):
    """What a window came to."""

    quantity: Decimal
    amount: Decimal


class Problem(StrEnum):
    """How a window disagrees."""

    MISSING_WINDOW = "missing_window"  # events were metered, no rated window
    EXTRA_WINDOW = "extra_window"  # a rated window without metered events
    QUANTITY = "quantity"
    AMOUNT = "amount"


class Difference(NamedTuple):
    """One disagreement: what the events say, and what was rated."""

    key: WindowKey
    problem: Problem
    expected: WindowTotals | None
    rated: WindowTotals | None


def reconcile(
    recomputed: Mapping[WindowKey, Decimal],
    rated: Mapping[WindowKey, WindowTotals],
    price: Callable[[WindowKey, Decimal], Decimal],
) -> list[Difference]:
    """Every window where the event log and the rated windows disagree, sorted.

    ``price`` gives the amount a window's quantity should have been rated at.
    """
    out: list[Difference] = []
    for key in sorted(recomputed.keys() | rated.keys()):
        quantity = recomputed.get(key)
        expected = None if quantity is None else WindowTotals(quantity, price(key, quantity))
        got = rated.get(key)
        if got is None:
            out.append(Difference(key, Problem.MISSING_WINDOW, expected, None))
        elif expected is None:
            out.append(Difference(key, Problem.EXTRA_WINDOW, None, got))
        elif got.quantity != expected.quantity:
            out.append(Difference(key, Problem.QUANTITY, expected, got))
        elif got.amount != expected.amount:
            out.append(Difference(key, Problem.AMOUNT, expected, got))
    return out
