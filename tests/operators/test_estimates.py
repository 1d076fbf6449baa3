"""Estimates and dry-run invoices: the numbers a tenant sees, to the cent (or the yen)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.meters import Aggregation
from config.pricing import (
    GraduatedPrice,
    MeterPrice,
    PercentagePrice,
    Plan,
    PlanVersion,
    Tier,
    UnitPrice,
)
from operators.estimates import (
    CurrencyMismatchError,
    Invoice,
    LineKind,
    LiveReading,
    LiveState,
    PeriodError,
    PricedFrom,
    SegmentUsage,
    estimate,
    invoice,
    project,
    resolve_period,
)
from operators.periods import billing_period
from operators.pricing import PricedEvent

D = Decimal
NOV_2026_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DEC_2026_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z
NOVEMBER = (NOV_2026_MS, DEC_2026_MS)
LENGTH = DEC_2026_MS - NOV_2026_MS
AGGREGATIONS = {
    "tokens": Aggregation.SUM,
    "calls": Aggregation.COUNT,
    "peak_gb": Aggregation.MAX,
    "seats": Aggregation.LATEST,
}


def plan(
    currency: str = "USD",
    *,
    fixed_fee: str = "0",
    commitment: str | None = None,
    minimums: dict[str, str] | None = None,
    versions: tuple[tuple[str, int], ...] = (("v1", 0),),
) -> Plan:
    """A plan pricing tokens, calls and peak_gb; the same terms in every version."""
    minimums = minimums or {}
    prices = {
        meter: MeterPrice(
            UnitPrice(D("0.001")),
            minimum=None if meter not in minimums else D(minimums[meter]),
        )
        for meter in ("tokens", "calls", "peak_gb")
    }
    return Plan(
        "p",
        currency,
        tuple(
            PlanVersion(
                name,
                start,
                prices,
                fixed_fee=D(fixed_fee),
                minimum_commitment=None if commitment is None else D(commitment),
            )
            for name, start in versions
        ),
    )


def segment(
    meter: str, amount: str, quantity: str = "0", version: str = "v1", currency: str = "USD"
) -> SegmentUsage:
    return SegmentUsage(meter, version, "p", currency, D(quantity), D(amount))


def live(meter: str, amount: str, quantity: str = "0", currency: str = "USD") -> LiveReading:
    return LiveReading(meter, D(quantity), D(amount), currency, NOV_2026_MS, DEC_2026_MS, 0)


def lines_of(bill: Invoice) -> list[tuple[str, str | None, str, str]]:
    """(kind, meter, version, rounded amount) of each line."""
    return [
        (line.kind.value, line.meter, line.price_version, str(line.rounded)) for line in bill.lines
    ]


# Periods


def test_month_names_the_period_that_starts_in_it() -> None:
    # Anchored on the 15th in Berlin: 00:00 CET is 23:00 UTC the day before.
    start, end = resolve_period("2026-11", 15, "Europe/Berlin", 0)

    assert start == 1_794_697_200_000  # 2026-11-14T23:00:00Z
    assert end == 1_797_289_200_000  # 2026-12-14T23:00:00Z


def test_instant_and_now_name_the_period_that_holds_them() -> None:
    inside = NOV_2026_MS + 10 * 86_400_000

    assert resolve_period("2026-11-11T00:00:00Z", 1, "UTC", 0) == NOVEMBER
    assert resolve_period(None, 1, "UTC", inside) == NOVEMBER
    assert resolve_period("2026-11", 1, "UTC", 0) == billing_period(inside, 1, "UTC")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-13", "not a month"),
        ("2026-00", "not a month"),
        ("1969-12", "not a month"),
        ("9999-01", "not a month"),
        ("november", "not RFC 3339"),
        ("2026-11-15T00:00:00", "no UTC offset"),
        ("2026-02-30T00:00:00Z", "not a real date"),
        ("", "not RFC 3339"),
    ],
)
def test_bad_periods_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(PeriodError, match=message) as caught:
        resolve_period(text, 1, "UTC", NOV_2026_MS)
    assert "2026-11" in str(caught.value)


# Estimates


def test_provisional_is_what_the_live_counter_adds_to_closed_windows() -> None:
    report = estimate(
        "acme",
        plan(),
        NOVEMBER,
        now_ms=NOV_2026_MS + LENGTH // 2,
        final=[segment("tokens", "1.5", "1500"), segment("tokens", "0.25", "250", "v2")],
        live={"tokens": live("tokens", "2.000000001", "2000")},
        aggregations=AGGREGATIONS,
    )

    (tokens,) = report.meters
    assert tokens.final == D("1.75")
    assert tokens.provisional == D("0.250000001")
    assert tokens.total == D("2.000000001")
    # Half the period has passed: the projection doubles the total.
    assert tokens.projection == D("4.000000002")
    assert tokens.quantity == D(2000)
    assert tokens.live is LiveState.CURRENT
    assert (report.total, report.projection) == (D("2.000000001"), D("4.000000002"))
    assert report.elapsed_fraction == D("0.5")


def test_a_lagging_live_counter_adds_nothing_and_says_so() -> None:
    report = estimate(
        "acme",
        plan(),
        NOVEMBER,
        now_ms=DEC_2026_MS,
        final=[segment("tokens", "3", "3000")],
        live={"tokens": live("tokens", "2.5", "2500")},
        aggregations=AGGREGATIONS,
    )

    (tokens,) = report.meters
    assert (tokens.final, tokens.provisional, tokens.total) == (D(3), D(0), D(3))
    assert tokens.live is LiveState.LAGGING
    # The closed windows know more usage than the counter.
    assert tokens.quantity == D(3000)


def test_meters_on_one_side_only() -> None:
    report = estimate(
        "acme",
        plan(),
        NOVEMBER,
        now_ms=DEC_2026_MS,
        final=[segment("calls", "0.2", "200"), segment("peak_gb", "7", "70")],
        live={"seats": live("seats", "5", "12")},
        aggregations=AGGREGATIONS,
    )

    by_meter = {m.meter: m for m in report.meters}
    assert list(by_meter) == ["calls", "peak_gb", "seats"]
    assert by_meter["calls"].live is LiveState.MISSING
    assert by_meter["calls"].quantity == D(200)
    # A MAX meter's window quantities do not add up to its period usage.
    assert by_meter["peak_gb"].quantity is None
    assert by_meter["seats"].quantity == D(12)
    assert (by_meter["seats"].final, by_meter["seats"].provisional) == (D(0), D(5))
    assert report.total == D("12.2")


def test_usage_in_another_currency_is_refused() -> None:
    with pytest.raises(CurrencyMismatchError, match="EUR"):
        estimate(
            "acme",
            plan(),
            NOVEMBER,
            now_ms=DEC_2026_MS,
            final=[],
            live={"tokens": live("tokens", "1", currency="EUR")},
            aggregations=AGGREGATIONS,
        )


@pytest.mark.parametrize(
    ("now_ms", "expected"),
    [
        (NOV_2026_MS - 1, "12"),  # before the period
        (NOV_2026_MS, "12"),
        (NOV_2026_MS + LENGTH // 100 - 1, "12"),  # under 1% elapsed: no extrapolation
        (NOV_2026_MS + LENGTH // 100, "1200"),  # exactly 1%
        (NOV_2026_MS + LENGTH // 4, "48"),
        (DEC_2026_MS, "12"),
        (DEC_2026_MS + 86_400_000, "12"),  # after the period: what it came to
    ],
)
def test_linear_projection(now_ms: int, expected: str) -> None:
    assert project(D(12), NOV_2026_MS, DEC_2026_MS, now_ms) == D(expected)


def test_projection_rounds_half_even_at_21_places() -> None:
    # A third of the way: 1 / (1/3) = 3 exactly; 1 / (2/3) = 1.5; 2 / (1/3 + 1ms) is not exact.
    assert project(D(1), 0, 3_000, 1_000) == D(3)
    assert project(D(1), 0, 3_000, 2_000) == D("1.5")
    odd = project(D(1), 0, 3_000, 1_001)
    assert odd == D("2.997002997002997002997")
    assert odd.as_tuple().exponent == -21


# Invoices


def test_usage_lines_per_meter_and_version_in_version_order() -> None:
    two = plan(versions=(("v1", 0), ("v2", NOV_2026_MS + 86_400_000)))
    bill = invoice(
        "acme",
        two,
        NOVEMBER,
        usage=[
            segment("tokens", "0.2", "200", "v2"),
            segment("calls", "1.234", "1234"),
            segment("tokens", "1.126", "1126"),
            segment("peak_gb", "0.5", "9"),
        ],
        aggregations=AGGREGATIONS,
    )

    assert lines_of(bill) == [
        ("usage", "calls", "v1", "1.23"),
        ("usage", "peak_gb", "v1", "0.50"),
        ("usage", "tokens", "v1", "1.13"),
        ("usage", "tokens", "v2", "0.20"),
    ]
    assert [line.quantity for line in bill.lines] == [D(1234), None, D(1126), D(200)]
    assert bill.lines[2].amount == D("1.126")
    assert bill.total == D("3.06")
    assert bill.price_version == "v1"


def test_minimum_true_ups_include_meters_without_usage() -> None:
    bill = invoice(
        "acme",
        plan(minimums={"tokens": "5", "calls": "2", "peak_gb": "1"}),
        NOVEMBER,
        usage=[segment("tokens", "3.001", "3001"), segment("peak_gb", "1.2", "7")],
        aggregations=AGGREGATIONS,
    )

    assert lines_of(bill) == [
        ("usage", "peak_gb", "v1", "1.20"),
        ("usage", "tokens", "v1", "3.00"),
        ("minimum", "calls", "v1", "2.00"),
        # Tops up the rounded usage line: the meter costs exactly its minimum.
        ("minimum", "tokens", "v1", "2.00"),
    ]
    assert bill.total == D("8.20")


def test_fixed_fee_then_commitment_true_up_of_the_subtotal() -> None:
    bill = invoice(
        "acme",
        plan(fixed_fee="49", commitment="100", minimums={"calls": "10"}),
        NOVEMBER,
        usage=[segment("tokens", "12.344", "12344")],
        aggregations=AGGREGATIONS,
    )

    assert lines_of(bill) == [
        ("usage", "tokens", "v1", "12.34"),
        ("minimum", "calls", "v1", "10.00"),
        ("fixed_fee", None, "v1", "49.00"),
        ("minimum_commitment", None, "v1", "28.66"),
    ]
    assert bill.total == D("100.00")


def test_no_commitment_line_when_usage_exceeds_it() -> None:
    bill = invoice(
        "acme",
        plan(fixed_fee="49", commitment="100"),
        NOVEMBER,
        usage=[segment("tokens", "51.005", "51005")],
        aggregations=AGGREGATIONS,
    )

    assert [line.kind for line in bill.lines] == [LineKind.USAGE, LineKind.FIXED_FEE]
    assert bill.total == D("100.00")


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [
        ("0.005", "0.00"),  # half to even: down to 0
        ("0.015", "0.02"),  # half to even: up to 2
        ("0.025", "0.02"),
        ("0.035", "0.04"),
        ("1.005", "1.00"),
        ("0.0050000000000000000001", "0.01"),  # above half
        ("0.004999999999999999999999", "0.00"),
        ("2.675", "2.68"),  # a float would make this 2.67
    ],
)
def test_lines_round_half_even_at_the_boundary(amount: str, rounded: str) -> None:
    bill = invoice(
        "acme", plan(), NOVEMBER, usage=[segment("tokens", amount)], aggregations=AGGREGATIONS
    )

    assert str(bill.lines[0].rounded) == rounded
    assert bill.lines[0].amount == D(amount)


def test_total_is_the_sum_of_rounded_lines_not_the_rounded_sum() -> None:
    bill = invoice(
        "acme",
        plan(versions=(("v1", 0), ("v2", NOV_2026_MS + 1))),
        NOVEMBER,
        usage=[segment("tokens", "0.005"), segment("tokens", "0.005", version="v2")],
        aggregations=AGGREGATIONS,
    )

    # Exactly 0.01 was used, but each line rounds to 0.00 and the invoice shows lines.
    assert [str(line.rounded) for line in bill.lines] == ["0.00", "0.00"]
    assert bill.total == D("0.00")


def test_commitment_tops_up_rounded_lines_to_exactly_the_commitment() -> None:
    bill = invoice(
        "acme",
        plan(commitment="1", versions=(("v1", 0), ("v2", NOV_2026_MS + 1))),
        NOVEMBER,
        usage=[segment("tokens", "0.005"), segment("tokens", "0.005", version="v2")],
        aggregations=AGGREGATIONS,
    )

    assert lines_of(bill)[-1] == ("minimum_commitment", None, "v1", "1.00")
    assert bill.total == D("1.00")


def test_jpy_lines_are_whole_yen_half_even() -> None:
    bill = invoice(
        "acme",
        plan("JPY", fixed_fee="1000.5", commitment="5000", minimums={"calls": "99.5"}),
        NOVEMBER,
        usage=[
            segment("tokens", "2.5", currency="JPY"),
            segment("peak_gb", "3.5", currency="JPY"),
        ],
        aggregations=AGGREGATIONS,
    )

    assert lines_of(bill) == [
        ("usage", "peak_gb", "v1", "4"),
        ("usage", "tokens", "v1", "2"),
        ("minimum", "calls", "v1", "100"),
        ("fixed_fee", None, "v1", "1000"),
        ("minimum_commitment", None, "v1", "3894"),
    ]
    assert str(bill.total) == "5000"


def test_plan_terms_come_from_the_version_in_force_at_the_period_start() -> None:
    first = plan(fixed_fee="10").versions[0]
    versions = (first, PlanVersion("v2", NOV_2026_MS + 86_400_000, {}, fixed_fee=D(20)))
    changed = Plan("p", "USD", versions)
    bill = invoice("acme", changed, NOVEMBER, usage=[], aggregations=AGGREGATIONS)
    assert lines_of(bill) == [("fixed_fee", None, "v1", "10.00")]

    # A plan that starts during the period: its first version's terms apply.
    late = Plan("p", "USD", versions[1:])
    bill = invoice("acme", late, NOVEMBER, usage=[], aggregations=AGGREGATIONS)
    assert (bill.price_version, bill.total) == ("v2", D("20.00"))

    # A plan that starts after the period: usage lines only.
    later = Plan("p", "USD", (PlanVersion("v3", DEC_2026_MS, {}, fixed_fee=D(30)),))
    bill = invoice("acme", later, NOVEMBER, usage=[], aggregations=AGGREGATIONS)
    assert (bill.price_version, bill.lines) == (None, ())


def test_invoice_refuses_usage_in_another_currency() -> None:
    with pytest.raises(CurrencyMismatchError, match="meter 'tokens'"):
        invoice(
            "acme",
            plan(),
            NOVEMBER,
            usage=[segment("tokens", "1", currency="EUR")],
            aggregations=AGGREGATIONS,
        )


_AMOUNTS = st.decimals(min_value=0, max_value=1000, places=4)


@given(
    amounts=st.lists(_AMOUNTS, max_size=6),
    minimum=_AMOUNTS,
    fee=_AMOUNTS,
    commitment=_AMOUNTS,
    currency=st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_rounded_lines_add_up_and_never_fall_short(
    amounts: list[Decimal], minimum: Decimal, fee: Decimal, commitment: Decimal, currency: str
) -> None:
    prices = {"tokens": MeterPrice(UnitPrice(D("0.001")), minimum=minimum)}
    terms = Plan("p", currency, (PlanVersion("v1", 0, prices, fee, commitment),))
    usage = [
        segment("tokens", str(amount), version=f"v{index}", currency=currency)
        for index, amount in enumerate(amounts)
    ]

    bill = invoice("acme", terms, NOVEMBER, usage=usage, aggregations=AGGREGATIONS)

    places = {"USD": 2, "JPY": 0, "KWD": 3}[currency]
    assert all(line.rounded.as_tuple().exponent == -places for line in bill.lines)
    assert bill.total == sum((line.rounded for line in bill.lines), D(0))
    tokens = sum((line.rounded for line in bill.lines if line.meter == "tokens"), D(0))
    assert tokens >= round(minimum, places)
    assert bill.total >= round(commitment, places)


def _tiered_and_per_event_plan() -> Plan:
    """storage_gb: graduated with a 5.00 first-tier fee; payments: Lago's percentage example."""
    prices = {
        "storage_gb": MeterPrice(
            GraduatedPrice((Tier(D(100), D("0.02"), D(5)), Tier(None, D("0.01")))),
            minimum=D(6),
        ),
        "payments": MeterPrice(
            PercentagePrice(D("1.2"), fixed_fee=D("0.10"), free_events=3, free_amount=D(500))
        ),
    }
    return Plan("p", "USD", (PlanVersion("v1", 0, prices),))


