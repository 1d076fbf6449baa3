"""The native ledger and pricers against their specification, operators/pricing.py and
operators/period_rating.py.

Every price model with random terms (tiers with flat prices, packages rounded
either way, percentages with a free amount, free allowances, discounts,
maximums, a later version's segment less its zero-usage fee) must cost every
quantity exactly as ``segment_pricer`` does, or (only for numbers beyond 38
digits) decline, so the shard rates in Python. The shard flows of
test_shard_differential.py run again under prices that outgrow the core
mid-stream: the amounts must not change by a digit when rating moves to Python.
"""

from __future__ import annotations

import pickle
from decimal import Context, Decimal, InvalidOperation
from unittest.mock import patch

from hypothesis import example, given, settings
from hypothesis import strategies as st

from config.meters import Aggregation
from config.pricing import (
    GraduatedPrice,
    MeterPrice,
    PackagePrice,
    PercentagePrice,
    Plan,
    PlanVersion,
    PriceModel,
    PricingCatalog,
    Tier,
    UnitPrice,
    VolumePrice,
)
from operators import money, pricing
from operators._native import NativeLedger
from operators.contributions import Contribution, contribution_of
from operators.money import EXACT
from operators.native_rating import NativeRating, pricer_args
from operators.period_rating import PeriodKey, PeriodLedger
from operators.pricing import segment_pricer
from operators.windowing import WindowConfig
from tests.native.test_shard_differential import (
    MINUTE,
    PARTITION,
    PARTITIONS,
    SECOND,
    STEP,
    Flows,
    Spec,
    play,
)
from tests.operators.conftest import JAN_2026_MS, NOV_2026_MS


def decimals(digits: int, exponents: tuple[int, int]) -> st.SearchStrategy[Decimal]:
    """Non-negative decimals of up to ``digits`` digits, trailing zeros and exponents kept."""
    return st.builds(
        lambda mantissa, exponent: Decimal(mantissa).scaleb(exponent),
        st.integers(0, 10**digits - 1),
        st.integers(*exponents),
    )


# Numbers the core always holds (12 digits, like real prices) and numbers beyond it.
NORMAL = decimals(9, (-9, 2))
EXTREME = decimals(30, (-30, 30))


def tiers(numbers: st.SearchStrategy[Decimal]) -> st.SearchStrategy[tuple[Tier, ...]]:
    def build(
        bounds: list[Decimal], prices: list[tuple[Decimal, Decimal]], open_end: bool
    ) -> tuple[Tier, ...]:
        ups: list[Decimal | None] = sorted(set(bounds))[: len(prices)]
        while len(ups) < len(prices):
            ups.append(None)
        if open_end:
            ups[-1] = None
        return tuple(Tier(up, unit, flat) for up, (unit, flat) in zip(ups, prices, strict=True))

    return st.builds(
        build,
        st.lists(numbers.filter(bool), min_size=1, max_size=4),
        st.lists(st.tuples(numbers, numbers), min_size=1, max_size=4),
        st.booleans(),
    )


def models(numbers: st.SearchStrategy[Decimal]) -> st.SearchStrategy[PriceModel]:
    return st.one_of(
        st.builds(UnitPrice, numbers),
        st.builds(PackagePrice, numbers.filter(bool), numbers, st.booleans()),
        st.builds(GraduatedPrice, tiers(numbers)),
        st.builds(VolumePrice, tiers(numbers)),
        st.builds(
            PercentagePrice,
            numbers,
            free_amount=st.one_of(st.none(), numbers),
        ),
    )


def prices(numbers: st.SearchStrategy[Decimal]) -> st.SearchStrategy[MeterPrice]:
    return st.builds(
        MeterPrice,
        models(numbers),
        free_allowance=st.one_of(st.just(Decimal(0)), numbers),
        maximum=st.one_of(st.none(), numbers),
        discount_percent=st.one_of(
            st.just(Decimal(0)), st.integers(0, 10_000).map(lambda n: Decimal(n).scaleb(-2))
        ),
    )


