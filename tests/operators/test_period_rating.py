"""Period rating: window amounts always add up to the price of the period's whole usage."""

from __future__ import annotations

import itertools
import pickle
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.meters import Aggregation
from config.pricing import (
    GraduatedPrice,
    MeterPrice,
    PackagePrice,
    PercentagePrice,
    Plan,
    PlanVersion,
    PricingCatalog,
    Subscription,
    Tier,
    UnitPrice,
    VolumePrice,
)
from operators.aggregation import ACCUMULATORS, Accumulator
from operators.contributions import Contribution
from operators.model import WindowKind, WindowUsage
from operators.period_rating import PeriodKey, PeriodLedger, UnratableError
from operators.pricing import period_cost

NOV_2026_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z, a period start
MINUTE = 60_000
D = Decimal

PRICES = {
    "per_unit": MeterPrice(UnitPrice(D("0.25"))),
    "graduated": MeterPrice(
        GraduatedPrice((Tier(D(10), D("1.0")), Tier(D(50), D("0.5"), D(2)), Tier(None, D("0.1")))),
        free_allowance=D(3),
    ),
    "volume": MeterPrice(VolumePrice((Tier(D(20), D("1.0")), Tier(None, D("0.6"))))),
    "package": MeterPrice(PackagePrice(D(7), D("5")), maximum=D(40)),
    # The models and terms of issue 15: zero-usage flat fees, a bounded last tier,
    # packages rounded down, discounts, markups and free amounts.
    "volume_flat": MeterPrice(VolumePrice((Tier(D(5), D("1.0"), D(3)), Tier(D(30), D("0.5"))))),
    "graduated_bounded": MeterPrice(
        GraduatedPrice((Tier(D(10), D("0.5"), D(4)), Tier(D(40), D("0.25"), D(1)))),
        discount_percent=D("12.5"),
    ),
    "package_down": MeterPrice(PackagePrice(D(7), D("5"), round_down=True), discount_percent=D(10)),
    "percentage": MeterPrice(PercentagePrice(D(150), free_amount=D(5)), maximum=D(300)),
    # Streamed provisionally from the sum; still order independent.
    "per_event": MeterPrice(PercentagePrice(D("2.5"), fixed_fee=D("0.3"), free_events=2)),
}


def catalog(price: MeterPrice) -> PricingCatalog:
    version = PlanVersion("v1", 0, {"m": price})
    return PricingCatalog(
        plans={"p": Plan("p", "USD", (version,))}, subscriptions={"acme": Subscription("p")}
    )


def emit(acc: Accumulator, start_ms: int, kind: WindowKind) -> WindowUsage:
    """A window revision as the window store emits it (and records it as emitted)."""
    quantity = acc.quantity()
    previous = D(0) if acc.emitted is None else acc.emitted
    acc.emitted = quantity
    return WindowUsage(
        "acme", "m", (), start_ms, start_ms + MINUTE, quantity, previous, acc.count, kind, acc
    )


def period_quantity(aggregation: Aggregation, events: list[tuple[int, Decimal | str]]) -> Decimal:
    acc = ACCUMULATORS[aggregation]()
    for time_ms, value in events:
        acc.fold(value, time_ms)
    return acc.quantity()


@st.composite
def histories(draw: st.DrawFn) -> tuple[Aggregation, list[tuple[int, int, Decimal | str]]]:
    """Events (window, time, value) in an arbitrary arrival order."""
    aggregation = draw(st.sampled_from(list(Aggregation)))
    count = draw(st.integers(min_value=1, max_value=40))
    events: list[tuple[int, int, Decimal | str]] = []
    for n in range(count):
        window = draw(st.integers(min_value=0, max_value=5))
        time_ms = NOV_2026_MS + window * MINUTE + draw(st.integers(0, MINUTE - 1))
        if aggregation is Aggregation.UNIQUE_COUNT:
            value: Decimal | str = draw(st.sampled_from("abcdefg"))
        elif aggregation is Aggregation.COUNT:
            value = D(1)
        else:
            value = D(draw(st.integers(0, 3000))) / 100
        events.append((window, time_ms + n, value))  # + n: distinct times
    return aggregation, events