def test_invoice_shows_the_zero_usage_fee_of_a_meter_without_usage() -> None:
    bill = invoice("acme", _tiered_and_per_event_plan(), NOVEMBER, usage=[], aggregations={})

    lines = [(line.kind, line.meter, line.quantity, line.rounded) for line in bill.lines]
    # No events at all: storage_gb's first tier fee is due (Lago, OpenMeter), and the
    # minimum tops it up to 6; payments cost nothing at zero usage.
    assert lines == [
        (LineKind.USAGE, "storage_gb", D(0), D("5.00")),
        (LineKind.MINIMUM, "storage_gb", None, D("1.00")),
    ]
    assert bill.total == D("6.00")


def test_invoice_prices_per_event_charges_from_the_events_not_the_windows() -> None:
    # The windows streamed 1.2% of the sum (450 x 1.2% = 5.40): provisional.
    usage = [SegmentUsage("payments", "v1", "p", "USD", D(450), D("5.40"))]
    arrived = [  # out of order, with a replayed copy
        PricedEvent(NOV_2026_MS + 4, "s\x00d", D(50)),
        PricedEvent(NOV_2026_MS + 1, "s\x00a", D(200)),
        PricedEvent(NOV_2026_MS + 3, "s\x00c", D(100)),
        PricedEvent(NOV_2026_MS + 2, "s\x00b", D(100)),
        PricedEvent(NOV_2026_MS + 4, "s\x00d", D(50)),
    ]

    bill = invoice(
        "acme",
        _tiered_and_per_event_plan(),
        NOVEMBER,
        usage=usage,
        aggregations={"payments": Aggregation.SUM},
        events={"payments": arrived},
    )

    payments = next(line for line in bill.lines if line.meter == "payments")
    assert (payments.quantity, payments.amount) == (D(450), D("0.70"))