def plan_of(first: MeterPrice, second: MeterPrice) -> Plan:
    return Plan(
        id="p",
        currency="EUR",
        versions=(
            PlanVersion("v1", JAN_2026_MS, {"m": first}),
            PlanVersion("v2", NOV_2026_MS + 9 * 24 * 60 * MINUTE, {"m": second}),
        ),
    )


def python_cost(plan: Plan, later: bool, quantity: Decimal, digits: int = 76) -> Decimal | None:
    """``segment_pricer``'s cost: of the opening version, or of the later one mid-period;
    with ``digits``, every step held to that many digits (None where one needs more)."""
    version = plan.versions[1] if later else plan.versions[0]
    exact = Context(prec=digits, traps=EXACT.traps and [s for s, on in EXACT.traps.items() if on])
    try:
        with patch.object(money, "EXACT", exact), patch.object(pricing, "EXACT", exact):
            return segment_pricer(plan, version, "m", NOV_2026_MS)(quantity)
    except (ArithmeticError, InvalidOperation):
        return None


def native_cost(plan: Plan, later: bool, quantity: Decimal) -> tuple[bool, str | None]:
    """(compiled, cost): the core's pricer of the same segment."""
    version = plan.versions[1] if later else plan.versions[0]
    ledger = NativeLedger([("m", "SUM")])
    number = ledger.add_pricer(*pricer_args(plan, version, "m", NOV_2026_MS))
    if number is None:
        return False, None
    return True, ledger.quote(number, str(quantity))


@settings(max_examples=400, deadline=None)
@given(
    first=prices(NORMAL),
    second=prices(NORMAL),
    later=st.booleans(),
    quantity=decimals(15, (-9, 0)),
)
@example(
    first=MeterPrice(
        GraduatedPrice(
            (Tier(Decimal(100), Decimal("0.10"), Decimal(5)), Tier(None, Decimal("0.05")))
        ),
        free_allowance=Decimal(10),
    ),
    second=MeterPrice(PackagePrice(Decimal(3), Decimal("4.5"), round_down=True)),
    later=True,
    quantity=Decimal("7.000000001"),
)
def test_native_pricers_cost_every_quantity_as_the_specification(
    first: MeterPrice, second: MeterPrice, later: bool, quantity: Decimal
) -> None:
    plan = plan_of(first, second)
    expected = python_cost(plan, later, quantity)
    compiled, got = native_cost(plan, later, quantity)
    # Real-sized numbers never leave the core.
    assert compiled and got is not None and expected is not None
    assert Decimal(got) == expected


@settings(max_examples=300, deadline=None)
@given(
    first=prices(EXTREME),
    second=prices(EXTREME),
    later=st.booleans(),
    quantity=decimals(27, (-9, 0)),
)
def test_native_pricers_decline_only_what_they_cannot_hold(
    first: MeterPrice, second: MeterPrice, later: bool, quantity: Decimal
) -> None:
    plan = plan_of(first, second)
    expected = python_cost(plan, later, quantity)
    try:
        compiled, got = native_cost(plan, later, quantity)
    except ArithmeticError:
        # Compiling failed in Python (a zero-usage fee beyond 76 digits): so does the
        # specification's pricer.
        assert expected is None
        return
    if got is not None:
        assert expected is not None and Decimal(got) == expected
    else:
        # Declined only where 38 digits (an i128) cannot hold a step exactly, or cannot
        # align two of its numbers (their digits span more than 38 places).
        numbers = [quantity, *numbers_of(first), *numbers_of(second)]
        if expected is not None:
            numbers.append(expected)
        assert (
            not compiled
            or python_cost(plan, later, quantity, digits=38) is None
            or digit_span(numbers) > 38
        )


