"""Rating against the billing period: a window's amount is what it adds to the period's cost.

For each (tenant, meter, billing period, price version) the ledger keeps the
period's aggregate (the same accumulator kinds as windows: a SUM adds window
changes, a MAX keeps the largest maximum, a UNIQUE_COUNT unions the distinct
values, a LATEST keeps the latest) and the cost last charged for it. A window
revision is merged in, the period is priced again, and the difference is the
revision's amount. The amounts of a period's windows therefore always add up
to the price of the period's whole usage, in whatever order windows and
adjustments came. A price version change mid-period starts a new segment:
windows starting on or after it are priced as a period of their own under
the new version, less its zero-usage fee (due once a period, under the
opening version: ``operators.pricing.segment_cost``).

A flow started without recovery state is seeded with what earlier
incarnations stored for a period (``seed``), so its windows' amounts are
still changes of the whole period's cost.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from decimal import Decimal
from typing import NamedTuple, Protocol

from config.meters import Aggregation
from config.pricing import PricingCatalog
from operators.aggregation import ACCUMULATORS, Accumulator
from operators.contributions import Contribution, accumulator_of, contribution_of
from operators.model import RatedWindow, WindowUsage
from operators.money import EXACT, ZERO
from operators.periods import NEVER_MS, BillingSegment, billing_segment
from operators.pricing import segment_cost


class PeriodKey(NamedTuple):
    """The part of a tenant's billing period of one meter under one price version."""

    tenant: str
    meter: str
    period_start_ms: int
    price_version: str


class PricedPeriod(NamedTuple):
    """A period's ledger key, its end and the cost of its segment by quantity (``segment_cost``)."""

    key: PeriodKey
    end_ms: int
    cost_of: Callable[[Decimal], Decimal]


class LedgerEntry(NamedTuple):
    """A period's usage so far, what its windows were charged in all, and when it ends."""

    usage: Accumulator
    charged: Decimal
    end_ms: int


class PeriodRef(NamedTuple):
    """One tenant's billing period of one meter, over all its price versions."""

    tenant: str
    meter: str
    start_ms: int
    end_ms: int


class Ledger(Protocol):
    """What seeding and settling need of a shard's period ledger, wherever it lives."""

    def seed(self, key: PeriodKey, stored: Contribution, end_ms: int) -> None:
        """Start a period not seen yet from what other incarnations stored."""

    def expire(self, before_ms: int) -> int:
        """Forget periods that ended before ``before_ms``."""


class UnratableError(LookupError):
    """The usage belongs to a tenant the catalog does not know (validation should prevent it)."""


