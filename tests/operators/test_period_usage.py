"""A billing period's usage from its stored windows, as the run summary reports it."""

from __future__ import annotations

from decimal import Decimal

from config.meters import Aggregation
from operators.period_usage import WindowTotal, period_quantity


def window(start_ms: int, quantity: str, **extra: object) -> WindowTotal:
    value = Decimal(quantity)
    fields: dict[str, object] = {
        "tenant": "acme",
        "meter": "m",
        "plan_id": "p",
        "price_version": "v",
        "currency": "USD",
        "window_start_ms": start_ms,
        "quantity_sum": value,
        "quantity_max": value,
        "amount": Decimal(0),
    }
    fields.update(extra)
    return WindowTotal(**fields)  # type: ignore[arg-type]


def test_unique_count_is_the_union_of_the_windows_distinct_values() -> None:
    windows = [
        window(0, "2", distinct_values=frozenset({"u1", "u2"})),
        window(60_000, "2", distinct_values=frozenset({"u2", "u3"})),
    ]

    assert period_quantity(Aggregation.UNIQUE_COUNT, windows) == 3


def test_unique_count_is_unknown_when_a_window_kept_no_distinct_values() -> None:
    windows = [
        window(0, "2", distinct_values=frozenset({"u1", "u2"})),
        window(60_000, "4", distinct_known=False),
    ]

    assert period_quantity(Aggregation.UNIQUE_COUNT, windows) is None


def test_latest_is_the_value_at_the_latest_event_time_not_the_latest_window() -> None:
    windows = [
        window(0, "7", latest=Decimal(7), latest_ms=59_000),
        window(60_000, "5", latest=Decimal(5), latest_ms=61_000),
        window(-60_000, "9", latest=Decimal(9), latest_ms=-1_000),
    ]

    assert period_quantity(Aggregation.LATEST, windows) == 5


def test_sum_and_max() -> None:
    windows = [window(0, "1.5"), window(60_000, "2.25")]

    assert period_quantity(Aggregation.SUM, windows) == Decimal("3.75")
    assert period_quantity(Aggregation.MAX, windows) == Decimal("2.25")
