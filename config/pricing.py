"""Pricing catalog: plans, their effective-dated versions, and who is on which plan."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """per_unit: cost = quantity x unit_price."""

    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class PackagePrice:
    """package: every ``package_size`` units cost ``package_price``.

    Packages are counted rounded up (a started package is paid in full) or, with
    ``round_down``, rounded down (only complete packages are paid).
    """

    package_size: Decimal
    package_price: Decimal
    round_down: bool = False


@dataclass(frozen=True, slots=True)
class Tier:
    """Up to ``up_to`` units (None: no upper bound): ``unit_price`` each, plus ``flat_price``.

    A bounded last tier goes on beyond its ``up_to`` at the same prices.
    """

    up_to: Decimal | None
    unit_price: Decimal
    flat_price: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class GraduatedPrice:
    """graduated: each tier prices the units that fall in it (tax-bracket style)."""

    tiers: tuple[Tier, ...]


@dataclass(frozen=True, slots=True)
class VolumePrice:
    """volume: the tier the period's total falls in prices every unit."""

    tiers: tuple[Tier, ...]


@dataclass(frozen=True, slots=True)
class PercentagePrice:
    """percentage: rate_percent / 100 of a transaction-amount meter, optionally per event.

    The per-event terms (Lago's percentage model) price each event in the
    period's event order: events are free while they are among the first
    ``free_events`` and ``free_amount`` covers them whole (whichever runs out
    first ends that); every other event pays ``fixed_fee`` plus the rate on its
    amount beyond the free amount, kept within ``min_fee`` and ``max_fee``.
    """

    rate_percent: Decimal
    fixed_fee: Decimal = Decimal(0)
    free_events: int | None = None
    free_amount: Decimal | None = None
    min_fee: Decimal | None = None
    max_fee: Decimal | None = None

    @property
    def per_event(self) -> bool:
        """Whether the cost depends on the single events, not only on their sum."""
        return bool(
            self.fixed_fee
            or self.free_events is not None
            or self.min_fee is not None
            or self.max_fee is not None
        )


PriceModel = UnitPrice | PackagePrice | GraduatedPrice | VolumePrice | PercentagePrice


@dataclass(frozen=True, slots=True)
class MeterPrice:
    """How one meter is priced over a billing period.

    The first ``free_allowance`` units of the period are free; the model's cost
    is reduced by ``discount_percent``, never exceeds ``maximum`` (a cap) and is
    raised to ``minimum`` on the invoice when usage falls short.
    """

    model: PriceModel
    free_allowance: Decimal = Decimal(0)
    maximum: Decimal | None = None
    minimum: Decimal | None = None
    discount_percent: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Quota:
    """Usage limits of one meter per billing period.

    ``thresholds`` are percentages of the soft limit (or of the hard limit when
    there is no soft one) that send a quota event when usage first reaches them.
    """

    soft_limit: Decimal | None = None
    hard_limit: Decimal | None = None
    thresholds: tuple[Decimal, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanVersion:
    """Prices in force from ``effective_from_ms`` (UTC epoch ms) until the next version."""

    version: str
    effective_from_ms: int
    prices: Mapping[str, MeterPrice]
    # Charged once per billing period (invoice line), whatever the usage.
    fixed_fee: Decimal = Decimal(0)
    # The invoice total (usage + fixed fee) is raised to this when it falls short.
    minimum_commitment: Decimal | None = None
    quotas: Mapping[str, Quota] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan: one currency, versions sorted by ``effective_from_ms``."""

    id: str
    currency: str
    versions: tuple[PlanVersion, ...]

    def version_named(self, name: str) -> PlanVersion | None:
        """The version called ``name``, if the plan has one."""
        return next((v for v in self.versions if v.version == name), None)

    def version_at(self, at_ms: int) -> PlanVersion | None:
        """The version in force at ``at_ms``; None before the first one."""
        index = bisect.bisect_right(self.versions, at_ms, key=_effective_from) - 1
        return self.versions[index] if index >= 0 else None


def _effective_from(version: PlanVersion) -> int:
    return version.effective_from_ms


@dataclass(frozen=True, slots=True)
class Subscription:
    """A tenant's plan and billing period: monthly, from ``anchor_day`` 00:00 in ``timezone``."""

    plan: str
    anchor_day: int = 1
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class PricingCatalog:
    """Plans by id, tenant subscriptions, and the plan for tenants without one."""

    plans: Mapping[str, Plan]
    subscriptions: Mapping[str, Subscription]
    default_plan: str | None = None
    # Made once: every event of a tenant without a subscription asks for it.
    _default: Subscription | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        default = None if self.default_plan is None else Subscription(self.default_plan)
        object.__setattr__(self, "_default", default)

    def subscription_for(self, tenant: str) -> Subscription | None:
        """The tenant's subscription (the default plan's, monthly from the 1st UTC), or None."""
        return self.subscriptions.get(tenant) or self._default

    def plan_for(self, tenant: str) -> Plan | None:
        """The tenant's plan, the default plan, or None for an unknown tenant."""
        subscription = self.subscription_for(tenant)
        return None if subscription is None else self.plans[subscription.plan]

    def knows(self, tenant: str) -> bool:
        """Whether events of ``tenant`` can be rated at all."""
        return tenant in self.subscriptions or self.default_plan is not None