class PeriodLedger:
    """Period aggregates and charged costs of one shard; lives in (and is snapshotted with) it."""

    # No kept period ends before this, so expire() need not look earlier. A class
    # default: ledgers restored from snapshots that lack it look once, then know.
    _earliest_end_ms = -NEVER_MS

    def __init__(self, aggregations: Mapping[str, Aggregation], incarnation: str = "") -> None:
        self.aggregations = dict(aggregations)
        self.periods: dict[PeriodKey, LedgerEntry] = {}
        # Stamped on every rated window: the flow incarnation it belongs to.
        self.incarnation = incarnation

    def seed(self, key: PeriodKey, stored: Contribution, end_ms: int) -> None:
        """Start a period this ledger has not seen from what other incarnations stored."""
        if key not in self.periods:
            period = accumulator_of(self.aggregations[key[1]], stored)
            self.periods[key] = LedgerEntry(period, stored.amount, end_ms)
            self._earliest_end_ms = min(self._earliest_end_ms, end_ms)

    def rate(self, usage: WindowUsage, pricing: PricingCatalog, emitted_at_ms: int) -> RatedWindow:
        """Price one window revision against its billing period."""
        segment = billing_segment(pricing, usage.tenant, usage.window_start_ms)
        if segment is None:
            raise UnratableError(f"tenant {usage.tenant!r} has no plan")
        key = PeriodKey(usage.tenant, usage.meter, segment.period_start_ms, segment.version_name)
        window: Accumulator = usage.accumulator
        mine = contribution_of(window)
        previous_amount = window.amount
        period_quantity, cost, window.amount = self.charge(
            key,
            segment,
            EXACT.subtract(usage.quantity, usage.previous_quantity),
            (mine.quantity, mine.latest_ms, mine.distinct_values),
            previous_amount,
        )
        plan = segment.plan
        return RatedWindow(
            tenant=usage.tenant,
            meter=usage.meter,
            groups=usage.groups,
            window_start_ms=usage.window_start_ms,
            window_end_ms=usage.window_end_ms,
            quantity=usage.quantity,
            previous_quantity=usage.previous_quantity,
            amount=window.amount,
            previous_amount=previous_amount,
            currency=plan.currency,
            plan_id=plan.id,
            price_version=key[3],
            revision=usage.revision,
            kind=usage.kind,
            emitted_at_ms=emitted_at_ms,
            period_start_ms=segment.period_start_ms,
            period_quantity=period_quantity,
            period_amount=cost,
            incarnation=self.incarnation,
            aggregation=self.aggregations[usage.meter].value,
            latest_ms=mine.latest_ms,
            distinct_values=mine.distinct_values,
        )

    def charge(
        self,
        key: PeriodKey,
        segment: BillingSegment,
        change: Decimal,
        window: tuple[Decimal, int, Collection[str]],
        charged_before: Decimal,
    ) -> tuple[Decimal, Decimal, Decimal]:
        """Merge a window revision into its period and price the period again.

        ``change`` is the revision's change in quantity, ``window`` what the
        window now holds (quantity, LATEST's time, UNIQUE_COUNT's values) and
        ``charged_before`` what it was charged so far. Returns the period's
        quantity and cost after it, and the window's new amount.
        """
        plan, version, meter, start = segment.plan, segment.version, key[1], key[2]

        def cost_of(quantity: Decimal) -> Decimal:
            # The specification itself: building a segment_pricer for one call costs more.
            return segment_cost(plan, version, meter, quantity, start)

        return self.charge_priced(
            PricedPeriod(key, segment.period_end_ms, cost_of), change, window, charged_before
        )

    def charge_priced(
        self,
        priced: PricedPeriod,
        change: Decimal,
        window: tuple[Decimal, int, Collection[str]],
        charged_before: Decimal,
    ) -> tuple[Decimal, Decimal, Decimal]:
        """``charge`` with the period's key, end and pricer made once by the caller."""
        row = (priced, change, window, charged_before)
        (quantity,), (cost,), (amount,) = self.charge_each((row,))
        return quantity, cost, amount

    def charge_each(
        self,
        rows: Iterable[tuple[PricedPeriod, Decimal, tuple[Decimal, int, Collection[str]], Decimal]],
    ) -> tuple[list[Decimal], list[Decimal], list[Decimal]]:
        """``charge_priced`` of each row in turn, as columns: the period quantities and
        costs after each, and each window's new amount."""
        periods, aggregations = self.periods, self.aggregations
        get, add, subtract = periods.get, EXACT.add, EXACT.subtract
        quantities: list[Decimal] = []
        costs: list[Decimal] = []
        amounts: list[Decimal] = []
        for (key, end_ms, cost_of), change, window, charged_before in rows:
            entry = get(key)
            if entry is None:
                period, charged = ACCUMULATORS[aggregations[key[1]]](), ZERO
                self._earliest_end_ms = min(self._earliest_end_ms, end_ms)
            else:
                # Unpacked, not read by name: snapshots from before LedgerEntry hold plain tuples.
                period, charged, _ = entry
            period.merge_revision(change, *window)
            quantity = period.quantity()
            cost = cost_of(quantity)
            periods[key] = LedgerEntry(period, cost, end_ms)
            quantities.append(quantity)
            costs.append(cost)
            amounts.append(add(charged_before, subtract(cost, charged)))
        return quantities, costs, amounts

    def expire(self, before_ms: int) -> int:
        """Forget periods that ended before ``before_ms`` (no window of theirs can change)."""
        if before_ms < self._earliest_end_ms:
            return 0
        done = [key for key, (_, _, end) in self.periods.items() if end <= before_ms]
        for key in done:
            del self.periods[key]
        self._earliest_end_ms = min((end for _, _, end in self.periods.values()), default=NEVER_MS)
        return len(done)
