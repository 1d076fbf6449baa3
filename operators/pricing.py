"""What a meter's usage over a billing period costs, exactly, under each price model.

Every sum and product goes through ``operators.money.EXACT``: a cost that
cannot be represented exactly raises instead of being rounded. Rounding to a
currency's minor unit is a separate, explicit step (``round_to_minor``) for
the invoice, never applied to stored amounts.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, Overflow
from typing import assert_never

from config.pricing import (
    GraduatedPrice,
    MeterPrice,
    PackagePrice,
    PercentagePrice,
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


def period_cost(price: MeterPrice, quantity: Decimal) -> Decimal:
    """Cost of ``quantity`` units used in one billing period, before any ``minimum``.

    The first ``free_allowance`` units are free; the rest are priced by the
    model, and the result is capped at ``maximum`` when one is set. The
    ``minimum`` is an invoice rule (usage is raised to it), not part of this cost.
    """
    billable = max(ZERO, EXACT.subtract(quantity, price.free_allowance))
    cost = model_cost(price.model, billable)
    return cost if price.maximum is None else min(cost, price.maximum)


def meter_price(version: PlanVersion | None, meter: str) -> MeterPrice | None:
    """``meter``'s price in ``version``; None before a plan's first version or when unpriced."""
    return None if version is None else version.prices.get(meter)


def version_cost(version: PlanVersion | None, meter: str, quantity: Decimal) -> Decimal:
    """What a period's ``quantity`` of ``meter`` costs under ``version``; 0 when unpriced.

    The one lookup plan version -> meter price -> period cost that rating, live
    usage and reconciliation share.
    """
    price = meter_price(version, meter)
    return ZERO if price is None else period_cost(price, quantity)


def model_cost(model: PriceModel, quantity: Decimal) -> Decimal:
    """Cost of ``quantity`` (>= 0) units under ``model`` alone, exactly.

    - per_unit: quantity x unit_price.
    - package: every started package costs package_price; 0 units cost nothing.
    - graduated: each tier prices the units that fall in it, plus its flat_price
      once any unit reaches it. Non-decreasing in quantity.
    - volume: the tier the whole quantity falls in prices every unit, plus its
      flat_price. Not monotonic: crossing into a cheaper tier can lower the cost
      (1,000 units at 0.10 cost more than 1,001 at 0.08).
    - percentage: quantity x rate_percent / 100 (division by 100 is exact in decimal).
    """
    if quantity < 0:
        raise ValueError(f"quantity {quantity} is negative")
    match model:
        case UnitPrice(unit_price=unit_price):
            return exact_product(quantity, unit_price)
        case PackagePrice(package_size=size, package_price=package_price):
            return exact_product(_packages(quantity, size), package_price)
        case GraduatedPrice(tiers=tiers):
            return _graduated(tiers, quantity)
        case VolumePrice(tiers=tiers):
            return _volume(tiers, quantity)
        case PercentagePrice(rate_percent=rate):
            return EXACT.divide(exact_product(quantity, rate), _HUNDRED)
        case _:
            assert_never(model)


def minor_units(currency: str) -> int:
    """Digits after the decimal point of ``currency``'s smallest unit (ISO 4217; 2 if unlisted)."""
    return _MINOR_UNITS.get(currency, 2)


def round_to_minor(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half-even to the minor unit of ``currency`` (e.g. cents)."""
    return amount.quantize(_ONE.scaleb(-minor_units(currency)), context=_ROUNDING)


def _packages(quantity: Decimal, size: Decimal) -> Decimal:
    """Started packages: ceiling(quantity / size), by exact integer division (no float)."""
    whole, rest = EXACT.divmod(quantity, size)
    return exact_sum(whole, _ONE) if rest else whole


def _graduated(tiers: tuple[Tier, ...], quantity: Decimal) -> Decimal:
    cost = ZERO
    lower = ZERO
    for tier in tiers:
        if quantity <= lower:
            # No unit reaches this tier, so neither its units nor its flat price count.
            return cost
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        units = EXACT.subtract(upper, lower)
        cost = exact_sum(cost, exact_sum(exact_product(units, tier.unit_price), tier.flat_price))
        if tier.up_to is None:
            return cost
        lower = tier.up_to
    if quantity > lower:
        raise ValueError(f"quantity {quantity} is above the last tier (up to {lower})")
    return cost


def _volume(tiers: tuple[Tier, ...], quantity: Decimal) -> Decimal:
    if not quantity:
        return ZERO
    for tier in tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return exact_sum(exact_product(quantity, tier.unit_price), tier.flat_price)
    raise ValueError(f"quantity {quantity} is above the last tier")