@settings(max_examples=150, deadline=None)
@given(
    history=histories(),
    price_name=st.sampled_from(sorted(PRICES)),
    cuts=st.lists(st.integers(1, 39), max_size=6),
)
def test_amounts_add_up_to_the_period_price_whatever_the_order(
    history: tuple[Aggregation, list[tuple[int, int, Decimal | str]]],
    price_name: str,
    cuts: list[int],
) -> None:
    aggregation, events = history
    price = PRICES[price_name]
    ledger = PeriodLedger({"m": aggregation})
    pricing = catalog(price)
    windows: dict[int, Accumulator] = {}
    amounts: dict[int, Decimal] = {}
    # Events arrive in batches (cut at ``cuts``); after each batch every touched
    # window emits a revision: the first as a window, later ones as adjustments.
    boundaries = sorted({0, len(events), *(c for c in cuts if c < len(events))})
    for begin, end in itertools.pairwise(boundaries):
        touched: list[int] = []
        for window, time_ms, value in events[begin:end]:
            acc = windows.setdefault(window, ACCUMULATORS[aggregation]())
            acc.fold(value, time_ms)
            touched.append(window)
        for window in dict.fromkeys(touched):
            acc = windows[window]
            kind = WindowKind.WINDOW if acc.emitted is None else WindowKind.ADJUSTMENT
            rated = ledger.rate(emit(acc, NOV_2026_MS + window * MINUTE, kind), pricing, 0)
            assert rated.previous_amount == amounts.get(window, D(0))
            amounts[window] = rated.amount

    usage = period_quantity(aggregation, [(t, v) for _, t, v in events])
    assert sum(amounts.values(), D(0)) == period_cost(price, usage)


def test_a_cap_stops_charging_and_later_windows_cost_nothing() -> None:
    price = MeterPrice(UnitPrice(D(1)), maximum=D(10))
    ledger = PeriodLedger({"m": Aggregation.SUM})
    pricing = catalog(price)
    first, second = ACCUMULATORS[Aggregation.SUM](), ACCUMULATORS[Aggregation.SUM]()
    first.fold(D(8), NOV_2026_MS)
    second.fold(D(8), NOV_2026_MS + MINUTE)

    a = ledger.rate(emit(first, NOV_2026_MS, WindowKind.WINDOW), pricing, 0)
    b = ledger.rate(emit(second, NOV_2026_MS + MINUTE, WindowKind.WINDOW), pricing, 0)

    assert (a.amount, b.amount) == (D(8), D(2))


def test_distinct_users_are_counted_once_per_period_not_per_window() -> None:
    ledger = PeriodLedger({"m": Aggregation.UNIQUE_COUNT})
    pricing = catalog(MeterPrice(UnitPrice(D("0.5"))))
    first, second = (ACCUMULATORS[Aggregation.UNIQUE_COUNT]() for _ in range(2))
    for user in "ab":
        first.fold(user, NOV_2026_MS)
    for user in "bc":
        second.fold(user, NOV_2026_MS + MINUTE)

    a = ledger.rate(emit(first, NOV_2026_MS, WindowKind.WINDOW), pricing, 0)
    b = ledger.rate(emit(second, NOV_2026_MS + MINUTE, WindowKind.WINDOW), pricing, 0)

    assert (a.quantity, b.quantity) == (D(2), D(2))  # the windows' own distinct users
    assert (a.amount, b.amount) == (D(1), D("0.5"))  # but c is the only new user


