"""Rating: a window's usage priced with the plan version in force at its start."""

from __future__ import annotations

from decimal import Decimal

from config.pricing import PricingCatalog
from operators.model import RatedWindow, WindowUsage
from operators.money import ZERO, exact_product


class UnratableError(LookupError):
    """The usage belongs to a tenant the catalog does not know (validation should prevent it)."""


class Rater:
    """Prices window revisions; per-unit prices are linear, so revisions rate independently."""

    def __init__(self, catalog: PricingCatalog) -> None:
        self._catalog = catalog

    def rate(self, usage: WindowUsage, emitted_at_ms: int) -> RatedWindow:
        """Price ``usage``; meters without a price in the plan version rate at zero."""
        plan = self._catalog.plan_for(usage.tenant)
        if plan is None:
            raise UnratableError(f"tenant {usage.tenant!r} has no plan")
        version = plan.version_at(usage.window_start_ms)
        price = None if version is None else version.prices.get(usage.meter)
        unit_price = ZERO if price is None else price.unit_price
        return RatedWindow(
            tenant=usage.tenant,
            meter=usage.meter,
            groups=usage.groups,
            window_start_ms=usage.window_start_ms,
            window_end_ms=usage.window_end_ms,
            quantity=usage.quantity,
            previous_quantity=usage.previous_quantity,
            amount=_amount(usage.quantity, unit_price),
            previous_amount=_amount(usage.previous_quantity, unit_price),
            currency=plan.currency,
            plan_id=plan.id,
            price_version="" if version is None else version.version,
            revision=usage.revision,
            kind=usage.kind,
            emitted_at_ms=emitted_at_ms,
        )


def _amount(quantity: Decimal, unit_price: Decimal) -> Decimal:
    return exact_product(quantity, unit_price)