def test_estimate_shows_the_zero_usage_fee() -> None:
    report = estimate(
        "acme",
        _tiered_and_per_event_plan(),
        NOVEMBER,
        now_ms=NOV_2026_MS + LENGTH // 2,
        final=[],
        live={},
        aggregations={},
    )

    assert [(m.meter, m.quantity, m.total, m.projection) for m in report.meters] == [
        ("storage_gb", D(0), D(5), D(5))
    ]


def _versioned_tiered_plan() -> Plan:
    """storage_gb with a 5.00 first-tier fee in v1 and a 7.00 one in v2 (from November 16)."""

    def graduated(fee: str) -> MeterPrice:
        return MeterPrice(GraduatedPrice((Tier(D(100), D("0.02"), D(fee)), Tier(None, D("0.01")))))

    mid = NOV_2026_MS + LENGTH // 2
    return Plan(
        "p",
        "USD",
        (
            PlanVersion("v1", 0, {"storage_gb": graduated("5")}),
            PlanVersion("v2", mid, {"storage_gb": graduated("7")}),
        ),
    )


def test_usage_only_after_a_version_change_still_owes_the_opening_fee_once() -> None:
    # The windows after v2 took effect were rated without v2's fee (segment_cost).
    usage = [segment("storage_gb", "0.20", "10", version="v2")]

    bill = invoice(
        "acme",
        _versioned_tiered_plan(),
        NOVEMBER,
        usage=usage,
        aggregations={"storage_gb": Aggregation.SUM},
    )

    # The fee is the opening version's (v1, 5.00), once; v2's 7.00 is not charged.
    assert lines_of(bill) == [
        ("usage", "storage_gb", "v2", "0.20"),
        ("usage", "storage_gb", "v1", "5.00"),
    ]
    assert bill.total == D("5.20")