def numbers_of(price: MeterPrice) -> list[Decimal]:
    """Every number of ``price``'s terms."""
    model = price.model
    terms = [price.free_allowance, price.maximum, price.discount_percent]
    match model:
        case UnitPrice(unit_price=unit):
            terms.append(unit)
        case PackagePrice(package_size=size, package_price=package_price):
            terms += [size, package_price]
        case GraduatedPrice(tiers=tiers) | VolumePrice(tiers=tiers):
            terms += [n for t in tiers for n in (t.up_to, t.unit_price, t.flat_price)]
        case PercentagePrice(rate_percent=rate, free_amount=free):
            terms += [rate, free]
    return [n for n in terms if n is not None]


def digit_span(numbers: list[Decimal]) -> int:
    """Places from the lowest digit of any of ``numbers`` to the highest (zeros aside)."""
    nonzero = [n for n in numbers if n]
    if not nonzero:
        return 0
    return max(n.adjusted() for n in nonzero) - min(n.as_tuple().exponent for n in nonzero) + 1  # type: ignore[operator]


def _huge(unit: str) -> PricingCatalog:
    price = MeterPrice(UnitPrice(Decimal(unit)))
    names = ("tokens", "completions", "storage_gb", "active_users", "seats")
    return PricingCatalog(
        plans={
            "big": Plan("big", "USD", (PlanVersion("v", JAN_2026_MS, dict.fromkeys(names, price)),))
        },
        subscriptions={},
        default_plan="big",
    )


# Quantities up to 10^17 at these prices need 45 digits: the core declines, Python rates.
HUGE = _huge("12345678901234567890.123")


@settings(max_examples=60, deadline=None)
@given(
    drawn=st.lists(PARTITION, min_size=PARTITIONS, max_size=PARTITIONS),
    schedule=st.lists(STEP, max_size=20),
)
def test_shards_rate_the_same_when_amounts_outgrow_the_core(
    drawn: list[tuple[int, list[Spec]]], schedule: list[object]
) -> None:
    config = WindowConfig(MINUTE, 10 * SECOND, 10 * MINUTE, 5 * SECOND)
    play(drawn, schedule, Flows(config, 10 * MINUTE, HUGE))


def test_a_shard_whose_amounts_outgrow_the_core_rates_on_in_python() -> None:
    huge = "99999999999999999.999999999"
    drawn = [
        (0, [Spec("acme", "llm.completion", 0, 0, False, "1.5", '"gpt"', None)]),
        (
            0,
            [
                Spec("acme", "llm.completion", SECOND, 0, False, huge, '"gpt"', None),
                Spec("acme", "llm.completion", 2 * MINUTE, 0, False, "2", '"gpt"', None),
            ],
        ),
        (0, [Spec("acme", "llm.completion", 3 * MINUTE, 0, False, "3", '"gpt"', None)]),
    ]
    schedule = [("batch", 0, 1), ("restore",), ("batch", 1, 1), ("restore",), ("batch", 2, 1)]
    config = WindowConfig(MINUTE, 10 * SECOND, 10 * MINUTE, 5 * SECOND)
    flows = play(drawn, schedule, Flows(config, 10 * MINUTE, HUGE))
    assert flows.verdicts["revisions"] >= 3
    assert [n.ledger.python is not None for n in flows.native.values()].count(True) == 1


def _monthly_rollover() -> list[tuple[int, list[Spec]]]:
    def event(step: int, behind: int = 0) -> Spec:
        return Spec("acme", "llm.completion", step, behind, False, "1", '"gpt"', None)

    # October's last minutes, then November's first, and late events into October:
    # one emission needs October's segment and November's for four window starts.
    late = [event(2 * MINUTE, behind=MINUTE), *[event(MINUTE)] * 5, event(0, behind=4 * MINUTE)]
    return [(-3 * MINUTE, [event(0), event(MINUTE), *late]), (0, []), (0, [])]


