"""Quotes: what a plan version charges for one meter's usage over a billing period."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from config.display import decimal_text as _plain
from config.display import iso_utc as _iso
from config.meter_catalog import load_meter_catalog
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
    UnitPrice,
    VolumePrice,
)
from config.pricing_catalog import load_pricing_catalog
from operators.estimates import InvoiceLine, SegmentUsage, invoice_lines
from operators.money import ZERO, exact_sum
from operators.pricing import (
    PricedEvent,
    events_cost,
    meter_price,
    minor_units,
    period_cost,
    round_to_minor,
)

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
    """A meter's period amount under the plan version in force at ``at_ms``.

    ``lines`` are the invoice a period with only this usage would get (the
    meter's minimum, the fixed fee and the commitment included, each rounded);
    ``zero_usage_fee`` is what the meter costs without any usage.
    """

    plan: Plan
    # How the plan was chosen: "--plan", "subscription of 'acme'" or "default_plan".
    plan_from: str
    version: PlanVersion
    meter: str
    price: MeterPrice
    quantity: Decimal
    at_ms: int
    at_default: bool
    amount: Decimal
    rounded: Decimal
    zero_usage_fee: Decimal
    lines: tuple[InvoiceLine, ...]

    @property
    def total(self) -> Decimal:
        """The invoice total: the sum of the rounded lines."""
        total = ZERO
        for line in self.lines:
            total = exact_sum(total, line.rounded)
        return total

    @property
    def per_event(self) -> bool:
        """Whether the price has per-event terms (the quantity is priced as one event)."""
        return isinstance(self.price.model, PercentagePrice) and self.price.model.per_event


def build_quote(
    catalog: Path,
    meter: str,
    quantity: Decimal,
    *,
    plan_id: str | None = None,
    tenant: str | None = None,
    at_ms: int | None = None,
    meters: Path | None = None,
) -> Quote:
    """Price ``quantity`` of ``meter`` under the plan named, the tenant's, or the default one.

    Without ``at_ms`` the quote is at the moment the plan's newest version took
    effect, so the same catalog always gives the same quote. With ``meters``,
    the catalog's slugs and ``meter`` are checked against that meter catalog.
    """
    meter_catalog = None if meters is None else load_meter_catalog(meters)
    pricing = load_pricing_catalog(catalog, meter_catalog)
    if meter_catalog is not None and meter not in {m.slug for m in meter_catalog.meters}:
        known = ", ".join(sorted(m.slug for m in meter_catalog.meters))
        raise QuoteError(f"--meter: {meter!r} is not a meter in {meters}; use one of: {known}")
    plan, plan_from = _plan(pricing, catalog, plan_id, tenant)
    at_default = at_ms is None
    at = plan.versions[-1].effective_from_ms if at_ms is None else at_ms
    version = plan.version_at(at)
    if version is None:
        first = plan.versions[0]
        raise QuoteError(
            f"--at: plan {plan.id!r} has no version in force at {_iso(at)}; its first "
            f"version, {first.version!r}, starts at {_iso(first.effective_from_ms)}"
        )
    price = meter_price(version, meter)
    if price is None:
        priced = ", ".join(sorted(version.prices)) or "none"
        raise QuoteError(
            f"--meter: {meter!r} has no price in plan {plan.id!r} version {version.version!r} "
            f"(meters without a price are not charged); priced meters: {priced}"
        )
    # A per-event price cannot know the events behind a total: it is priced as one event.
    amount = events_cost(price, [PricedEvent(at, "", quantity)])
    usage = SegmentUsage(meter, version.version, plan.id, plan.currency, quantity, amount)
    return Quote(
        plan=plan,
        plan_from=plan_from,
        version=version,
        meter=meter,
        price=price,
        quantity=quantity,
        at_ms=at,
        at_default=at_default,
        amount=amount,
        rounded=round_to_minor(amount, plan.currency),
        zero_usage_fee=period_cost(price, Decimal(0)),
        lines=tuple(
            invoice_lines(plan, version, [usage], {meter: Aggregation.SUM}, {}, period_start_ms=at)
        ),
    )


def _plan(
    pricing: PricingCatalog, catalog: Path, plan_id: str | None, tenant: str | None
) -> tuple[Plan, str]:
    """The plan named by --plan, the tenant's (subscription or default_plan), or default_plan."""
    plans = pricing.plans
    known = ", ".join(sorted(plans))
    if plan_id is not None and tenant is not None:
        raise QuoteError("give --plan or --tenant, not both (a tenant's plan is in the catalog)")
    if plan_id is not None:
        plan = plans.get(plan_id)
        if plan is None:
            raise QuoteError(f"--plan: {plan_id!r} is not a plan in {catalog}; use one of: {known}")
        return plan, "--plan"
    if tenant is not None:
        found = pricing.plan_for(tenant)
        if found is None:
            subscribed = ", ".join(sorted(pricing.subscriptions)) or "none"
            raise QuoteError(
                f"--tenant: {tenant!r} has no subscription in {catalog}, which names no "
                f"default_plan; subscribed tenants: {subscribed}"
            )
        own = tenant in pricing.subscriptions
        return found, f"subscription of {tenant!r}" if own else "default_plan"
    if pricing.default_plan is None:
        raise QuoteError(
            f"give --plan or --tenant ({catalog} names no default_plan); plans: {known}"
        )
    return plans[pricing.default_plan], "default_plan"


def quote_json(quote: Quote) -> dict[str, Any]:
    """The quote as JSON-ready data: the price as in the catalog, amounts as exact strings."""
    price = quote.price
    return {
        "plan": quote.plan.id,
        "plan_from": quote.plan_from,
        "currency": quote.plan.currency,
        "version": quote.version.version,
        "effective_from": _iso(quote.version.effective_from_ms),
        "at": _iso(quote.at_ms),
        # True when --at was left out: the newest version's effective_from.
        "at_default": quote.at_default,
        "meter": quote.meter,
        # The same keys as in the catalog file.
        "price": {
            "model": _MODEL_NAMES[type(price.model)],
            **_jsonable(_model_keys(price.model)),
            "free_allowance": _plain(price.free_allowance),
            "maximum": _jsonable(price.maximum),
            "minimum": _jsonable(price.minimum),
            # Optional keys appear only when set, as in a catalog file.
            **(
                {"discount_percent": _plain(price.discount_percent)}
                if price.discount_percent
                else {}
            ),
        },
        "quantity": _plain(quote.quantity),
        "amount": _plain(quote.amount),
        "amount_rounded": _plain(quote.rounded),
        "zero_usage_fee": _plain(quote.zero_usage_fee),
        "per_event": quote.per_event,
        "minor_units": minor_units(quote.plan.currency),
        # The invoice of a period with only this usage: minimum, fixed fee, commitment.
        "invoice": {
            "lines": [
                {
                    "kind": line.kind.value,
                    "meter": line.meter,
                    "amount": _plain(line.amount),
                    "amount_rounded": _plain(line.rounded),
                }
                for line in quote.lines
            ],
            "total": _plain(quote.total),
        },
    }


def _model_keys(model: PriceModel) -> dict[str, Any]:
    """The model's fields under their catalog keys."""
    match model:
        case PackagePrice(round_down=down):
            fields = asdict(model)
            del fields["round_down"]
            return {**fields, "round": "down" if down else "up"}
        case PercentagePrice() if model.per_event:
            return {
                "rate_percent": model.rate_percent,
                "fixed_fee_per_event": model.fixed_fee,
                "free_events": model.free_events,
                "free_amount": model.free_amount,
                "min_fee_per_event": model.min_fee,
                "max_fee_per_event": model.max_fee,
            }
        case PercentagePrice(rate_percent=rate, free_amount=free):
            return {"rate_percent": rate, **({} if free is None else {"free_amount": free})}
        case _:
            return asdict(model)


def _jsonable(value: Any) -> Any:
    """Decimals as exact strings (JSON numbers would turn into floats), recursively."""
    if isinstance(value, Decimal):
        return _plain(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
