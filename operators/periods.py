"""Monthly billing periods anchored on a day of the month, in the subscriber's time zone."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from config.pricing import Plan, PlanVersion, PricingCatalog


@functools.lru_cache(maxsize=65_536)
def billing_period(at_ms: int, anchor_day: int, timezone: str) -> tuple[int, int]:
    """(start_ms, end_ms) of the monthly period that holds ``at_ms``.

    A period runs from ``anchor_day`` 00:00 local time to the same moment a
    month later; daylight-saving changes move its UTC bounds, not its local ones.
    """
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(zone)
    year, month = local.year, local.month
    if local.day < anchor_day:
        year, month = _add_months(year, month, -1)
    start = datetime(year, month, anchor_day, tzinfo=zone)
    end_year, end_month = _add_months(year, month, 1)
    end = datetime(end_year, end_month, anchor_day, tzinfo=zone)
    return _ms(start), _ms(end)


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _ms(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass(frozen=True, slots=True)
class BillingSegment:
    """Where a window is billed: the tenant's plan, the version in force, the period."""

    plan: Plan
    version: PlanVersion | None
    period_start_ms: int
    period_end_ms: int

    @property
    def version_name(self) -> str:
        """The price version's name; "" before the plan's first version."""
        return "" if self.version is None else self.version.version


def billing_segment(
    pricing: PricingCatalog, tenant: str, window_start_ms: int
) -> BillingSegment | None:
    """The plan, price version and billing period of ``tenant``'s window; None if unknown."""
    subscription = pricing.subscription_for(tenant)
    if subscription is None:
        return None
    plan = pricing.plans[subscription.plan]
    start, end = billing_period(window_start_ms, subscription.anchor_day, subscription.timezone)
    return BillingSegment(plan, plan.version_at(window_start_ms), start, end)


def segment_span(segment: BillingSegment, at_ms: int) -> tuple[int, int]:
    """The window starts [from, to) around ``at_ms`` that share ``segment``.

    ``segment`` is ``billing_segment`` at ``at_ms``: it holds until its period
    ends or the plan's next price version takes effect, whichever comes first.
    """
    start, end = segment.period_start_ms, segment.period_end_ms
    for version in segment.plan.versions:
        if version.effective_from_ms <= at_ms:
            start = max(start, version.effective_from_ms)
        else:
            return start, min(end, version.effective_from_ms)
    return start, end