def _minutely_versions() -> PricingCatalog:
    names = ("tokens", "completions", "storage_gb", "active_users", "seats")
    prices = dict.fromkeys(names, MeterPrice(UnitPrice(Decimal("0.5"))))
    versions = tuple(
        PlanVersion(f"v{k}", NOV_2026_MS + k * MINUTE, prices) for k in range(-600, 30)
    )
    plans = {"p": Plan("p", "USD", versions)}
    return PricingCatalog(plans=plans, subscriptions={}, default_plan="p")


def test_segments_an_emission_needs_are_all_kept_while_it_is_rated() -> None:
    config = WindowConfig(MINUTE, 0, 10 * MINUTE, 0)
    # A month boundary: a kept October segment and November's found for four starts.
    play(_monthly_rollover(), [("batch", 0, 2), ("batch", 0, 7)], Flows(config, 10 * MINUTE))

    # A price version every minute: more segments in one emission than a tenant keeps.
    def event(step: int, behind: int = 0) -> Spec:
        return Spec("acme", "llm.completion", step, behind, False, "1", '"gpt"', None)

    drawn = [
        (0, [event(0), *[event(MINUTE)] * 4, event(MINUTE, behind=5 * MINUTE), event(0)]),
        (0, []),
        (0, []),
    ]
    flows = play(
        drawn, [("batch", 0, 5), ("batch", 0, 2)], Flows(config, 10 * MINUTE, _minutely_versions())
    )
    assert flows.verdicts["revisions"] >= 10
    assert all(n.ledger.native is not None for n in flows.native.values())


AGGREGATIONS = {
    "calls": Aggregation.SUM,
    "users": Aggregation.UNIQUE_COUNT,
    "peak": Aggregation.MAX,
    "last": Aggregation.LATEST,
    "count": Aggregation.COUNT,
}
STORED = {
    "calls": Contribution(Decimal("12.5"), Decimal("1.25")),
    "users": Contribution(Decimal(2), Decimal("0.5"), distinct_values=frozenset({"a", "b"})),
    "peak": Contribution(Decimal(7), Decimal(3)),
    "last": Contribution(Decimal(4), Decimal(0), latest_ms=1_234),
    "count": Contribution(Decimal(9), Decimal("0.09")),
}


def _periods(ledger: PeriodLedger) -> dict[PeriodKey, tuple[Contribution, int]]:
    return {
        key: (contribution_of(usage, charged), end)
        for key, (usage, charged, end) in ledger.periods.items()
    }


def test_a_restored_python_ledger_moves_into_the_core_and_back_unchanged() -> None:
    python = PeriodLedger(AGGREGATIONS, "inc-1")
    for n, (meter, stored) in enumerate(STORED.items()):
        python.seed(PeriodKey(f"t{n % 2}", meter, NOV_2026_MS, "v1"), stored, NOV_2026_MS + n)
    rating = NativeRating.of_python(python)
    assert rating.native is not None and rating.python is None
    assert (len(rating), rating.tenants(), rating.incarnation) == (5, {"t0", "t1"}, "inc-1")
    restored = pickle.loads(pickle.dumps(rating))
    restored._move_to_python()
    assert restored.python is not None
    assert _periods(restored.python) == _periods(python)
    assert rating.expire(NOV_2026_MS + 2) == 3
    assert len(rating) == 2


def test_a_period_the_core_cannot_hold_moves_the_ledger_to_python() -> None:
    rating = NativeRating(AGGREGATIONS)
    rating.seed(PeriodKey("t", "calls", 0, "v"), STORED["calls"], 10)
    big = Contribution(Decimal("1234567890123456789012345678901234567890.5"), Decimal(0))
    rating.seed(PeriodKey("t", "peak", 0, "v"), big, 20)
    assert rating.native is None and rating.python is not None
    assert _periods(rating.python)[PeriodKey("t", "peak", 0, "v")] == (big, 20)
    assert _periods(rating.python)[PeriodKey("t", "calls", 0, "v")] == (STORED["calls"], 10)
    assert rating.expire(10) == 1
