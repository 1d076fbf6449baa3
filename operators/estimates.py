"""Spend estimates and dry-run invoices for one tenant's billing period.

Two inputs, read by the sinks: the usage of the period's closed windows per
meter and price version (``SegmentUsage``, from ClickHouse; a window's amount
is the change it made to its period's cost, so a segment's window amounts add
up to the exact cost of its usage), and the live counters the flow keeps per
meter and period (``LiveReading``, from Redis, updated as events are accepted).

Rounding policy:

* Amounts keep full precision per window and per period: window amounts are
  stored with 21 decimal places and a segment's amount is their exact sum.
  Estimates are shown at full precision.
* The invoice rounds once, at the line: each line's amount is rounded half-even
  (banker's rounding) to the currency's minor unit (``round_to_minor``: cents,
  whole yen, fils), and the total is the sum of the rounded lines, so the lines
  always add up to the total.
* True-ups top up rounded lines: a meter's minimum line is round(minimum) minus
  the meter's rounded usage lines, the commitment line round(commitment) minus
  the rounded subtotal. A meter that falls short costs exactly its (rounded)
  minimum, an invoice that falls short totals exactly its commitment.
* The projection is a quotient: it is rounded half-even to 21 decimal places,
  the precision of stored amounts. Every other number is exact.

Plan-level terms (fixed fee, minimum commitment, per-meter minimums) come from
the plan version in force at the period's start, or, for a plan that starts
during the period, its first version; so does a meter's zero-usage fee, due
once a period. Usage lines keep the version each window (or, for per-event
prices, each event) was rated with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from config.meters import Aggregation
from config.pricing import PercentagePrice, Plan, PlanVersion
from operators.money import EXACT, ZERO, exact_sum
from operators.periods import billing_period
from operators.pricing import (
    PricedEvent,
    meter_price,
    opening_version,
    period_cost,
    round_to_minor,
    segment_events_cost,
)
from operators.timeparse import TimeFormatError, parse_rfc3339_ms

# Window quantities of these meters add up to the period's usage; a period's
# MAX, LATEST or UNIQUE_COUNT cannot be rebuilt from window values.
ADDITIVE = frozenset({Aggregation.SUM, Aggregation.COUNT})
# Before this percentage of the period has passed, usage says too little to extrapolate.
MIN_ELAPSED_PERCENT = 1
AMOUNT_PLACES = 21

_MONTH = re.compile(r"(\d{4})-(\d{2})", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 9999-01-01: a later instant's period would end in year 10000, which datetime cannot hold.
_MAX_INSTANT_MS = 253_370_764_800_000
# Room for any amount the columns hold times a period length in ms, then the quotient.
_PROJECTION = Context(prec=120, rounding=ROUND_HALF_EVEN)
_AMOUNT_QUANTUM = Decimal(1).scaleb(-AMOUNT_PLACES)
_PERIOD_EXAMPLE = "write a month such as 2026-11 or an instant such as 2026-11-15T12:00:00Z"


class PeriodError(ValueError):
    """A period that cannot be resolved; the message says what to write instead."""


class CurrencyMismatchError(ValueError):
    """Usage in a currency other than the plan's: amounts in two currencies never add up."""


@dataclass(frozen=True, slots=True)
class SegmentUsage:
    """Closed-window usage of one meter under one plan and price version in a period.

    ``quantity`` and ``amount`` are sums over the windows' latest revisions; the
    quantity is the period's usage only for additive (SUM, COUNT) meters.
    """

    meter: str
    price_version: str
    plan_id: str
    currency: str
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class LiveReading:
    """A live counter as read back: one meter's usage and cost so far in a period, exact."""

    meter: str
    quantity: Decimal
    amount: Decimal
    currency: str
    period_start_ms: int
    period_end_ms: int
    updated_ms: int


class PricedFrom(StrEnum):
    """Where an amount comes from."""

    WINDOWS = "windows"  # rated windows that closed (estimates: plus the live counter)
    EVENTS = "events"  # the event log, every accepted event priced exactly (per-event prices)
    CATALOG = "catalog"  # a zero-usage fee or a plan-level term, from the pricing catalog