_LAGO_EVENTS = [  # 400, 200, 100, 50: the free $500 runs out in the second (3.30)
    PricedEvent(NOV_2026_MS + 1, "s\x00a", D(400)),
    PricedEvent(NOV_2026_MS + 2, "s\x00b", D(200)),
    PricedEvent(NOV_2026_MS + 3, "s\x00c", D(100)),
    PricedEvent(DEC_2026_MS - 1, "s\x00d", D(50)),
]


@pytest.mark.parametrize(
    ("now_ms", "final", "provisional"),
    [(DEC_2026_MS, D("3.30"), D(0)), (DEC_2026_MS - 1, D(0), D("3.30"))],
    ids=["closed period", "open period"],
)
def test_estimate_prices_per_event_meters_as_the_invoice_does(
    now_ms: int, final: Decimal, provisional: Decimal
) -> None:
    # Closed windows streamed 1.2% of their sum (700 x 1.2% = 8.40), provisionally;
    # the live counter likewise.
    windows = [SegmentUsage("payments", "v1", "p", "USD", D(700), D("8.40"))]
    events = {"payments": _LAGO_EVENTS}
    plan = _tiered_and_per_event_plan()
    aggregations = {"payments": Aggregation.SUM}

    report = estimate(
        "acme",
        plan,
        NOVEMBER,
        now_ms=now_ms,
        final=windows,
        live={"payments": live("payments", "9.00", "750")},
        aggregations=aggregations,
        events=events,
    )
    bill = invoice("acme", plan, NOVEMBER, usage=windows, aggregations=aggregations, events=events)

    payments = next(m for m in report.meters if m.meter == "payments")
    line = next(line for line in bill.lines if line.meter == "payments")
    assert (payments.quantity, payments.final, payments.provisional) == (D(750), final, provisional)
    assert payments.priced_from is PricedFrom.EVENTS
    assert (line.quantity, line.amount) == (payments.quantity, payments.total)


def test_an_open_invoice_takes_per_event_quantity_and_amount_from_the_same_events() -> None:
    # Only the window holding the first event has closed; all four events are accepted.
    windows = [SegmentUsage("payments", "v1", "p", "USD", D(400), D("4.80"))]

    bill = invoice(
        "acme",
        _tiered_and_per_event_plan(),
        NOVEMBER,
        usage=windows,
        aggregations={"payments": Aggregation.SUM},
        events={"payments": _LAGO_EVENTS},
    )

    line = next(line for line in bill.lines if line.meter == "payments")
    assert (line.quantity, line.amount, line.priced_from) == (D(750), D("3.30"), PricedFrom.EVENTS)
    storage = next(line for line in bill.lines if line.meter == "storage_gb")
    assert storage.priced_from is PricedFrom.CATALOG


def test_events_of_a_version_with_no_closed_window_still_make_a_line() -> None:
    bill = invoice(
        "acme",
        _tiered_and_per_event_plan(),
        NOVEMBER,
        usage=[],
        aggregations={"payments": Aggregation.SUM},
        events={"payments": _LAGO_EVENTS},
    )

    line = next(line for line in bill.lines if line.meter == "payments")
    assert (line.quantity, line.amount) == (D(750), D("3.30"))
