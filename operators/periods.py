"""Monthly billing periods anchored on a day of the month, in the subscriber's time zone."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from config.pricing import Plan, PlanVersion, PricingCatalog, Subscription

# Later than any period's end (epoch ms): where a search for the earliest end starts.
NEVER_MS = 2**63


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


# Period starts are checked for window alignment from the year the tenant's plan
# starts (older zone rules, such as Monrovia's -00:44:30 until 1972, never bill)
# to this year: a span fixed by the catalog, never by today's date.
_LAST_CHECKED_YEAR = 2099


@dataclass(frozen=True, slots=True)
class Misalignment:
    """A tenant whose period starts do not fall on window edges; ``step_ms`` is what fits."""

    tenant: str
    timezone: str
    anchor_day: int
    period_start_ms: int
    step_ms: int


def misaligned_periods(pricing: PricingCatalog, window_ms: int) -> Misalignment | None:
    """The first subscription (by tenant) whose period starts fall inside a window, if any.

    Period starts are checked from the year before the plan's first version.
    Windows are epoch-aligned tumbling windows of ``window_ms``; a window that
    straddles a period start would be billed whole to one period, so the flow
    refuses such a size. Tenants of ``default_plan`` are billed monthly from the
    1st, UTC (checked as tenant "*").
    """
    subscriptions = sorted(pricing.subscriptions.items())
    if pricing.default_plan is not None:
        subscriptions.insert(0, ("*", Subscription(pricing.default_plan)))
    for tenant, subscription in subscriptions:
        versions = pricing.plans[subscription.plan].versions
        since = datetime.fromtimestamp(versions[0].effective_from_ms / 1000, UTC).year - 1
        step, first = _period_starts(subscription.anchor_day, subscription.timezone, since)
        if step % window_ms:
            start = next(ms for ms in first if ms % window_ms)
            return Misalignment(tenant, subscription.timezone, subscription.anchor_day, start, step)
    return None


@dataclass(frozen=True, slots=True)
class VersionMisalignment:
    """A plan version that takes effect inside a window; ``step_ms`` is a size that fits."""

    plan: str
    version: str
    effective_from_ms: int
    step_ms: int


def misaligned_version(pricing: PricingCatalog, window_ms: int) -> VersionMisalignment | None:
    """The first plan version (by plan, then time) that takes effect inside a window, if any.

    A window is priced under the version in force at its start, while invoices
    price per-event charges by each event's time: a version change inside a
    window would bill its events under the old prices, or (per event) not at all.
    """
    for plan_id, plan in sorted(pricing.plans.items()):
        for version in plan.versions:
            if version.effective_from_ms % window_ms:
                step = math.gcd(version.effective_from_ms, window_ms)
                return VersionMisalignment(
                    plan_id, version.version, version.effective_from_ms, step
                )
    return None


@functools.lru_cache(maxsize=1024)
def _period_starts(anchor_day: int, timezone: str, since: int) -> tuple[int, tuple[int, ...]]:
    """(gcd of every period start from ``since`` to the last checked year, those starts)."""
    zone = ZoneInfo(timezone)
    starts = tuple(
        _ms(datetime(year, month, anchor_day, tzinfo=zone))
        for year in range(max(since, 1970), _LAST_CHECKED_YEAR + 1)
        for month in range(1, 13)
    )
    return math.gcd(*starts), starts


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
