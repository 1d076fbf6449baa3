"""Period costs under every price model: boundaries, exactness and the models' shapes."""

from __future__ import annotations

from decimal import Decimal, DecimalException
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.pricing import (
    GraduatedPrice,
    MeterPrice,
    PackagePrice,
    PercentagePrice,
    Plan,
    PlanVersion,
    PriceModel,
    Tier,
    UnitPrice,
    VolumePrice,
)
from operators.money import EXACT
from operators.pricing import (
    minor_units,
    model_cost,
    period_cost,
    round_to_minor,
    segment_cost,
    segment_pricer,
)

D = Decimal
# First 100 units at 1 (+10 once any unit is used), everything above at 0.5 (+20 once reached).
TIERS = (Tier(D(100), D(1), D(10)), Tier(None, D("0.5"), D(20)))
GRADUATED = GraduatedPrice(TIERS)
VOLUME = VolumePrice(TIERS)


@pytest.mark.parametrize(
    ("quantity", "cost"),
    [("0", "0"), ("1", "0.0001"), ("3", "0.0003"), ("0.000000001", "1E-13"), ("1500000", "150")],
)
def test_per_unit(quantity: str, cost: str) -> None:
    assert model_cost(UnitPrice(D("0.0001")), D(quantity)) == D(cost)


@pytest.mark.parametrize(
    ("size", "quantity", "packages"),
    [
        ("100", "0", 0),
        ("100", "0.000000001", 1),
        ("100", "1", 1),
        ("100", "99.999999999", 1),
        ("100", "100", 1),
        ("100", "100.000000001", 2),
        ("100", "101", 2),
        ("100", "200", 2),
        ("100", "201", 3),
        ("0.5", "1.2", 3),
        ("0.5", "1.5", 3),
        ("1000000", "999999999999999999.999999999", 1_000_000_000_000),
    ],
)
def test_package_counts_started_packages(size: str, quantity: str, packages: int) -> None:
    assert model_cost(PackagePrice(D(size), D("4.50")), D(quantity)) == D("4.50") * packages


@pytest.mark.parametrize(
    ("quantity", "cost"),
    [
        ("0", "10"),  # the first tier's flat price is due at zero usage (Lago, OpenMeter)
        ("0.000000001", "10.000000001"),
        ("1", "11"),
        ("100", "110"),  # the edge belongs to the first tier; the second is not reached
        ("100.000000001", "130.0000000005"),
        ("101", "130.5"),
        ("200", "180"),
    ],
)
def test_graduated_prices_each_tier_separately(quantity: str, cost: str) -> None:
    assert model_cost(GRADUATED, D(quantity)) == D(cost)


@pytest.mark.parametrize(
    ("quantity", "cost"),
    [
        ("0", "10"),  # zero usage falls in the first tier: its flat price is due
        ("1", "11"),
        ("100", "110"),  # exactly at up_to: still the first tier
        ("100.000000001", "70.0000000005"),
        ("101", "70.5"),  # cheaper than 100 units: volume pricing is not monotonic
        ("200", "120"),
    ],
)
def test_volume_prices_every_unit_at_the_tier_of_the_total(quantity: str, cost: str) -> None:
    assert model_cost(VOLUME, D(quantity)) == D(cost)


def test_volume_cost_can_fall_when_the_total_crosses_into_a_cheaper_tier() -> None:
    volume = VolumePrice((Tier(D(1000), D("0.10")), Tier(None, D("0.08"))))

    assert model_cost(volume, D(1000)) == D(100)
    assert model_cost(volume, D(1001)) == D("80.08")


@pytest.mark.parametrize(
    ("rate", "quantity", "cost"),
    [("2.5", "200", "5"), ("2.5", "0.01", "0.00025"), ("0", "123", "0"), ("100", "7.5", "7.5")],
)
def test_percentage(rate: str, quantity: str, cost: str) -> None:
    assert model_cost(PercentagePrice(D(rate)), D(quantity)) == D(cost)


