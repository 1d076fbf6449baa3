"""Pricing catalog: plans, their effective-dated versions, and who is on which plan."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """Per-unit price: amount = quantity x unit_price, exact decimal."""

    unit_price: Decimal


MeterPrice = UnitPrice


@dataclass(frozen=True, slots=True)
class PlanVersion:
    """Prices in force from ``effective_from_ms`` (UTC epoch ms) until the next version."""

    version: str
    effective_from_ms: int
    prices: Mapping[str, MeterPrice]


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan: one currency, versions sorted by ``effective_from_ms``."""

    id: str
    currency: str
    versions: tuple[PlanVersion, ...]

    def version_at(self, at_ms: int) -> PlanVersion | None:
        """The version in force at ``at_ms``; None before the first one."""
        index = bisect.bisect_right(self.versions, at_ms, key=_effective_from) - 1
        return self.versions[index] if index >= 0 else None


def _effective_from(version: PlanVersion) -> int:
    return version.effective_from_ms


@dataclass(frozen=True, slots=True)
class PricingCatalog:
    """Plans by id, tenant subscriptions, and the plan for tenants without one."""

    plans: Mapping[str, Plan]
    subscriptions: Mapping[str, str]
    default_plan: str | None = None

    def plan_for(self, tenant: str) -> Plan | None:
        """The tenant's plan, the default plan, or None for an unknown tenant."""
        plan_id = self.subscriptions.get(tenant, self.default_plan)
        return None if plan_id is None else self.plans[plan_id]

    def knows(self, tenant: str) -> bool:
        """Whether events of ``tenant`` can be rated at all."""
        return tenant in self.subscriptions or self.default_plan is not None
