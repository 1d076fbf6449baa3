"""Per-event percentage charges: Lago's terms, applied in (time, idempotency key) order."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.pricing import MeterPrice, PercentagePrice
from operators.pricing import PricedEvent, events_cost, period_cost

D = Decimal


def events(*values: str) -> list[PricedEvent]:
    """One event a second, keys in the same order as the times."""
    return [PricedEvent(1000 * n, f"e{n}", D(value)) for n, value in enumerate(values)]


def test_lago_published_example_three_free_events_or_500_free() -> None:
    # Lago docs (percentage): 1.2% + 0.10 per transaction; the first 3 events or $500 are
    # free. 200, 100, 100 are free; the fourth ($50) costs 0.10 + 1.2% of 50 = 0.70.
    price = MeterPrice(
        PercentagePrice(D("1.2"), fixed_fee=D("0.10"), free_events=3, free_amount=D(500))
    )

    assert events_cost(price, events("200", "100", "100", "50")) == D("0.70")


def test_a_free_amount_runs_out_partway_through_an_event() -> None:
    price = MeterPrice(PercentagePrice(D(2), fixed_fee=D("0.30"), free_amount=D(250)))

    # As Lago computes it: 200 is wholly free (no fixed fee either); of the 100, 50 is
    # still free and 50 pays 2%, plus the fixed fee: 1.00 + 0.30.
    assert events_cost(price, events("200", "100")) == D("1.30")


def test_free_units_end_with_whichever_runs_out_first() -> None:
    # The first 3 events or $500 are free (Lago): the $500 runs out in the second
    # event, so from there every event pays the fixed fee, within the first 3 too.
    price = MeterPrice(
        PercentagePrice(D("1.2"), fixed_fee=D("0.10"), free_events=3, free_amount=D(500))
    )

    # 400 free; 100 of 200 pays 1.20 + 0.10; 100 pays 1.20 + 0.10; 50 pays 0.60 + 0.10.
    assert events_cost(price, events("400", "200", "100", "50")) == D("3.30")


def test_an_event_the_free_amount_covers_whole_pays_no_fixed_fee() -> None:
    price = MeterPrice(PercentagePrice(D(1), fixed_fee=D("0.10"), free_amount=D(300)))

    # 100 and 200 use the free amount up exactly: free; 50 pays 0.50 + 0.10.
    assert events_cost(price, events("100", "200", "50")) == D("0.60")


def test_free_events_without_a_free_amount_are_wholly_free() -> None:
    price = MeterPrice(PercentagePrice(D(1), fixed_fee=D("0.25"), free_events=2))

    assert events_cost(price, events("1000", "1000", "100")) == D("1.25")


def test_per_event_minimum_and_maximum() -> None:
    price = MeterPrice(PercentagePrice(D(1), min_fee=D("0.50"), max_fee=D(2)))

    # 1% of 10 is raised to 0.50, 1% of 100 stays 1, 1% of 1000 is capped at 2.
    assert events_cost(price, events("10", "100", "1000")) == D("3.50")


def test_an_event_made_free_by_free_units_is_not_raised_to_the_minimum() -> None:
    price = MeterPrice(PercentagePrice(D(1), free_amount=D(10), min_fee=D("0.50")))

    assert events_cost(price, events("10", "10", "0")) == D("1.00")


def test_same_time_events_are_ordered_by_idempotency_key() -> None:
    price = MeterPrice(PercentagePrice(D(10), free_events=1))
    same_time = [PricedEvent(0, "b", D(100)), PricedEvent(0, "a", D(5))]

    # "a" comes first and is the free event; "b" pays 10% of 100.
    assert events_cost(price, same_time) == D(10)


def test_the_period_cap_and_discount_apply_to_the_events_total() -> None:
    model = PercentagePrice(D(10), fixed_fee=D(1))
    capped = MeterPrice(model, maximum=D(5), discount_percent=D(50))

    # (10 + 1) + (10 + 1) = 22, half off = 11, capped at 5.
    assert events_cost(capped, events("100", "100")) == D(5)


# Amounts of 0 to 1000 with 2 places; times collide often so the key decides.
EVENT_VALUES = st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False)
PRICED_EVENTS = st.lists(
    st.builds(
        PricedEvent, st.integers(0, 5), st.text("abcdef", min_size=1, max_size=3), EVENT_VALUES
    ),
    max_size=25,
    unique_by=lambda event: event.key,
)
OPTIONAL_FEE = st.none() | st.decimals(min_value=0, max_value=20, places=2, allow_nan=False)


@st.composite
def per_event_prices(draw: st.DrawFn) -> MeterPrice:
    low = draw(OPTIONAL_FEE)
    high = draw(OPTIONAL_FEE)
    if low is not None and high is not None and low > high:
        low, high = high, low
    model = PercentagePrice(
        draw(st.decimals(min_value=0, max_value=150, places=3, allow_nan=False)),
        fixed_fee=draw(st.decimals(min_value=0, max_value=2, places=2, allow_nan=False)),
        free_events=draw(st.none() | st.integers(0, 5)),
        free_amount=draw(st.none() | EVENT_VALUES),
        min_fee=low,
        max_fee=high,
    )
    return MeterPrice(model, maximum=draw(st.none() | st.decimals(0, 500, places=2)))


@given(per_event_prices(), PRICED_EVENTS, st.randoms(use_true_random=False), st.integers(0, 4))
def test_the_amount_does_not_depend_on_arrival_order_replays_or_batches(
    price: MeterPrice, priced: list[PricedEvent], shuffle: random.Random, replays: int
) -> None:
    """Replays, late events and several workers change only the order and repeats seen."""
    expected = events_cost(price, priced)
    arrived = [*priced, *shuffle.sample(priced, min(replays, len(priced)))]
    shuffle.shuffle(arrived)

    assert events_cost(price, arrived) == expected
    # Workers each see part of the period; the ordered union is priced, not their sums.
    half = len(arrived) // 2
    assert events_cost(price, [*arrived[half:], *arrived[:half]]) == expected
    assert expected >= 0


@given(
    st.decimals(min_value=0, max_value=150, places=3, allow_nan=False),
    st.none() | EVENT_VALUES,
    PRICED_EVENTS,
)
def test_without_per_event_terms_the_streamed_sum_is_exact(
    rate: Decimal, free_amount: Decimal | None, priced: list[PricedEvent]
) -> None:
    price = MeterPrice(PercentagePrice(rate, free_amount=free_amount))
    total = sum((event.value for event in priced), D(0))

    assert not price.model.per_event  # type: ignore[union-attr]
    assert events_cost(price, priced) == period_cost(price, total)


@pytest.mark.parametrize(
    "model",
    [
        PercentagePrice(D(1), fixed_fee=D("0.1")),
        PercentagePrice(D(1), free_events=0),
        PercentagePrice(D(1), min_fee=D(0)),
        PercentagePrice(D(1), max_fee=D(9)),
    ],
)
def test_any_per_event_term_makes_the_price_per_event(model: PercentagePrice) -> None:
    assert model.per_event