@pytest.mark.parametrize("kind", [GraduatedPrice, VolumePrice])
def test_a_bounded_last_tier_prices_usage_beyond_it_at_its_own_prices(
    kind: type[GraduatedPrice | VolumePrice],
) -> None:
    bounded = kind((Tier(D(10), D(2)), Tier(D(20), D(1), D(5))))
    open_ended = kind((Tier(D(10), D(2)), Tier(None, D(1), D(5))))

    for quantity in (D(0), D(10), D(20), D(25), D(1000)):
        assert model_cost(bounded, quantity) == model_cost(open_ended, quantity)
    # Graduated: 10 x 2 + 15 x 1 + 5; volume: 25 x 1 + 5.
    assert model_cost(bounded, D(25)) == (D(40) if kind is GraduatedPrice else D(30))


def test_published_graduated_and_volume_examples() -> None:
    # Lago "graduated": 1 per call for the first 100, 0.50 for the next 100, 0.10 above; 250 calls.
    lago = GraduatedPrice((Tier(D(100), D(1)), Tier(D(200), D("0.5")), Tier(None, D("0.1"))))
    assert model_cost(lago, D(250)) == D(155)
    # Zuplo/OpenMeter-style tiers: 0.10 to 1,000, 0.05 to 10,000, 0.01 above; 15,000 units.
    tiers = (Tier(D(1000), D("0.10")), Tier(D(10000), D("0.05")), Tier(None, D("0.01")))
    assert model_cost(GraduatedPrice(tiers), D(15000)) == D(600)
    assert model_cost(VolumePrice(tiers), D(15000)) == D(150)


@pytest.mark.parametrize(
    ("quantity", "up", "down"),
    [
        ("0", "0", "0"),
        ("59", "4.5", "0"),
        ("60", "4.5", "4.5"),
        ("61", "9", "4.5"),
        ("130", "13.5", "9"),
    ],
)
def test_package_rounds_up_or_down(quantity: str, up: str, down: str) -> None:
    # Stripe's transform_quantity: minutes reported, hours billed (divide_by 60, round up or down).
    assert model_cost(PackagePrice(D(60), D("4.5")), D(quantity)) == D(up)
    assert model_cost(PackagePrice(D(60), D("4.5"), round_down=True), D(quantity)) == D(down)


def test_percentage_above_100_is_a_markup() -> None:
    assert model_cost(PercentagePrice(D(150)), D(40)) == D(60)


@pytest.mark.parametrize(
    ("discount", "quantity", "cost"),
    [("0", "200", "50"), ("10", "200", "45"), ("12.5", "200", "43.75"), ("100", "200", "0")],
)
def test_discount_comes_off_the_model_cost_before_the_cap(
    discount: str, quantity: str, cost: str
) -> None:
    price = MeterPrice(UnitPrice(D("0.25")), maximum=D(48), discount_percent=D(discount))

    # 200 units cost 50: capped at 48 without a discount, 45 after 10% off.
    assert period_cost(price, D(quantity)) == min(D(cost), D(48))


def test_zero_usage_still_gets_the_cap_and_discount() -> None:
    price = MeterPrice(GRADUATED, maximum=D(5), discount_percent=D(20))

    assert period_cost(price, D(0)) == D(5)
    assert period_cost(MeterPrice(GRADUATED, discount_percent=D(20)), D(0)) == D(8)


def test_negative_quantity_is_a_bug() -> None:
    with pytest.raises(ValueError, match="negative"):
        model_cost(UnitPrice(D(1)), D(-1))


def test_cost_that_cannot_be_exact_raises_instead_of_rounding() -> None:
    huge = D("9" * 60 + ".123456789")

    with pytest.raises(DecimalException):
        model_cost(UnitPrice(D("9999999999.123456789012")), huge)