def test_a_new_period_starts_from_zero() -> None:
    ledger = PeriodLedger({"m": Aggregation.SUM})
    pricing = catalog(MeterPrice(UnitPrice(D(1)), free_allowance=D(5)))
    october, november = ACCUMULATORS[Aggregation.SUM](), ACCUMULATORS[Aggregation.SUM]()
    october.fold(D(6), NOV_2026_MS - MINUTE)
    november.fold(D(6), NOV_2026_MS)

    a = ledger.rate(emit(october, NOV_2026_MS - MINUTE, WindowKind.WINDOW), pricing, 0)
    b = ledger.rate(emit(november, NOV_2026_MS, WindowKind.WINDOW), pricing, 0)

    assert (a.amount, b.amount) == (D(1), D(1))  # 5 free units in each period
    assert ledger.expire(NOV_2026_MS) == 1  # October is over


def test_periods_are_forgotten_once_over_whatever_order_they_came_in() -> None:
    """expire() looks only once a kept period can be over, even after a restore."""
    ledger = PeriodLedger({"m": Aggregation.SUM})
    pricing = catalog(PRICES["per_unit"])
    december = NOV_2026_MS + 30 * 24 * 60 * MINUTE
    for start in (december, NOV_2026_MS - MINUTE, NOV_2026_MS):
        acc = ACCUMULATORS[Aggregation.SUM]()
        acc.fold(D(1), start)
        ledger.rate(emit(acc, start, WindowKind.WINDOW), pricing, 0)
    assert ledger.expire(NOV_2026_MS - 1) == 0
    assert ledger.expire(NOV_2026_MS) == 1  # October
    # A period seeded later that ended earlier than any kept one is still forgotten.
    ledger.seed(PeriodKey("acme", "m", NOV_2026_MS - 2 * MINUTE, "v1"), Contribution(D(1)), 5)
    assert ledger.expire(NOV_2026_MS) == 1
    restored = pickle.loads(pickle.dumps(ledger))
    del restored.__dict__["_earliest_end_ms"]  # as in snapshots from before it was kept
    assert restored.expire(december) == 1  # November
    assert restored.expire(december + 31 * 24 * 60 * MINUTE) == 1  # December
    assert restored.periods == {}


def test_unknown_tenant_is_refused() -> None:
    ledger = PeriodLedger({"m": Aggregation.SUM})
    acc = ACCUMULATORS[Aggregation.SUM]()
    acc.fold(D(1), NOV_2026_MS)
    usage = emit(acc, NOV_2026_MS, WindowKind.WINDOW)
    empty = PricingCatalog(plans={}, subscriptions={})
    with pytest.raises(UnratableError):
        ledger.rate(usage, empty, 0)


def test_a_version_change_mid_period_charges_the_zero_usage_fee_once() -> None:
    # A 5.00 first-tier fee in both versions; v2 takes effect on November 16.
    tiers = (Tier(D(100), D("0.02"), D(5)), Tier(None, D("0.01")))
    price = MeterPrice(GraduatedPrice(tiers))
    mid = NOV_2026_MS + 15 * 24 * 60 * MINUTE
    versions = (PlanVersion("v1", 0, {"m": price}), PlanVersion("v2", mid, {"m": price}))
    pricing = PricingCatalog(
        plans={"p": Plan("p", "USD", versions)}, subscriptions={"acme": Subscription("p")}
    )
    ledger = PeriodLedger({"m": Aggregation.SUM})
    before, after = ACCUMULATORS[Aggregation.SUM](), ACCUMULATORS[Aggregation.SUM]()
    before.fold(D(10), NOV_2026_MS)
    after.fold(D(10), mid)

    a = ledger.rate(emit(before, NOV_2026_MS, WindowKind.WINDOW), pricing, 0)
    b = ledger.rate(emit(after, mid, WindowKind.WINDOW), pricing, 0)

    # v1: 5.00 + 10 x 0.02; v2 prices its 10 units as a period of its own, without the fee.
    assert (a.price_version, a.amount) == ("v1", D("5.20"))
    assert (b.price_version, b.amount) == ("v2", D("0.20"))
