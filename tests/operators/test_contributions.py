"""Combining incarnations: any split of a window's events gives the value of all of them."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from config.meters import Aggregation
from operators.aggregation import ACCUMULATORS, Accumulator
from operators.contributions import Contribution, accumulator_of, combine, contribution_of

Event = tuple[Decimal, str, int]  # value, distinct value, time

events_st = st.lists(
    st.tuples(
        st.decimals(min_value=0, max_value=10_000, places=3, allow_nan=False),
        st.sampled_from(["u1", "u2", "u3", "1", "1.0", "7"]),
        st.integers(min_value=0, max_value=20),
    ),
    min_size=1,
    max_size=30,
)


def folded(aggregation: Aggregation, events: list[Event]) -> Accumulator:
    acc = ACCUMULATORS[aggregation]()
    for value, distinct, time_ms in events:
        acc.fold(distinct if aggregation is Aggregation.UNIQUE_COUNT else value, time_ms)
    return acc


@given(
    aggregation=st.sampled_from(list(Aggregation)),
    events=events_st,
    parts=st.lists(st.integers(min_value=0, max_value=3), min_size=30, max_size=30),
    amounts=st.lists(st.decimals(min_value=0, max_value=100, places=6), min_size=4, max_size=4),
)
def test_any_split_across_incarnations_combines_to_the_whole(
    aggregation: Aggregation, events: list[Event], parts: list[int], amounts: list[Decimal]
) -> None:
    split: dict[int, list[Event]] = {}
    for event, part in zip(events, parts, strict=False):
        split.setdefault(part, []).append(event)
    contributions = [
        contribution_of(folded(aggregation, members), amounts[part])
        for part, members in split.items()
    ]

    combined = combine(aggregation, contributions)

    whole = contribution_of(folded(aggregation, events))
    assert combined.quantity == whole.quantity
    assert combined.amount == sum((amounts[part] for part in split), Decimal(0))
    assert combined.distinct_values == whole.distinct_values
    if aggregation is Aggregation.LATEST:
        assert combined.latest_ms == whole.latest_ms
    # Seeding a period with the combined value holds what folding every event would.
    assert accumulator_of(aggregation, combined).quantity() == whole.quantity


def test_unique_count_without_stored_values_never_drops_below_a_part() -> None:
    old = Contribution(Decimal(5))  # stored before distinct values were kept
    new = Contribution(Decimal(2), distinct_values=frozenset({"a", "b"}))

    assert combine(Aggregation.UNIQUE_COUNT, [old, new]).quantity == 5