@pytest.mark.parametrize(
    ("quantity", "cost"),
    [
        ("0", "0"),
        ("999", "0"),  # allowance larger than usage: free, never negative
        ("1000", "0"),
        ("1000.5", "0.005"),
        ("1500", "5"),
        ("5999", "49.99"),
        ("6000", "50"),  # exactly at the cap
        ("6001", "50"),
        ("1000000", "50"),
    ],
)
def test_period_cost_applies_allowance_then_cap(quantity: str, cost: str) -> None:
    price = MeterPrice(UnitPrice(D("0.01")), free_allowance=D(1000), maximum=D(50))

    assert period_cost(price, D(quantity)) == D(cost)


def test_allowance_comes_off_the_bottom_tiers() -> None:
    price = MeterPrice(GRADUATED, free_allowance=D(50))

    # 150 used, 100 billable: all in the first tier.
    assert period_cost(price, D(150)) == D(110)
    assert period_cost(price, D(151)) == D("130.5")


def test_minimum_is_not_part_of_the_period_cost() -> None:
    # The invoice raises a short meter to its minimum; the cost itself is what was used.
    price = MeterPrice(UnitPrice(D(1)), minimum=D(10))

    assert period_cost(price, D(3)) == D(3)


@pytest.mark.parametrize(
    ("currency", "units"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("BHD", 3),
        ("KWD", 3),
        ("CLF", 4),
        ("XYZ", 2),
    ],
)
def test_minor_units(currency: str, units: int) -> None:
    assert minor_units(currency) == units


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("0.125", "USD", "0.12"),  # half-even: ties go to the even cent
        ("0.135", "USD", "0.14"),
        ("0.1250000001", "USD", "0.13"),
        ("12", "USD", "12.00"),
        ("2.5", "JPY", "2"),
        ("3.5", "JPY", "4"),
        ("1.2345", "KWD", "1.234"),
        ("1.2355", "KWD", "1.236"),
        ("0.000000000000000000001", "EUR", "0.00"),
    ],
)
def test_round_to_minor_is_half_even(amount: str, currency: str, rounded: str) -> None:
    result = round_to_minor(D(amount), currency)

    assert result == D(rounded)
    assert str(result) == rounded


# Quantities and prices as the loaders admit them: 9 and 12 decimal places.
QUANTITIES = st.decimals(
    min_value=0, max_value=D("999999999999999999.999999999"), places=9, allow_nan=False
)
SMALL_QUANTITIES = st.decimals(min_value=0, max_value=D(2_000_000), places=9, allow_nan=False)
PRICES = st.decimals(min_value=0, max_value=D(1_000_000), places=12, allow_nan=False)
# rate_percent has 10 places, so rate / 100 is a price with at most 12; above 100 a markup.
RATES = st.decimals(min_value=0, max_value=D(1000), places=10, allow_nan=False)
BOUNDS = st.decimals(min_value=D("0.000000001"), max_value=D(1_000_000), places=9, allow_nan=False)


