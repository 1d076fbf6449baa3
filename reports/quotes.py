"""Quotes: what a plan version charges for one meter's usage over a billing period."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from config.display import decimal_text as _plain
from config.display import iso_utc as _iso
from config.pricing import (
    GraduatedPrice,
    MeterPrice,
    PackagePrice,
    PercentagePrice,
    Plan,
    PlanVersion,
    UnitPrice,
    VolumePrice,
)
from config.pricing_catalog import load_pricing_catalog
from operators.pricing import meter_price, minor_units, period_cost, round_to_minor

_MODEL_NAMES: dict[type, str] = {
    UnitPrice: "per_unit",
    PackagePrice: "package",
    GraduatedPrice: "graduated",
    VolumePrice: "volume",
    PercentagePrice: "percentage",
}


class QuoteError(Exception):
    """Input the quote cannot be computed for; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Quote:
    """A meter's period amount under the plan version in force at ``at_ms``."""

    plan: Plan
    version: PlanVersion
    meter: str
    price: MeterPrice
    quantity: Decimal
    at_ms: int
    amount: Decimal
    rounded: Decimal


def build_quote(catalog: Path, plan_id: str, meter: str, quantity: Decimal, at_ms: int) -> Quote:
    """Price ``quantity`` of ``meter`` with plan ``plan_id`` of the catalog at ``catalog``."""
    plans = load_pricing_catalog(catalog).plans
    plan = plans.get(plan_id)
    if plan is None:
        known = ", ".join(sorted(plans))
        raise QuoteError(f"--plan: {plan_id!r} is not a plan in {catalog}; use one of: {known}")
    version = plan.version_at(at_ms)
    if version is None:
        first = plan.versions[0]
        raise QuoteError(
            f"--at: plan {plan.id!r} has no version in force at {_iso(at_ms)}; its first "
            f"version, {first.version!r}, starts at {_iso(first.effective_from_ms)}"
        )
    price = meter_price(version, meter)
    if price is None:
        priced = ", ".join(sorted(version.prices)) or "none"
        raise QuoteError(
            f"--meter: {meter!r} has no price in plan {plan.id!r} version {version.version!r} "
            f"(meters without a price are not charged); priced meters: {priced}"
        )
    amount = period_cost(price, quantity)
    return Quote(
        plan=plan,
        version=version,
        meter=meter,
        price=price,
        quantity=quantity,
        at_ms=at_ms,
        amount=amount,
        rounded=round_to_minor(amount, plan.currency),
    )


def quote_json(quote: Quote) -> dict[str, Any]:
    """The quote as JSON-ready data: the price as in the catalog, amounts as exact strings."""
    price = quote.price
    return {
        "plan": quote.plan.id,
        "currency": quote.plan.currency,
        "version": quote.version.version,
        "effective_from": _iso(quote.version.effective_from_ms),
        "at": _iso(quote.at_ms),
        "meter": quote.meter,
        # The same keys as in the catalog file.
        "price": {
            "model": _MODEL_NAMES[type(price.model)],
            **_jsonable(asdict(price.model)),
            "free_allowance": _plain(price.free_allowance),
            "maximum": _jsonable(price.maximum),
            "minimum": _jsonable(price.minimum),
        },
        "quantity": _plain(quote.quantity),
        "amount": _plain(quote.amount),
        "amount_rounded": _plain(quote.rounded),
        "minor_units": minor_units(quote.plan.currency),
    }


def _jsonable(value: Any) -> Any:
    """Decimals as exact strings (JSON numbers would turn into floats), recursively."""
    if isinstance(value, Decimal):
        return _plain(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
