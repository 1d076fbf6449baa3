"""Window accumulators: one per aggregation kind, exact and order-independent."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.meters import Aggregation
from operators.aggregation import (
    ACCUMULATORS,
    CountAccumulator,
    LatestAccumulator,
    MaxAccumulator,
    SumAccumulator,
    UniqueCountAccumulator,
)


def test_every_aggregation_has_an_accumulator() -> None:
    assert set(ACCUMULATORS) == set(Aggregation)


def test_fresh_accumulators_are_zero_and_never_emitted() -> None:
    for kind in Aggregation:
        acc = ACCUMULATORS[kind]()
        assert acc.quantity() == 0
        assert acc.count == 0
        assert acc.emitted is None


def test_sum() -> None:
    acc = SumAccumulator()
    for value in ("1.5", "2.25", "0"):
        acc.fold(Decimal(value), 0)

    assert acc.quantity() == Decimal("3.75")
    assert acc.count == 3


def test_count_ignores_values() -> None:
    acc = CountAccumulator()
    for _ in range(4):
        acc.fold(None, 0)

    assert acc.quantity() == Decimal(4)
    assert acc.count == 4


def test_max() -> None:
    acc = MaxAccumulator()
    for value in ("3", "12.5", "7", "12.49"):
        acc.fold(Decimal(value), 0)

    assert acc.quantity() == Decimal("12.5")
    assert acc.count == 4


def test_unique_count_counts_distinct_values_but_revisions_count_events() -> None:
    acc = UniqueCountAccumulator()
    for value in ("u1", "u2", "u1", "u3", "u2"):
        acc.fold(value, 0)

    assert acc.quantity() == Decimal(3)
    assert acc.count == 5


def test_latest_takes_the_value_with_the_latest_time_not_the_last_folded() -> None:
    acc = LatestAccumulator()
    acc.fold(Decimal(5), 2_000)
    acc.fold(Decimal(9), 1_000)  # arrives later, but is older

    assert acc.quantity() == Decimal(5)
    assert acc.count == 2


def test_latest_tie_goes_to_the_larger_value() -> None:
    first = LatestAccumulator()
    first.fold(Decimal(3), 1_000)
    first.fold(Decimal(8), 1_000)
    second = LatestAccumulator()
    second.fold(Decimal(8), 1_000)
    second.fold(Decimal(3), 1_000)

    assert first.quantity() == second.quantity() == Decimal(8)


def test_latest_accepts_time_zero() -> None:
    acc = LatestAccumulator()
    acc.fold(Decimal(4), 0)

    assert acc.quantity() == Decimal(4)


def test_sum_of_many_small_decimals_is_exact() -> None:
    acc = SumAccumulator()
    for _ in range(10_000):
        acc.fold(Decimal("0.000000001"), 0)

    assert acc.quantity() == Decimal("0.00001")
    # 31 significant digits: Python's default 28-digit context would round this one.
    big = SumAccumulator()
    big.fold(Decimal("999999999999999999.999999999"), 0)
    for _ in range(1_000):
        big.fold(Decimal("999999999999999999.999999999"), 0)
    assert big.quantity() == Decimal("1000999999999999999999.999998999")


def test_sum_raises_rather_than_rounds_beyond_76_digits() -> None:
    acc = SumAccumulator()
    acc.fold(Decimal("1E+70"), 0)

    with pytest.raises(decimal.Inexact):
        acc.fold(Decimal("0.000000001"), 0)


VALUES = st.decimals(
    min_value=0, max_value=Decimal("1000"), places=3, allow_nan=False, allow_infinity=False
)
FOLDS = st.lists(
    st.tuples(VALUES, st.integers(min_value=0, max_value=5), st.sampled_from(["a", "b", "c"])),
    min_size=1,
    max_size=30,
)


@pytest.mark.parametrize("kind", list(Aggregation))
@given(folds=FOLDS, data=st.data())
def test_any_arrival_order_gives_the_same_quantity(
    kind: Aggregation, folds: list[tuple[Decimal, int, str]], data: st.DataObject
) -> None:
    # Few distinct times so LATEST hits ties often.
    permuted = data.draw(st.permutations(folds))

    def quantity(order: list[tuple[Decimal, int, str]]) -> Decimal:
        acc = ACCUMULATORS[kind]()
        for value, time_ms, text in order:
            acc.fold(text if kind is Aggregation.UNIQUE_COUNT else value, time_ms)
        assert acc.count == len(order)
        return acc.quantity()

    assert quantity(permuted) == quantity(folds)


@given(folds=FOLDS)
def test_quantities_match_their_definitions(folds: list[tuple[Decimal, int, str]]) -> None:
    results = {}
    for kind in Aggregation:
        acc = ACCUMULATORS[kind]()
        for value, time_ms, text in folds:
            acc.fold(text if kind is Aggregation.UNIQUE_COUNT else value, time_ms)
        results[kind] = acc.quantity()

    latest_time = max(t for _, t, _ in folds)
    assert results[Aggregation.SUM] == sum((v for v, _, _ in folds), Decimal(0))
    assert results[Aggregation.COUNT] == len(folds)
    assert results[Aggregation.MAX] == max(v for v, _, _ in folds)
    assert results[Aggregation.UNIQUE_COUNT] == len({s for _, _, s in folds})
    assert results[Aggregation.LATEST] == max(v for v, t, _ in folds if t == latest_time)
