"""What a meter's usage over a billing period costs, exactly, under each price model.

Every sum and product goes through ``operators.money.EXACT``: a cost that
cannot be represented exactly raises instead of being rounded. Rounding to a
currency's minor unit is a separate, explicit step (``round_to_minor``) for
the invoice, never applied to stored amounts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, Overflow
from functools import partial
from typing import NamedTuple, assert_never

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
from operators.money import EXACT, ZERO, exact_product, exact_sum

_HUNDRED = Decimal(100)
_ONE = Decimal(1)

# ISO 4217 minor units of the currencies that do not use cents; every other code has 2.
# fmt: off
_MINOR_UNITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}
# fmt: on
# Rounding to the minor unit is deliberate, so only impossible results are trapped here.
_ROUNDING = Context(prec=76, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow])


class PricedEvent(NamedTuple):
    """One event of a per-event price: its time, idempotency key and value."""

    time_ms: int
    key: str
    value: Decimal


def period_cost(price: MeterPrice, quantity: Decimal) -> Decimal:
    """Cost of ``quantity`` units used in one billing period, before any ``minimum``.

    The first ``free_allowance`` units are free; the rest are priced by the
    model, less ``discount_percent``, and the result is capped at ``maximum``
    when one is set. The ``minimum`` is an invoice rule (usage is raised to it),
    not part of this cost. For a per-event percentage price this prices the sum
    as one amount: provisional, ``events_cost`` is the exact cost.
    """
    billable = max(ZERO, EXACT.subtract(quantity, price.free_allowance))
    return _finish(price, model_cost(price.model, billable))


def events_cost(price: MeterPrice, events: Iterable[PricedEvent]) -> Decimal:
    """Exact cost of a period's events under a per-event percentage ``price``.

    Events are taken in the order (time, idempotency key), whatever order they
    come in, and an event repeated (same key) counts once, so replays, late
    events and worker counts give the same amount. Prices without per-event terms price the
    events' sum (``period_cost``).
    """
    unique = sorted({event.key: event for event in events}.values(), key=_event_order)
    model = price.model
    if not (isinstance(model, PercentagePrice) and model.per_event):
        total = ZERO
        for event in unique:
            total = exact_sum(total, event.value)
        return period_cost(price, total)
    return _finish(price, _per_event(model, [event.value for event in unique]))


def _event_order(event: PricedEvent) -> tuple[int, str]:
    return event.time_ms, event.key


def _finish(price: MeterPrice, cost: Decimal) -> Decimal:
    """The model's cost less the discount, then capped."""
    if price.discount_percent:
        kept = EXACT.divide(EXACT.subtract(_HUNDRED, price.discount_percent), _HUNDRED)
        cost = exact_product(cost, kept)
    return cost if price.maximum is None else min(cost, price.maximum)


def _per_event(model: PercentagePrice, values: list[Decimal]) -> Decimal:
    """Lago's percentage model, event by event in the order given.

    Free units last while both hold: the event is one of the first
    ``free_events`` and the rest of ``free_amount`` covers it whole; such an
    event costs nothing. The first event that breaks either ends them: it pays
    the rate on what the free amount did not cover, and it and every later event
    pay the fixed fee; each of their fees is kept within ``min_fee`` and ``max_fee``.
    """
    unit = EXACT.divide(model.rate_percent, _HUNDRED)
    free_left = model.free_amount
    free = model.free_events != 0 and free_left != 0
    free = free and (model.free_events is not None or free_left is not None)
    total = ZERO
    for index, value in enumerate(values):
        charged = value
        if model.free_events is not None and index >= model.free_events:
            free = False
        if free:
            if free_left is None:
                continue
            if value <= free_left:
                free_left = EXACT.subtract(free_left, value)
                free = bool(free_left)
                continue
            # The free amount runs out inside this event: the rest of it is charged.
            charged = EXACT.subtract(value, free_left)
            free = False
        fee = exact_sum(exact_product(charged, unit), model.fixed_fee)
        if model.min_fee is not None:
            fee = max(fee, model.min_fee)
        if model.max_fee is not None:
            fee = min(fee, model.max_fee)
        total = exact_sum(total, fee)
    return total


def meter_price(version: PlanVersion | None, meter: str) -> MeterPrice | None:
    """``meter``'s price in ``version``; None before a plan's first version or when unpriced."""
    return None if version is None else version.prices.get(meter)


def opening_version(plan: Plan, period_start_ms: int) -> PlanVersion | None:
    """The version whose once-a-period terms apply to the period starting at ``period_start_ms``.

    The one in force at the start, else (a plan that starts during the period)
    the plan's first; None for a plan without versions.
    """
    return plan.version_at(period_start_ms) or next(iter(plan.versions), None)


def segment_cost(
    plan: Plan, version: PlanVersion | None, meter: str, quantity: Decimal, period_start_ms: int
) -> Decimal:
    """What ``quantity`` of ``meter`` used under ``version`` costs in one period's segment.

    The one lookup plan version -> meter price -> cost that rating, live usage,
    reconciliation and invoices share; 0 when unpriced. A version that takes
    effect mid-period prices its windows as a period of their own, but the
    zero-usage fee (a first tier's flat price) is due once a period, under the
    opening version (``opening_version``): a later version's segment is charged
    its cost less its own zero-usage fee.
    """
    price = meter_price(version, meter)
    if price is None:
        return ZERO
    return _segment(plan, version, price, period_cost(price, quantity), period_start_ms)