@st.composite
def tier_lists(draw: st.DrawFn) -> tuple[Tier, ...]:
    """1 to 4 tiers with rising bounds, the last unbounded, as the loader guarantees."""
    bounds = sorted(draw(st.sets(BOUNDS, max_size=3)))
    prices = draw(st.lists(PRICES, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    flats = draw(st.lists(PRICES, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    ups: list[Decimal | None] = [*bounds, None]
    return tuple(Tier(up, price, flat) for up, price, flat in zip(ups, prices, flats, strict=True))


@st.composite
def tiers_and_quantities(draw: st.DrawFn) -> tuple[tuple[Tier, ...], list[Decimal]]:
    """Tiers and quantities, often exactly on a tier edge."""
    tiers = draw(tier_lists())
    edges = [tier.up_to for tier in tiers if tier.up_to is not None]
    quantity = SMALL_QUANTITIES | st.sampled_from(edges) if edges else SMALL_QUANTITIES
    return tiers, draw(st.lists(quantity, min_size=1, max_size=5))


def _lower_bounds(tiers: tuple[Tier, ...]) -> list[Fraction]:
    return [Fraction(0), *(Fraction(tier.up_to) for tier in tiers[:-1] if tier.up_to is not None)]


def increment(tiers: tuple[Tier, ...], start: Decimal, more: Decimal) -> Fraction:
    """Price of the units in (start, start + more], tier by tier, by interval overlap."""
    low, high = Fraction(start), Fraction(start) + Fraction(more)
    total = Fraction(0)
    for tier, lower in zip(tiers, _lower_bounds(tiers), strict=True):
        upper = high if tier.up_to is None else Fraction(tier.up_to)
        overlap = max(Fraction(0), min(high, upper) - max(low, lower))
        total += overlap * Fraction(tier.unit_price)
        # A tier's flat price belongs to the unit that first reaches it; the first
        # tier's is due from zero usage, so no increment carries it.
        if low <= lower < high and lower:
            total += Fraction(tier.flat_price)
    return total


def fraction_digits(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


@given(tiers_and_quantities())
def test_graduated_cost_is_the_sum_of_increments_over_any_split(
    case: tuple[tuple[Tier, ...], list[Decimal]],
) -> None:
    tiers, chunks = case
    model = GraduatedPrice(tiers)
    used = D(0)
    for chunk in chunks:
        after = EXACT.add(used, chunk)
        step = Fraction(model_cost(model, after)) - Fraction(model_cost(model, used))
        assert step == increment(tiers, used, chunk)
        used = after
    base = Fraction(tiers[0].flat_price)
    assert Fraction(model_cost(model, used)) == base + increment(tiers, D(0), used)


@given(tier_lists(), SMALL_QUANTITIES, SMALL_QUANTITIES)
def test_graduated_cost_never_falls_as_usage_grows(
    tiers: tuple[Tier, ...], a: Decimal, b: Decimal
) -> None:
    model = GraduatedPrice(tiers)

    assert model_cost(model, min(a, b)) <= model_cost(model, max(a, b))


@given(tier_lists(), SMALL_QUANTITIES)
def test_volume_prices_all_units_at_the_tier_of_the_total(
    tiers: tuple[Tier, ...], quantity: Decimal
) -> None:
    tier = next(t for t in tiers if t.up_to is None or quantity <= t.up_to)
    expected = Fraction(quantity) * Fraction(tier.unit_price) + Fraction(tier.flat_price)

    cost = model_cost(VolumePrice(tiers), quantity)

    assert Fraction(cost) == expected


@given(
    size=st.decimals(min_value=D("0.001"), max_value=D(10_000), places=3, allow_nan=False),
    whole=st.integers(min_value=0, max_value=10**9),
    # 6 places times the size's 3: the point inside the package is a 9-place quantity.
    into_next=st.decimals(min_value=D("0.000001"), max_value=D(1), places=6, allow_nan=False),
    price=PRICES,
)
def test_package_cost_only_changes_at_multiples_of_the_size(
    size: Decimal, whole: int, into_next: Decimal, price: Decimal
) -> None:
    model = PackagePrice(size, price)
    edge = EXACT.multiply(size, D(whole))
    # Anywhere in (edge, edge + size] is one more started package than at the edge.
    inside = EXACT.add(edge, EXACT.multiply(size, into_next))
    next_edge = EXACT.add(edge, size)

    assert model_cost(model, edge) == EXACT.multiply(price, D(whole))
    assert model_cost(model, inside) == model_cost(model, next_edge)
    assert model_cost(model, next_edge) == EXACT.multiply(price, D(whole + 1))


@given(RATES, QUANTITIES)
def test_percentage_is_per_unit_at_rate_over_100(rate: Decimal, quantity: Decimal) -> None:
    unit_price = EXACT.divide(rate, D(100))

    assert model_cost(PercentagePrice(rate), quantity) == model_cost(
        UnitPrice(unit_price), quantity
    )


@st.composite
def price_models(draw: st.DrawFn) -> PriceModel:
    """Any model, with fields within the loaders' digit limits."""
    size = st.decimals(min_value=D("0.000000001"), max_value=D(10**9), places=9, allow_nan=False)
    strategies: list[st.SearchStrategy[PriceModel]] = [
        st.builds(UnitPrice, PRICES),
        st.builds(PackagePrice, size, PRICES, st.booleans()),
        st.builds(GraduatedPrice, tier_lists()),
        st.builds(VolumePrice, tier_lists()),
        st.builds(PercentagePrice, RATES, free_amount=st.none() | QUANTITIES),
    ]
    return draw(st.one_of(strategies))


@given(price_models(), QUANTITIES, QUANTITIES, st.none() | PRICES)
def test_every_cost_is_exact_within_21_decimal_places(
    model: PriceModel, quantity: Decimal, allowance: Decimal, maximum: Decimal | None
) -> None:
    # EXACT traps Inexact and Rounded: merely returning proves nothing was rounded.
    cost = model_cost(model, quantity)
    capped = period_cost(MeterPrice(model, allowance, maximum), quantity)

    assert fraction_digits(cost) <= 21
    assert fraction_digits(capped) <= 21
    assert capped >= 0
    assert maximum is None or capped <= maximum
    if quantity <= allowance:
        # Within the allowance only what zero usage costs is due (a first tier's flat price).
        assert capped == period_cost(MeterPrice(model, maximum=maximum), D(0))


@given(
    price_models(),
    st.lists(QUANTITIES, min_size=1, max_size=4),
    QUANTITIES,
    st.none() | PRICES,
    st.decimals(min_value=0, max_value=100, places=2, allow_nan=False),
    st.sampled_from([-5, 0, 5, 10]),
)
def test_a_segment_pricer_is_segment_cost_digit_for_digit(
    model: PriceModel,
    quantities: list[Decimal],
    allowance: Decimal,
    maximum: Decimal | None,
    discount: Decimal,
    period_start_ms: int,
) -> None:
    # Two versions, the first from 0: a period starting at 0 or 5 opens under
    # v1, so v2 is a later segment (less its zero-usage fee); one at 10 opens
    # under v2; one at -5 starts before the plan, which opens under its first.
    price = MeterPrice(model, allowance, maximum, discount_percent=discount)
    plain = MeterPrice(model, maximum=maximum)
    v1 = PlanVersion("v1", 0, {"m": plain, "other": price})
    v2 = PlanVersion("v2", 10, {"m": price, "other": plain})
    plan = Plan("p", "USD", (v1, v2))

    for version in (None, v1, v2):
        for meter in ("m", "other", "unpriced"):
            _assert_same_costs(plan, version, meter, period_start_ms, quantities)


@pytest.mark.parametrize("discount", [D(0), D(10)])
def test_a_segment_pricer_caps_with_and_without_a_discount(discount: D) -> None:
    price = MeterPrice(UnitPrice(D(2)), maximum=D(15), discount_percent=discount)
    v1 = PlanVersion("v1", 0, {"m": price})
    v2 = PlanVersion("v2", 10, {"m": price})
    plan = Plan("p", "USD", (v1, v2))

    for start in (-5, 0, 10):
        for version in (v1, v2):
            _assert_same_costs(plan, version, "m", start, [D(0), D(3), D(7), D(100)])
    assert segment_pricer(plan, v1, "m", 0)(D(100)) == D(15)


def _assert_same_costs(
    plan: Plan,
    version: PlanVersion | None,
    meter: str,
    period_start_ms: int,
    quantities: list[Decimal],
) -> None:
    try:
        pricer = segment_pricer(plan, version, meter, period_start_ms)
    except DecimalException as exc:
        # Then every cost of the segment fails the same way.
        for quantity in quantities:
            with pytest.raises(type(exc)):
                segment_cost(plan, version, meter, quantity, period_start_ms)
        return
    for quantity in quantities:
        try:
            expected = segment_cost(plan, version, meter, quantity, period_start_ms)
        except DecimalException as exc:
            # Not exact here: the pricer must fail alike.
            with pytest.raises(type(exc)):
                pricer(quantity)
            continue
        cost = pricer(quantity)
        # Equal as values and as digits: amounts are stored as written.
        assert (cost, str(cost)) == (expected, str(expected))
