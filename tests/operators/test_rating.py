"""Rating window revisions: exact per-unit arithmetic and the plan version in force.

Each case rates through a fresh PeriodLedger (so the window is alone in its
billing period); a revision with a previous quantity is preceded by that
earlier revision, as the flow emits them.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.meters import Aggregation
from config.pricing import MeterPrice, Plan, PlanVersion, PricingCatalog, Subscription, UnitPrice
from operators.aggregation import ACCUMULATORS, Accumulator
from operators.model import RatedWindow, WindowKind, WindowUsage
from operators.period_rating import PeriodLedger, UnratableError
from tests.operators.conftest import JAN_2026_MS, NOV_2026_MS

HOUR_MS = 3_600_000
MARCH_MS = JAN_2026_MS + 59 * 86_400_000  # 2026-03-01T00:00:00Z
EMITTED_AT_MS = 1_780_272_000_000


def window(
    quantity: str,
    start_ms: int = MARCH_MS,
    meter: str = "tokens",
    tenant: str = "acme",
    previous: str = "0",
    revision: int = 1,
    kind: WindowKind = WindowKind.WINDOW,
) -> WindowUsage:
    return WindowUsage(
        tenant=tenant,
        meter=meter,
        groups=(("model", "gpt"),),
        window_start_ms=start_ms,
        window_end_ms=start_ms + HOUR_MS,
        quantity=Decimal(quantity),
        previous_quantity=Decimal(previous),
        revision=revision,
        kind=kind,
    )


AGGREGATIONS = {
    "tokens": Aggregation.SUM,
    "completions": Aggregation.COUNT,
    "storage_gb": Aggregation.MAX,
}


def _set(acc: Accumulator, quantity: Decimal) -> None:
    """Give a window accumulator the quantity it would have after its events."""
    if isinstance(acc, ACCUMULATORS[Aggregation.COUNT]):
        acc.count = int(quantity)
    elif isinstance(acc, ACCUMULATORS[Aggregation.MAX]):
        acc.best = quantity  # type: ignore[union-attr]
    else:
        acc.total = quantity  # type: ignore[union-attr]


class Rater:
    """Rates one window revision (and its predecessor) in a period of its own."""

    def __init__(self, catalog: PricingCatalog) -> None:
        self.catalog = catalog

    def rate(self, usage: WindowUsage, emitted_at_ms: int) -> RatedWindow:
        ledger = PeriodLedger(AGGREGATIONS)
        acc = ACCUMULATORS[AGGREGATIONS[usage.meter]]()
        if usage.previous_quantity:
            _set(acc, usage.previous_quantity)
            earlier = replace(usage, quantity=usage.previous_quantity, previous_quantity=Decimal(0))
            ledger.rate(replace(earlier, accumulator=acc), self.catalog, emitted_at_ms)
        _set(acc, usage.quantity)
        return ledger.rate(replace(usage, accumulator=acc), self.catalog, emitted_at_ms)


@pytest.fixture
def rater(pricing_catalog: PricingCatalog) -> Rater:
    return Rater(pricing_catalog)


def test_rated_window_carries_usage_price_and_plan(rater: Rater) -> None:
    usage = window("1500000", previous="1000000", revision=3, kind=WindowKind.ADJUSTMENT)

    rated = rater.rate(usage, EMITTED_AT_MS)

    assert rated == RatedWindow(
        tenant="acme",
        meter="tokens",
        groups=(("model", "gpt"),),
        window_start_ms=MARCH_MS,
        window_end_ms=MARCH_MS + HOUR_MS,
        quantity=Decimal(1_500_000),
        previous_quantity=Decimal(1_000_000),
        amount=Decimal("3.000000"),
        previous_amount=Decimal("2.000000"),
        currency="USD",
        plan_id="starter",
        price_version="2026-01",
        revision=3,
        kind=WindowKind.ADJUSTMENT,
        emitted_at_ms=EMITTED_AT_MS,
        # The window is alone in its March period: the period is the window.
        period_start_ms=MARCH_MS,
        period_quantity=Decimal(1_500_000),
        period_amount=Decimal("3.000000"),
        aggregation="SUM",
    )


def test_amount_is_exact_where_float_is_not(rater: Rater) -> None:
    rated = rater.rate(window("3", meter="completions"), EMITTED_AT_MS)

    assert rated.amount == Decimal("0.0003")
    assert 3 * 0.0001 != 0.0003  # the float answer this must not give


@pytest.mark.parametrize(
    ("start_ms", "version", "amount"),
    [
        (NOV_2026_MS - HOUR_MS, "2026-01", Decimal("2.000000")),
        (NOV_2026_MS - 1, "2026-01", Decimal("2.000000")),
        (NOV_2026_MS, "2026-11", Decimal("1.8000000")),
        (NOV_2026_MS + HOUR_MS, "2026-11", Decimal("1.8000000")),
    ],
)
def test_version_in_force_at_window_start(
    rater: Rater, start_ms: int, version: str, amount: Decimal
) -> None:
    # A window that starts before the change and ends after it keeps the old price.
    rated = rater.rate(window("1000000", start_ms=start_ms), EMITTED_AT_MS)

    assert rated.price_version == version
    assert rated.amount == amount


def test_window_before_the_first_version_rates_at_zero(rater: Rater) -> None:
    rated = rater.rate(window("1000000", start_ms=JAN_2026_MS - HOUR_MS), EMITTED_AT_MS)

    assert rated.price_version == ""
    assert rated.amount == 0


def test_meter_without_a_price_rates_at_zero(rater: Rater) -> None:
    rated = rater.rate(window("12.5", meter="storage_gb", previous="10"), EMITTED_AT_MS)

    assert rated.amount == 0
    assert rated.previous_amount == 0
    assert rated.quantity == Decimal("12.5")
    assert rated.price_version == "2026-01"


def test_previous_amount_is_priced_from_previous_quantity(rater: Rater) -> None:
    rated = rater.rate(
        window("7", meter="completions", previous="5", kind=WindowKind.ADJUSTMENT),
        EMITTED_AT_MS,
    )

    assert rated.previous_amount == Decimal("0.0005")
    assert rated.amount - rated.previous_amount == Decimal("0.0002")


def test_unknown_tenant_is_unratable(rater: Rater) -> None:
    with pytest.raises(UnratableError, match="initech"):
        rater.rate(window("1", tenant="initech"), EMITTED_AT_MS)


def test_default_plan_rates_tenants_without_a_subscription(
    pricing_catalog: PricingCatalog,
) -> None:
    enterprise = Plan(
        id="enterprise",
        currency="EUR",
        versions=(
            PlanVersion("e1", JAN_2026_MS, {"tokens": MeterPrice(UnitPrice(Decimal("0.000001")))}),
        ),
    )
    catalog = replace(
        pricing_catalog,
        plans={**pricing_catalog.plans, "enterprise": enterprise},
        default_plan="enterprise",
    )
    rater = Rater(catalog)

    unsubscribed = rater.rate(window("1000000", tenant="initech"), EMITTED_AT_MS)
    subscribed = rater.rate(window("1000000", tenant="acme"), EMITTED_AT_MS)

    assert (unsubscribed.plan_id, unsubscribed.currency, unsubscribed.amount) == (
        "enterprise",
        "EUR",
        Decimal(1),
    )
    assert (subscribed.plan_id, subscribed.currency, subscribed.amount) == (
        "starter",
        "USD",
        Decimal(2),
    )


QUANTITIES = st.decimals(
    min_value=0,
    max_value=Decimal("999999999999999999.999999999"),
    places=9,
    allow_nan=False,
    allow_infinity=False,
)
PRICES = st.decimals(
    min_value=0, max_value=Decimal(1_000_000), places=12, allow_nan=False, allow_infinity=False
)


@given(quantity=QUANTITIES, previous=QUANTITIES, unit_price=PRICES)
def test_amount_is_quantity_times_unit_price_exactly(
    quantity: Decimal, previous: Decimal, unit_price: Decimal
) -> None:
    plan = Plan(
        id="p",
        currency="USD",
        versions=(PlanVersion("v", 0, {"tokens": MeterPrice(UnitPrice(unit_price))}),),
    )
    rater = Rater(PricingCatalog(plans={"p": plan}, subscriptions={"acme": Subscription("p")}))
    usage = replace(window("0"), quantity=quantity, previous_quantity=previous)

    rated = rater.rate(usage, EMITTED_AT_MS)

    assert isinstance(rated.amount, Decimal)
    assert Fraction(rated.amount) == Fraction(quantity) * Fraction(unit_price)
    assert Fraction(rated.previous_amount) == Fraction(previous) * Fraction(unit_price)