def segment_pricer(
    plan: Plan, version: PlanVersion | None, meter: str, period_start_ms: int
) -> Callable[[Decimal], Decimal]:
    """``segment_cost`` of one segment as a function of the quantity alone.

    The same arithmetic, step for step, with the lookups (meter price, opening
    version, zero-usage fee) done once: rating and live usage price the same
    segment again for every revision and counter.
    """
    price = meter_price(version, meter)
    if price is None:
        return _nothing
    cost = _period_pricer(price)
    opening = opening_version(plan, period_start_ms)
    if version is None or opening is None or version.version == opening.version:
        return cost
    zero_fee = period_cost(price, ZERO)
    return lambda quantity: EXACT.subtract(cost(quantity), zero_fee)


def _nothing(quantity: Decimal) -> Decimal:
    return ZERO


def _period_pricer(price: MeterPrice) -> Callable[[Decimal], Decimal]:
    """``period_cost`` of ``price``, with the model's dispatch done once."""
    free, subtract, model = price.free_allowance, EXACT.subtract, _model_pricer(price.model)
    if price.discount_percent or price.maximum is not None:
        return lambda quantity: _finish(price, model(max(ZERO, subtract(quantity, free))))
    return lambda quantity: model(max(ZERO, subtract(quantity, free)))


def _model_pricer(model: PriceModel) -> Callable[[Decimal], Decimal]:
    """``model_cost`` of ``model`` for quantities >= 0 (what ``_period_pricer`` passes)."""
    match model:
        case UnitPrice(unit_price=unit_price):
            multiply = EXACT.multiply
            return lambda quantity: multiply(quantity, unit_price)
        case GraduatedPrice(tiers=tiers):
            return partial(_graduated, tiers)
        case VolumePrice(tiers=tiers):
            return partial(_volume, tiers)
        case _:
            return partial(model_cost, model)


def segment_events_cost(
    plan: Plan,
    version: PlanVersion | None,
    meter: str,
    events: Iterable[PricedEvent],
    period_start_ms: int,
) -> Decimal:
    """``segment_cost`` of a segment's events, priced exactly (``events_cost``)."""
    price = meter_price(version, meter)
    if price is None:
        return ZERO
    return _segment(plan, version, price, events_cost(price, events), period_start_ms)


def _segment(
    plan: Plan, version: PlanVersion | None, price: MeterPrice, cost: Decimal, start_ms: int
) -> Decimal:
    opening = opening_version(plan, start_ms)
    if version is None or opening is None or version.version == opening.version:
        return cost
    return EXACT.subtract(cost, period_cost(price, ZERO))


def model_cost(model: PriceModel, quantity: Decimal) -> Decimal:
    """Cost of ``quantity`` (>= 0) units under ``model`` alone, exactly.

    - per_unit: quantity x unit_price.
    - package: every started package (every complete one with round_down) costs
      package_price; 0 units cost nothing.
    - graduated: each tier prices the units that fall in it, plus its flat_price
      once any unit reaches it; the first tier's flat_price is due at zero
      usage too (as Lago and OpenMeter charge it). Non-decreasing in quantity.
    - volume: the tier the whole quantity falls in prices every unit, plus its
      flat_price; zero usage falls in the first tier. Not monotonic: crossing
      into a cheaper tier can lower the cost (1,000 units at 0.10 cost more
      than 1,001 at 0.08).
    - Both tier models: usage beyond a bounded last tier is priced by that tier.
    - percentage: (quantity - free_amount) x rate_percent / 100 (division by 100
      is exact in decimal); the per-event terms need the events (``events_cost``).
    """
    if quantity < 0:
        raise ValueError(f"quantity {quantity} is negative")
    match model:
        case UnitPrice(unit_price=unit_price):
            return exact_product(quantity, unit_price)
        case PackagePrice(package_size=size, package_price=package_price, round_down=down):
            return exact_product(_packages(quantity, size, down=down), package_price)
        case GraduatedPrice(tiers=tiers):
            return _graduated(tiers, quantity)
        case VolumePrice(tiers=tiers):
            return _volume(tiers, quantity)
        case PercentagePrice(rate_percent=rate, free_amount=free):
            billable = quantity if free is None else max(ZERO, EXACT.subtract(quantity, free))
            return EXACT.divide(exact_product(billable, rate), _HUNDRED)
        case _:
            assert_never(model)


def minor_units(currency: str) -> int:
    """Digits after the decimal point of ``currency``'s smallest unit (ISO 4217; 2 if unlisted)."""
    return _MINOR_UNITS.get(currency, 2)


def round_to_minor(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half-even to the minor unit of ``currency`` (e.g. cents)."""
    return amount.quantize(_ONE.scaleb(-minor_units(currency)), context=_ROUNDING)


def _packages(quantity: Decimal, size: Decimal, *, down: bool) -> Decimal:
    """ceiling(quantity / size), or floor with ``down``, by exact integer division (no float)."""
    whole, rest = EXACT.divmod(quantity, size)
    return exact_sum(whole, _ONE) if rest and not down else whole


def _graduated(tiers: tuple[Tier, ...], quantity: Decimal) -> Decimal:
    cost = ZERO
    lower = ZERO
    last = len(tiers) - 1
    for index, tier in enumerate(tiers):
        if index and quantity <= lower:
            # No unit reaches this tier, so neither its units nor its flat price count.
            return cost
        upper = quantity if tier.up_to is None or index == last else min(quantity, tier.up_to)
        units = EXACT.subtract(upper, lower)
        cost = exact_sum(cost, exact_sum(exact_product(units, tier.unit_price), tier.flat_price))
        if tier.up_to is None or index == last:
            return cost
        lower = tier.up_to
    return cost


def _volume(tiers: tuple[Tier, ...], quantity: Decimal) -> Decimal:
    # The first tier that holds the quantity, else the last (it goes on beyond its bound).
    tier = next((t for t in tiers if t.up_to is None or quantity <= t.up_to), tiers[-1])
    return exact_sum(exact_product(quantity, tier.unit_price), tier.flat_price)