class LiveState(StrEnum):
    """How the live counter of a meter compares with its closed windows."""

    CURRENT = "current"  # at or ahead of the closed windows
    LAGGING = "lagging"  # behind them: provisional is 0 until it catches up
    MISSING = "missing"  # no counter for this meter and period


@dataclass(frozen=True, slots=True)
class MeterEstimate:
    """One meter's spend in the period so far, and where it is heading.

    ``final`` is what closed windows charged, ``provisional`` what the live
    counter adds on top (never negative), ``total`` their sum and ``projection``
    the total extrapolated linearly to the end of the period. ``quantity`` is
    None when neither source knows the period's usage (a non-additive meter
    without a live counter). A meter priced per event (``priced_from`` EVENTS)
    is priced from the events accepted so far, as its invoice line is: final
    once the period has ended, provisional until then (a late event can move
    its free units); its live counter only sets ``live``.
    """

    meter: str
    currency: str
    quantity: Decimal | None
    final: Decimal
    provisional: Decimal
    total: Decimal
    projection: Decimal
    live: LiveState
    priced_from: PricedFrom = PricedFrom.WINDOWS


@dataclass(frozen=True, slots=True)
class Estimate:
    """A tenant's usage spend for one period as of ``now_ms``, before invoice-level rules."""

    tenant: str
    plan_id: str
    currency: str
    period_start_ms: int
    period_end_ms: int
    now_ms: int
    meters: tuple[MeterEstimate, ...]

    @property
    def total(self) -> Decimal:
        """Usage amount so far, over all meters."""
        return _sum(m.total for m in self.meters)

    @property
    def projection(self) -> Decimal:
        """Projected usage amount at the end of the period, over all meters."""
        return _sum(m.projection for m in self.meters)

    @property
    def elapsed_fraction(self) -> Decimal:
        """Share of the period passed at ``now_ms`` (0 to 1), to 6 places, for display."""
        length = self.period_end_ms - self.period_start_ms
        elapsed = min(max(self.now_ms - self.period_start_ms, 0), length)
        return _PROJECTION.divide(Decimal(elapsed), Decimal(length)).quantize(Decimal("1e-6"))


