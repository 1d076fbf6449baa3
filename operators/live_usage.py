"""Live usage per tenant, meter and billing period, updated as events are accepted.

This is what quota checks and spend estimates read between window closes. It
lives in the shard's state, so after a crash the restored state and the
replayed events recompute the same values; counters are therefore published
as absolute values (never increments), and quota crossings are remembered in
the state so each is announced once. A period is forgotten only after its
final counter has been published, so no accepted event, however old, can leave
a change pointing at a forgotten period.

A flow started without recovery state is seeded with the usage earlier
incarnations stored (``seed``): its counters go on from there, and the quota
levels that usage reached count as announced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from config.meters import Aggregation
from config.pricing import PricingCatalog, Quota
from operators.aggregation import ACCUMULATORS, Accumulator
from operators.contributions import Contribution, accumulator_of
from operators.model import Event
from operators.money import EXACT, ZERO
from operators.periods import NEVER_MS, BillingSegment, billing_segment
from operators.pricing import opening_version, segment_cost, segment_pricer

# tenant, meter, period start (epoch ms)
CounterKey = tuple[str, str, int]
# A batch's usage of one tenant, meter and window start, folded.
Partial = tuple[str, str, int, Accumulator]
_HUNDRED = Decimal(100)
_UNSEEN: Any = object()
# Pricing terms kept at most (_PeriodTerms).
_MAX_TERMS = 4096


class LiveCounter(NamedTuple):
    """A tenant's usage and cost of one meter in the current period, so far.

    A named tuple, not a frozen dataclass: one is made per changed counter per
    publish, and a tuple costs a fraction of a frozen dataclass's ``__init__``.
    """

    tenant: str
    meter: str
    period_start_ms: int
    period_end_ms: int
    quantity: Decimal
    amount: Decimal
    currency: str
    hard_limited: bool


@dataclass(frozen=True, slots=True)
class QuotaEvent:
    """Usage reached a threshold or a limit; ``event_id`` is the same on every replay."""

    tenant: str
    meter: str
    period_start_ms: int
    period_end_ms: int
    kind: str  # "threshold", "soft_limit" or "hard_limit"
    level: Decimal  # the usage at which it fires
    percent: Decimal | None  # for thresholds: percent of the limit
    quantity: Decimal  # usage when it was noticed
    at_ms: int

    @property
    def event_id(self) -> str:
        """Stable id: consumers can deduplicate on it."""
        suffix = f"{self.kind}:{self.percent}" if self.percent is not None else self.kind
        return f"{self.tenant}|{self.meter}|{self.period_start_ms}|{suffix}"


@dataclass(slots=True)
class _Period:
    end_ms: int
    currency: str
    segments: dict[str, Accumulator]  # price version -> usage under it
    crossed: set[str]


class LiveUsage:
    """Period usage folded event by event, with quota crossings remembered."""

    # No kept period ends before this, so expire() need not look earlier. A class
    # default: live usage restored from snapshots that lack it looks once, then knows.
    _earliest_end_ms = -NEVER_MS

    def __init__(self, aggregations: Mapping[str, Aggregation]) -> None:
        self.aggregations = dict(aggregations)
        self.periods: dict[CounterKey, _Period] = {}
        self._dirty: dict[CounterKey, None] = {}

    def fold(self, events: Iterable[Event], pricing: PricingCatalog, window_ms: int) -> None:
        """Add accepted events to their periods."""
        periods, dirty = self.periods, self._dirty
        # A batch holds few (tenant, window) pairs: look each up once.
        segments: dict[tuple[str, int], BillingSegment | None] = {}
        for event in events:
            window_start = event.time_ms - event.time_ms % window_ms
            segment = segments.get((event.tenant, window_start), _UNSEEN)
            if segment is _UNSEEN:
                segment = segments[(event.tenant, window_start)] = billing_segment(
                    pricing, event.tenant, window_start
                )
            if segment is None:
                continue
            start, version = segment.period_start_ms, segment.version_name
            for measure in event.measures:
                key = (event.tenant, measure.meter, start)
                period = periods.get(key)
                if period is None:
                    period = periods[key] = _Period(
                        segment.period_end_ms, segment.plan.currency, {}, set()
                    )
                    self._earliest_end_ms = min(self._earliest_end_ms, segment.period_end_ms)
                acc = period.segments.get(version)
                if acc is None:
                    acc = period.segments[version] = ACCUMULATORS[
                        self.aggregations[measure.meter]
                    ]()
                acc.fold(measure.value, event.time_ms)
                dirty[key] = None

    def merge(self, partials: Iterable[Partial], pricing: PricingCatalog) -> None:
        """Add a batch's usage folded per (tenant, meter, window start) to its periods.

        The same as ``fold`` of the batch's events: accumulators merge as they fold.
        """
        periods, dirty = self.periods, self._dirty
        segments: dict[tuple[str, int], BillingSegment | None] = {}
        for tenant, meter, window_start, part in partials:
            segment = segments.get((tenant, window_start), _UNSEEN)
            if segment is _UNSEEN:
                segment = segments[(tenant, window_start)] = billing_segment(
                    pricing, tenant, window_start
                )
            if segment is None:
                continue
            start, version = segment.period_start_ms, segment.version_name
            key = (tenant, meter, start)
            period = periods.get(key)
            if period is None:
                period = periods[key] = _Period(
                    segment.period_end_ms, segment.plan.currency, {}, set()
                )
                self._earliest_end_ms = min(self._earliest_end_ms, segment.period_end_ms)
            acc = period.segments.get(version)
            if acc is None:
                acc = period.segments[version] = ACCUMULATORS[self.aggregations[meter]]()
            acc.merge(part, part.quantity())  # type: ignore[arg-type]
            dirty[key] = None

    def seed(
        self,
        key: CounterKey,
        end_ms: int,
        stored: Mapping[str, Contribution],
        pricing: PricingCatalog,
    ) -> None:
        """Start a period not seen yet from what other incarnations stored, by price version."""
        tenant, meter, _ = key
        subscription = pricing.subscription_for(tenant)
        if key in self.periods or not stored or subscription is None:
            return
        aggregation = self.aggregations[meter]
        currency = pricing.plans[subscription.plan].currency
        segments = {version: accumulator_of(aggregation, part) for version, part in stored.items()}
        period = _Period(end_ms, currency, segments, set())
        quantity = self._quantity(meter, segments.values())
        _, quota = self._priced(pricing, key, period)
        period.crossed.update(kind for kind, _, _ in _crossings(quota, quantity, set()))
        self.periods[key] = period
        self._earliest_end_ms = min(self._earliest_end_ms, end_ms)

    @property
    def pending(self) -> bool:
        """Whether counters changed since the last ``changes()``."""
        return bool(self._dirty)

    def changes(
        self, pricing: PricingCatalog, now_ms: int
    ) -> tuple[list[LiveCounter], list[QuotaEvent]]:
        """Counters changed since the last call, and the quota crossings they caused."""
        counters: list[LiveCounter] = []
        crossings: list[QuotaEvent] = []
        for key in self._dirty:
            tenant, meter, start = key
            period = self.periods[key]
            quantity = self._quantity(meter, period.segments.values())
            amount, quota = self._priced(pricing, key, period)
            if quota is not None:
                new = _crossings(quota, quantity, period.crossed)
                period.crossed.update(kind for kind, _, _ in new)
                crossings += [
                    QuotaEvent(
                        tenant,
                        meter,
                        start,
                        period.end_ms,
                        kind.split(":")[0],
                        level,
                        pct,
                        quantity,
                        now_ms,
                    )
                    for kind, level, pct in new
                ]
            limited = "hard_limit" in period.crossed
            counters.append(
                LiveCounter(
                    tenant, meter, start, period.end_ms, quantity, amount, period.currency, limited
                )
            )
        self._dirty.clear()
        return counters, crossings

    def expire(self, before_ms: int) -> int:
        """Forget periods that ended before ``before_ms`` and whose last change is published.

        A period with unpublished changes (events admitted just before the
        watermark passed its settlement) stays until ``changes()`` has emitted
        its final counter and quota crossings; a later call forgets it.
        """
        if before_ms < self._earliest_end_ms:
            return 0
        dirty = self._dirty
        done = [
            key
            for key, period in self.periods.items()
            if period.end_ms <= before_ms and key not in dirty
        ]
        for key in done:
            del self.periods[key]
        self._earliest_end_ms = min((p.end_ms for p in self.periods.values()), default=NEVER_MS)
        return len(done)

    def _quantity(self, meter: str, segments: Iterable[Accumulator]) -> Decimal:
        parts = list(segments)
        if len(parts) == 1:
            return parts[0].quantity()
        whole = ACCUMULATORS[self.aggregations[meter]]()
        for part in parts:
            whole.merge(part, part.quantity())  # type: ignore[arg-type]
        return whole.quantity()

    def _priced(
        self, pricing: PricingCatalog, key: CounterKey, period: _Period
    ) -> tuple[Decimal, Quota | None]:
        tenant, meter, start = key
        subscription = pricing.subscription_for(tenant)
        if subscription is None:
            return ZERO, None
        terms = self.__dict__.get("_terms")
        if terms is None or terms.pricing is not pricing:
            terms = self._terms = _PeriodTerms(pricing)
        opening_fee, pricers, quota = terms.of(subscription.plan, meter, start, period.segments)
        amount = ZERO if opening_fee is None else opening_fee
        for pricer, acc in zip(pricers, period.segments.values(), strict=True):
            if pricer is not None:
                amount = EXACT.add(amount, pricer(acc.quantity()))
        return amount, quota

    def __getstate__(self) -> dict[str, Any]:
        # The pricing terms are a cache of the catalog, not state.
        state = dict(self.__dict__)
        state.pop("_terms", None)
        return state


# A period's pricing: the opening version's zero-usage fee when no usage fell
# under it, each segment's pricer (None for a version the plan no longer has)
# and the quota that applies.
_Terms = tuple[Decimal | None, tuple[Callable[[Decimal], Decimal] | None, ...], Quota | None]


class _PeriodTerms:
    """What prices a live period, by plan, meter, period start and its segments' versions.

    Made once per combination from ``pricing`` (a catalog never changes;
    a new one gets new terms): counters are priced again on every change.
    """

    def __init__(self, pricing: PricingCatalog) -> None:
        self.pricing = pricing
        self._terms: dict[tuple[str, str, int, tuple[str, ...]], _Terms] = {}

    def of(self, plan_id: str, meter: str, start: int, segments: Mapping[str, object]) -> _Terms:
        names = tuple(segments)
        found = self._terms.get((plan_id, meter, start, names))
        if found is None:
            if len(self._terms) >= _MAX_TERMS:
                # A few per plan, meter and month: cleared rather than left to grow.
                self._terms.clear()
            found = self._terms[(plan_id, meter, start, names)] = self._make(
                plan_id, meter, start, names
            )
        return found

    def _make(self, plan_id: str, meter: str, start: int, names: tuple[str, ...]) -> _Terms:
        plan = self.pricing.plans[plan_id]
        opening_fee, quota, quota_from = None, None, None
        opening = opening_version(plan, start)
        if opening is not None and opening.version not in names:
            # No usage under the opening version yet: its zero-usage fee is still due.
            opening_fee = segment_cost(plan, opening, meter, ZERO, start)
        pricers: list[Callable[[Decimal], Decimal] | None] = []
        for name in names:
            version = plan.version_named(name)
            if version is None:
                pricers.append(None)
                continue
            pricers.append(segment_pricer(plan, version, meter, start))
            # The quotas of the latest version in effect apply, whatever order the
            # segments were first seen in (out-of-order partitions, seeding).
            if meter in version.quotas and (
                quota_from is None or version.effective_from_ms > quota_from
            ):
                quota, quota_from = version.quotas[meter], version.effective_from_ms
        return opening_fee, tuple(pricers), quota


def _crossings(
    quota: Quota | None, quantity: Decimal, crossed: set[str]
) -> Sequence[tuple[str, Decimal, Decimal | None]]:
    """(kind, level, percent) of every level reached for the first time."""
    if quota is None:
        return []
    levels: list[tuple[str, Decimal, Decimal | None]] = []
    base = quota.soft_limit if quota.soft_limit is not None else quota.hard_limit
    if base is not None:
        for percent in quota.thresholds:
            level = EXACT.divide(EXACT.multiply(base, percent), _HUNDRED)
            levels.append((f"threshold:{percent}", level, percent))
    if quota.soft_limit is not None:
        levels.append(("soft_limit", quota.soft_limit, None))
    if quota.hard_limit is not None:
        levels.append(("hard_limit", quota.hard_limit, None))
    return [
        (kind, level, pct)
        for kind, level, pct in levels
        if quantity >= level and kind not in crossed
    ]