class LineKind(StrEnum):
    """What an invoice line charges for."""

    USAGE = "usage"
    MINIMUM = "minimum"
    FIXED_FEE = "fixed_fee"
    COMMITMENT = "minimum_commitment"


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line: ``amount`` at full precision, ``rounded`` to the currency's minor unit.

    ``meter`` is None for plan-level lines; ``quantity`` is set on usage lines of
    additive meters only. A usage line's quantity and amount come from the same
    source: closed windows, or (per-event prices) every event accepted so far.
    """

    kind: LineKind
    meter: str | None
    plan_id: str
    price_version: str
    quantity: Decimal | None
    amount: Decimal
    rounded: Decimal
    priced_from: PricedFrom = PricedFrom.CATALOG


@dataclass(frozen=True, slots=True)
class Invoice:
    """A dry-run invoice; ``price_version`` is the version whose plan-level terms apply."""

    tenant: str
    plan_id: str
    currency: str
    period_start_ms: int
    period_end_ms: int
    price_version: str | None
    lines: tuple[InvoiceLine, ...]

    @property
    def total(self) -> Decimal:
        """The sum of the rounded lines."""
        return _sum(line.rounded for line in self.lines)


def resolve_period(
    text: str | None, anchor_day: int, timezone: str, now_ms: int
) -> tuple[int, int]:
    """(start_ms, end_ms) of the billing period named by ``text``.

    ``YYYY-MM`` is the period that starts in that month (on the anchor day, in
    the subscription's time zone); an RFC 3339 instant names the period that
    holds it; None the period that holds ``now_ms``.
    """
    if text is None:
        return billing_period(now_ms, anchor_day, timezone)
    month = _MONTH.fullmatch(text)
    if month is not None:
        year, number = int(month[1]), int(month[2])
        # The period must end before year 10000, which datetime cannot represent.
        if not (1 <= number <= 12 and 1970 <= year <= 9998):
            raise PeriodError(f"{text!r} is not a month from 1970-01 to 9998-12; {_PERIOD_EXAMPLE}")
        start = datetime(year, number, anchor_day, tzinfo=ZoneInfo(timezone))
        return billing_period((start - _EPOCH) // timedelta(milliseconds=1), anchor_day, timezone)
    try:
        at_ms = parse_rfc3339_ms(text)
    except TimeFormatError as exc:
        raise PeriodError(f"{exc}; {_PERIOD_EXAMPLE}") from None
    if not 0 <= at_ms < _MAX_INSTANT_MS:
        raise PeriodError(f"{text!r} is outside 1970 to 9998; {_PERIOD_EXAMPLE}")
    return billing_period(at_ms, anchor_day, timezone)


def estimate(
    tenant: str,
    plan: Plan,
    period: tuple[int, int],
    *,
    now_ms: int,
    final: Iterable[SegmentUsage],
    live: Mapping[str, LiveReading],
    aggregations: Mapping[str, Aggregation],
    events: Mapping[str, Sequence[PricedEvent]] | None = None,
) -> Estimate:
    """Per-meter final, provisional, total and projected spend of ``period`` at ``now_ms``.

    ``events`` are the period's events of the meters priced per event (see
    ``usage_segments``): those meters are priced exactly as the invoice prices
    them. Raises CurrencyMismatchError for usage or counters not in the plan's
    currency.
    """
    start_ms, end_ms = period
    ended = now_ms >= end_ms
    amounts: dict[str, Decimal] = {}
    from_events: dict[str, Decimal] = {}
    quantities: dict[str, Decimal] = {}
    segments = usage_segments(plan, start_ms, final, events or {})
    for segment, source in segments:
        if source is PricedFrom.EVENTS:
            from_events[segment.meter] = exact_sum(
                from_events.get(segment.meter, ZERO), segment.amount
            )
        else:
            amounts[segment.meter] = exact_sum(amounts.get(segment.meter, ZERO), segment.amount)
        quantities[segment.meter] = exact_sum(quantities.get(segment.meter, ZERO), segment.quantity)
    # The zero-usage fee is due whatever happens: final, and not extrapolated.
    opening = invoice_version(plan, start_ms, end_ms)
    fees = zero_usage_fees(plan, opening, [segment for segment, _ in segments])
    meters = []
    for meter in sorted(amounts.keys() | from_events.keys() | live.keys() | fees.keys()):
        counter = live.get(meter)
        if counter is not None:
            _check_currency(plan, counter.currency, f"the live counter of {meter!r}")
        fee = fees.get(meter, ZERO)
        final_amount = exact_sum(amounts.get(meter, ZERO), fee)
        summed = quantities.get(meter) if aggregations.get(meter) in ADDITIVE else None
        source = PricedFrom.WINDOWS
        if meter in from_events:
            source, priced, quantity = PricedFrom.EVENTS, from_events[meter], summed
            state = LiveState.MISSING if counter is None else LiveState.CURRENT
            provisional = ZERO if ended else priced
            if ended:
                final_amount = exact_sum(final_amount, priced)
        elif counter is None:
            state, provisional = LiveState.MISSING, ZERO
            quantity = summed if meter in quantities else ZERO
        else:
            ahead = EXACT.subtract(counter.amount, final_amount)
            if ahead < 0:
                # The counter has not caught up with windows that already closed.
                state, provisional = LiveState.LAGGING, ZERO
                quantity = counter.quantity if summed is None else max(summed, counter.quantity)
            else:
                state, provisional, quantity = LiveState.CURRENT, ahead, counter.quantity
        total = exact_sum(final_amount, provisional)
        usage = EXACT.subtract(total, fee)
        meters.append(
            MeterEstimate(
                meter=meter,
                currency=plan.currency,
                quantity=quantity,
                final=final_amount,
                provisional=provisional,
                total=total,
                projection=exact_sum(project(usage, start_ms, end_ms, now_ms), fee),
                live=state,
                priced_from=source,
            )
        )
    return Estimate(tenant, plan.id, plan.currency, start_ms, end_ms, now_ms, tuple(meters))


def project(total: Decimal, start_ms: int, end_ms: int, now_ms: int) -> Decimal:
    """``total`` / elapsed share of [start, end) at ``now_ms``, linear.

    Before 1% of the period has passed (and before it starts) the projection is
    the total itself; at or after its end the share is 1.
    """
    length = end_ms - start_ms
    elapsed = min(now_ms - start_ms, length)
    if elapsed * 100 < length * MIN_ELAPSED_PERCENT:
        return total
    scaled = EXACT.multiply(total, Decimal(length))
    return _PROJECTION.divide(scaled, Decimal(elapsed)).quantize(
        _AMOUNT_QUANTUM, context=_PROJECTION
    )


def invoice_version(plan: Plan, start_ms: int, end_ms: int) -> PlanVersion | None:
    """The version whose plan-level terms apply to [start, end): in force at the start,
    else the first that takes effect during the period, else None."""
    version = opening_version(plan, start_ms)
    return version if version is not None and version.effective_from_ms < end_ms else None


def usage_segments(
    plan: Plan,
    period_start_ms: int,
    windows: Iterable[SegmentUsage],
    events: Mapping[str, Sequence[PricedEvent]],
) -> list[tuple[SegmentUsage, PricedFrom]]:
    """A period's usage per meter and price version, and where each segment comes from.

    The one place invoices and estimates take usage from. Closed windows give
    every segment, except those of a meter in ``events`` under a version that
    prices it per event: those are priced exactly from the meter's events (every
    event accepted so far, each under the version in force at its time, a
    repeated key once), quantity and amount alike. Raises CurrencyMismatchError
    for windows not in the plan's currency.
    """
    found: list[tuple[SegmentUsage, PricedFrom]] = []
    for segment in windows:
        _check_currency(plan, segment.currency, f"meter {segment.meter!r}")
        version = plan.version_named(segment.price_version)
        if (
            segment.plan_id == plan.id
            and segment.meter in events
            and _per_event(version, segment.meter)
        ):
            continue
        found.append((segment, PricedFrom.WINDOWS))
    for meter, meter_events in sorted(events.items()):
        by_version: dict[str, list[PricedEvent]] = {}
        for event in {event.key: event for event in meter_events}.values():
            version = plan.version_at(event.time_ms)
            if version is not None and _per_event(version, meter):
                by_version.setdefault(version.version, []).append(event)
        for name, mine in by_version.items():
            version = plan.version_named(name)
            amount = segment_events_cost(plan, version, meter, mine, period_start_ms)
            quantity = _sum(event.value for event in mine)
            segment = SegmentUsage(meter, name, plan.id, plan.currency, quantity, amount)
            found.append((segment, PricedFrom.EVENTS))
    return found


def zero_usage_fees(
    plan: Plan, version: PlanVersion | None, segments: Iterable[SegmentUsage]
) -> dict[str, Decimal]:
    """Zero-usage fees due for meters without usage under ``version``, the opening one.

    The fee (a first tier's flat price) is due once a period, under the version
    whose plan-level terms apply (``invoice_version``); a segment under that
    version already carries it, a later version's segments never do.
    """
    if version is None:
        return {}
    used = {s.meter for s in segments if (s.plan_id, s.price_version) == (plan.id, version.version)}
    fees = {meter: period_cost(price, ZERO) for meter, price in version.prices.items()}
    return {meter: fee for meter, fee in sorted(fees.items()) if fee and meter not in used}


def invoice(
    tenant: str,
    plan: Plan,
    period: tuple[int, int],
    *,
    usage: Iterable[SegmentUsage],
    aggregations: Mapping[str, Aggregation],
    events: Mapping[str, Sequence[PricedEvent]] | None = None,
) -> Invoice:
    """The dry-run invoice of ``period`` for ``tenant`` on ``plan`` (see ``invoice_lines``)."""
    start_ms, end_ms = period
    version = invoice_version(plan, start_ms, end_ms)
    return Invoice(
        tenant=tenant,
        plan_id=plan.id,
        currency=plan.currency,
        period_start_ms=start_ms,
        period_end_ms=end_ms,
        price_version=None if version is None else version.version,
        lines=tuple(
            invoice_lines(
                plan, version, usage, aggregations, events or {}, period_start_ms=start_ms
            )
        ),
    )


def invoice_lines(
    plan: Plan,
    version: PlanVersion | None,
    usage: Iterable[SegmentUsage],
    aggregations: Mapping[str, Aggregation],
    events: Mapping[str, Sequence[PricedEvent]],
    *,
    period_start_ms: int,
) -> list[InvoiceLine]:
    """Invoice lines, in order, each rounded to the plan currency's minor unit.

    1. usage: one line per meter, plan and price version (``usage_segments``:
       closed windows, or for per-event prices every event in ``events``); then,
       for every meter ``version`` prices that has no usage line under it, what
       zero usage costs (a first tier's flat price) when that is not zero;
    2. minimum: per meter whose ``version`` price has a minimum above the meter's
       rounded usage lines (meters without usage included), the difference;
    3. fixed fee of ``version``, when it is not zero;
    4. minimum commitment of ``version``, when the rounded subtotal is below it,
       the difference.

    Raises CurrencyMismatchError for usage not in the plan's currency.
    """
    currency = plan.currency
    order = {v.version: index for index, v in enumerate(plan.versions)}
    segments: dict[tuple[str, str, str], tuple[Decimal, Decimal, PricedFrom]] = {}
    for segment, source in usage_segments(plan, period_start_ms, usage, events):
        key = (segment.meter, segment.plan_id, segment.price_version)
        quantity, amount, _ = segments.get(key, (ZERO, ZERO, source))
        segments[key] = (
            exact_sum(quantity, segment.quantity),
            exact_sum(amount, segment.amount),
            source,
        )
    lines: list[InvoiceLine] = []
    for (meter, plan_id, price_version), (quantity, amount, source) in sorted(
        segments.items(), key=lambda item: (item[0][0], order.get(item[0][2], -1), item[0])
    ):
        lines.append(
            InvoiceLine(
                kind=LineKind.USAGE,
                meter=meter,
                plan_id=plan_id,
                price_version=price_version,
                quantity=quantity if aggregations.get(meter) in ADDITIVE else None,
                amount=amount,
                rounded=round_to_minor(amount, currency),
                priced_from=source,
            )
        )
    if version is None:
        return lines
    used = [
        SegmentUsage(meter, price_version, plan_id, currency, ZERO, ZERO)
        for meter, plan_id, price_version in segments
    ]
    for meter, zero in zero_usage_fees(plan, version, used).items():
        # A subscribed meter without usage under this version still owes its zero-usage fee.
        lines.append(_plan_line(LineKind.USAGE, meter, plan, version, zero, quantity=ZERO))
    for meter, price in sorted(version.prices.items()):
        if price.minimum is None:
            continue
        charged = _sum(line.rounded for line in lines if line.meter == meter)
        shortfall = EXACT.subtract(round_to_minor(price.minimum, currency), charged)
        if shortfall > 0:
            lines.append(_plan_line(LineKind.MINIMUM, meter, plan, version, shortfall))
    if version.fixed_fee:
        lines.append(_plan_line(LineKind.FIXED_FEE, None, plan, version, version.fixed_fee))
    if version.minimum_commitment is not None:
        subtotal = _sum(line.rounded for line in lines)
        shortfall = EXACT.subtract(round_to_minor(version.minimum_commitment, currency), subtotal)
        if shortfall > 0:
            lines.append(_plan_line(LineKind.COMMITMENT, None, plan, version, shortfall))
    return lines


def _per_event(version: PlanVersion | None, meter: str) -> bool:
    price = meter_price(version, meter)
    return price is not None and isinstance(price.model, PercentagePrice) and price.model.per_event


def _plan_line(
    kind: LineKind,
    meter: str | None,
    plan: Plan,
    version: PlanVersion,
    amount: Decimal,
    *,
    quantity: Decimal | None = None,
) -> InvoiceLine:
    return InvoiceLine(
        kind=kind,
        meter=meter,
        plan_id=plan.id,
        price_version=version.version,
        quantity=quantity,
        amount=amount,
        rounded=round_to_minor(amount, plan.currency),
    )


def _check_currency(plan: Plan, currency: str, what: str) -> None:
    if currency != plan.currency:
        raise CurrencyMismatchError(
            f"{what} is billed in {currency}, but plan {plan.id!r} is in {plan.currency}; "
            "amounts in different currencies cannot be added"
        )


def _sum(values: Iterable[Decimal]) -> Decimal:
    total = ZERO
    for value in values:
        total = exact_sum(total, value)
    return total
