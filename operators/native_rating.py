"""Rating a native shard's window revisions against billing periods, in the native core.

``NativeRating`` keeps a shard's period ledger in the core (``NativeLedger``):
the periods' usage and charged costs, and a compiled pricer per segment, in
exact 38-digit decimals; no Python object per revision. Python keeps what
needs the catalog: which plan, price version and billing period a tenant's
window falls in (``operators.periods``), added to the core once per tenant
and segment, and each segment's price, compiled once (``pricer_args``).

``operators.period_rating.PeriodLedger`` is the specification, and the
fallback: a number the core cannot hold exactly (over 38 digits) leaves the
core's ledger as it was, and the shard then rates in Python from then on, its
periods moved into a ``PeriodLedger``. tests/native/test_rating_differential.py
holds both to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter
from typing import NamedTuple

from config.meters import Aggregation
from config.pricing import (
    GraduatedPrice,
    PackagePrice,
    PercentagePrice,
    Plan,
    PlanVersion,
    PricingCatalog,
    Tier,
    UnitPrice,
    VolumePrice,
)
from operators._native import NativeLedger, NativeShard
from operators.contributions import Contribution, contribution_of
from operators.model import PeriodName
from operators.money import EXACT, ZERO
from operators.period_rating import PeriodKey, PeriodLedger, PricedPeriod, UnratableError
from operators.periods import BillingSegment, billing_segment, segment_span
from operators.pricing import meter_price, opening_version, period_cost, segment_pricer

_HUNDRED = Decimal(100)
# Segment pricers kept at most (each is a few closures, or a few numbers in the core).
_MAX_PRICERS = 4096

# What NativeLedger.add_pricer takes: the model's kind, its numbers, its tiers and
# round_down; the free allowance, kept share after discount, maximum and zero-usage fee.
PricerArgs = tuple[
    str | None,
    list[str | None],
    list[tuple[str | None, str, str]],
    bool,
    str,
    str | None,
    str | None,
    str | None,
]


class Charges(NamedTuple):
    """What rating an emission gives each revision, as columns (decimals as exact texts)."""

    amount: list[str]
    previous_amount: list[str]
    period_quantity: list[str]
    period_amount: list[str]
    currency: list[str]
    plan_id: list[str]
    price_version: list[str]
    period_start_ms: list[int]
    # Per (currency, sign): the changes in amount added up (None: not summed).
    amount_changes: list[tuple[str, str, str]] | None = None


class RatingRows(NamedTuple):
    """The revision columns the Python ledger needs (the core reads its own); decimal texts."""

    tenant: list[str]
    meter: list[str]
    window_start_ms: list[int]
    quantity: list[str]
    previous: list[str]
    amount: list[str | None]
    latest_ms: list[int]
    distinct: list[Sequence[str]]


def pricer_args(
    plan: Plan, version: PlanVersion | None, meter: str, period_start_ms: int
) -> PricerArgs:
    """``segment_pricer(plan, version, meter, period_start_ms)`` as the core compiles it."""
    price = meter_price(version, meter)
    if price is None:
        return (None, [], [], False, "0", None, None, None)
    model = price.model
    numbers: list[str | None] = []
    tiers: list[tuple[str | None, str, str]] = []
    round_down = False
    match model:
        case UnitPrice(unit_price=unit_price):
            kind, numbers = "unit", [str(unit_price)]
        case PackagePrice(package_size=size, package_price=package_price, round_down=down):
            kind, numbers, round_down = "package", [str(size), str(package_price)], down
        case GraduatedPrice(tiers=graduated):
            kind, tiers = "graduated", _tiers(graduated)
        case VolumePrice(tiers=volume):
            kind, tiers = "volume", _tiers(volume)
        case PercentagePrice(rate_percent=rate, free_amount=free):
            kind, numbers = "percentage", [str(rate), _text(free)]
    kept = None
    if price.discount_percent:
        kept = str(EXACT.divide(EXACT.subtract(_HUNDRED, price.discount_percent), _HUNDRED))
    opening = opening_version(plan, period_start_ms)
    zero_fee = None
    if version is not None and opening is not None and version.version != opening.version:
        zero_fee = str(period_cost(price, ZERO))
    return (
        kind,
        numbers,
        tiers,
        round_down,
        str(price.free_allowance),
        kept,
        _text(price.maximum),
        zero_fee,
    )


def _tiers(tiers: tuple[Tier, ...]) -> list[tuple[str | None, str, str]]:
    return [(_text(t.up_to), str(t.unit_price), str(t.flat_price)) for t in tiers]


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


class NativeRating:
    """A native shard's period ledger: in the core, or in Python once a number outgrows it."""

    def __init__(self, aggregations: Mapping[str, Aggregation], incarnation: str = "") -> None:
        self.aggregations = dict(aggregations)
        # Stamped on every rated window: the flow incarnation it belongs to.
        self.incarnation = incarnation
        self.native: NativeLedger | None = NativeLedger(_codes(self.aggregations))
        self.python: PeriodLedger | None = None
        self._forget_spans(None)
        self._rated_in_python: dict[PeriodName, tuple[str, str]] = {}

    @classmethod
    def of_python(cls, ledger: PeriodLedger) -> NativeRating:
        """A ledger restored from a snapshot that held a PeriodLedger: its periods moved
        into the core, or kept in Python if one does not fit there."""
        rating = cls(ledger.aggregations, ledger.incarnation)
        for key, (usage, charged, end_ms) in ledger.periods.items():
            stored = contribution_of(usage, charged)
            if not rating._seed_natively(key, stored, end_ms):
                rating.native = None
                rating.python = ledger
                break
        return rating

    def __getstate__(self) -> dict[str, object]:
        return {
            "aggregations": self.aggregations,
            "incarnation": self.incarnation,
            "native": None if self.native is None else self.native.snapshot(),
            "python": self.python,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.aggregations = state["aggregations"]  # type: ignore[assignment]
        self.incarnation = state["incarnation"]  # type: ignore[assignment]
        native = state["native"]
        self.native = None if native is None else NativeLedger.restore(native)  # type: ignore[arg-type]
        self.python = state["python"]  # type: ignore[assignment]
        self._forget_spans(None)
        self._rated_in_python = {}

    def __len__(self) -> int:
        return len(self.python.periods) if self.python is not None else len(self.native or ())

    def rated_periods(self) -> dict[PeriodName, tuple[str, str]]:
        """The periods this run rated, each with its (quantity, cost) texts after its last
        revision (the run's summary: not state)."""
        found: dict[PeriodName, tuple[str, str]] = {}
        if self.native is not None:
            for *name, quantity, cost in self.native.rated_periods():
                found[tuple(name)] = (quantity, cost)  # type: ignore[index]
        found.update(self._rated_in_python)
        return found

    def set_aggregations(self, aggregations: Mapping[str, Aggregation]) -> None:
        """Every meter's aggregation (restored meters keep theirs)."""
        self.aggregations = dict(aggregations)
        if self.native is not None:
            self.native.set_aggregations(_codes(self.aggregations))
        if self.python is not None:
            self.python.aggregations = dict(self.aggregations)

    def tenants(self) -> set[str]:
        """The tenants with a period in the ledger."""
        if self.python is not None:
            return {key[0] for key in self.python.periods}
        return set() if self.native is None else self.native.tenants()

    def seed(self, key: PeriodKey, stored: Contribution, end_ms: int) -> None:
        """Start a period not seen yet from what other incarnations stored."""
        if self.python is None and not self._seed_natively(key, stored, end_ms):
            self._move_to_python()
        if self.python is not None:
            self.python.seed(key, stored, end_ms)

    def expire(self, before_ms: int) -> int:
        """Forget periods that ended before ``before_ms``."""
        if self.python is not None:
            return self.python.expire(before_ms)
        return 0 if self.native is None else self.native.expire(before_ms)

    def rate(self, shard: NativeShard, rows: RatingRows, pricing: PricingCatalog) -> Charges:
        """Price ``shard``'s last emission (``rows``) and record the windows' amounts in it."""
        if pricing is not self._pricing or (
            self.native is not None and self.native.pricer_count() > _MAX_PRICERS
        ):
            self._forget_spans(pricing)
        if self.python is None:
            charged = self._rate_natively(shard, pricing)
            if charged is not None:
                return charged
            self._move_to_python()
        return self._rate_in_python(shard, rows, pricing)

    def _rate_natively(self, shard: NativeShard, pricing: PricingCatalog) -> Charges | None:
        native = self.native
        assert native is not None, "a ledger is in the core or in Python"
        charged = native.rate(shard)
        if isinstance(charged, list):
            # Tenants whose billing segment the core does not know yet: add, rate again.
            added: dict[str, list[_Span]] = {}
            for tenant, start in charged:
                mine = added.setdefault(tenant, [])
                if any(s.starts_from <= start < s.ends_before for s in mine):
                    continue
                span = self._add_span(native, pricing, tenant, start)
                if span is None:
                    return None
                mine.append(span)
            charged = native.rate(shard)
            if isinstance(charged, list):
                raise RuntimeError(f"billing segments still missing after adding them: {charged}")
        return None if charged is None else Charges(*charged)

    def _add_span(
        self, native: NativeLedger, pricing: PricingCatalog, tenant: str, start_ms: int
    ) -> _Span | None:
        """Give the core ``tenant``'s segment at ``start_ms``; None if a price does not fit."""
        span = _Span.of(pricing, tenant, start_ms)
        segment, period_start = span.segment, span.period_start_ms
        pricers = []
        for meter in self.aggregations:
            shared = (id(segment.plan), id(segment.version), meter, period_start)
            number = self._native_pricers.get(shared)
            if number is None:
                args = pricer_args(segment.plan, segment.version, meter, period_start)
                number = native.add_pricer(*args)
                if number is None:
                    return None
                self._native_pricers[shared] = number
            pricers.append((meter, number))
        native.add_span(
            tenant,
            span.starts_from,
            span.ends_before,
            period_start,
            segment.period_end_ms,
            span.version,
            span.plan_id,
            span.currency,
            pricers,
        )
        return span

    def _seed_natively(self, key: PeriodKey, stored: Contribution, end_ms: int) -> bool:
        native = self.native
        assert native is not None, "a ledger is in the core or in Python"
        tenant, meter, start, version = key
        return native.seed(
            tenant,
            meter,
            start,
            version,
            end_ms,
            str(stored.quantity),
            str(stored.amount),
            stored.latest_ms,
            sorted(stored.distinct_values),
        )

    def _move_to_python(self) -> None:
        """Rate in Python from now on: the core's periods into a PeriodLedger."""
        native = self.native
        assert native is not None, "a ledger is in the core or in Python"
        self._rated_in_python = self.rated_periods()
        ledger = PeriodLedger(self.aggregations, self.incarnation)
        for (
            tenant,
            meter,
            start,
            version,
            end_ms,
            quantity,
            charged,
            latest,
            distinct,
        ) in native.entries():
            stored = Contribution(Decimal(quantity), Decimal(charged), latest, frozenset(distinct))
            ledger.seed(PeriodKey(tenant, meter, start, version), stored, end_ms)
        self.python, self.native = ledger, None

    def _rate_in_python(
        self, shard: NativeShard, rows: RatingRows, pricing: PricingCatalog
    ) -> Charges:
        ledger = self.python
        assert ledger is not None, "a ledger is in the core or in Python"
        spans, pricers = self._spans, self._pricers
        plans: list[_Span] = []
        priced: list[PricedPeriod] = []
        for tenant, meter, start in zip(rows.tenant, rows.meter, rows.window_start_ms, strict=True):
            span = spans.get(tenant)
            if span is None or not span.starts_from <= start < span.ends_before:
                span = spans[tenant] = _Span.of(pricing, tenant, start)
            plans.append(span)
            priced.append(span.meters.get(meter) or span.meter(meter, pricers))
        before = [ZERO if a is None else Decimal(a) for a in rows.amount]
        quantities = list(map(Decimal, rows.quantity))
        windows = zip(quantities, rows.latest_ms, rows.distinct, strict=True)
        changes = map(EXACT.subtract, quantities, map(Decimal, rows.previous))
        period_quantity, period_amount, amounts = ledger.charge_each(
            zip(priced, changes, windows, before, strict=True)
        )
        texts = list(map(str, amounts))
        shard.set_amounts(texts)
        charges = Charges(
            texts,
            list(map(str, before)),
            list(map(str, period_quantity)),
            list(map(str, period_amount)),
            list(map(attrgetter("currency"), plans)),
            list(map(attrgetter("plan_id"), plans)),
            list(map(attrgetter("version"), plans)),
            list(map(attrgetter("period_start_ms"), plans)),
        )
        names = zip(
            rows.tenant,
            rows.meter,
            charges.period_start_ms,
            charges.plan_id,
            charges.price_version,
            charges.currency,
            strict=True,
        )
        self._rated_in_python.update(
            zip(
                names, zip(charges.period_quantity, charges.period_amount, strict=True), strict=True
            )
        )
        return charges

    def _forget_spans(self, pricing: PricingCatalog | None) -> None:
        # Each tenant's last billing segment under ``pricing`` and the window starts
        # it covers: most revisions fall in it. Not state.
        self._spans: dict[str, _Span] = {}
        # Segment pricers by (plan, version, meter, period start): tenants share
        # them. Keyed by the catalog's own plan and version objects (alive as long
        # as ``pricing`` is), so two plans or versions can never share one by name.
        self._pricers: dict[tuple[int, int, str, int], Callable[[Decimal], Decimal]] = {}
        self._native_pricers: dict[tuple[int, int, str, int], int] = {}
        if self.native is not None:
            self.native.clear_spans()
        self._pricing = pricing


def _codes(aggregations: Mapping[str, Aggregation]) -> list[tuple[str, str]]:
    return [(meter, aggregation.value) for meter, aggregation in aggregations.items()]


@dataclass(slots=True)
class _Span:
    """A tenant's billing segment and the window starts [from, before) it covers."""

    tenant: str
    starts_from: int
    ends_before: int
    segment: BillingSegment
    version: str
    currency: str
    plan_id: str
    period_start_ms: int
    # Each meter's ledger key, period end and segment pricer, made once.
    meters: dict[str, PricedPeriod] = field(default_factory=dict)

    @classmethod
    def of(cls, pricing: PricingCatalog, tenant: str, start_ms: int) -> _Span:
        segment = billing_segment(pricing, tenant, start_ms)
        if segment is None:
            raise UnratableError(f"tenant {tenant!r} has no plan")
        starts_from, ends_before = segment_span(segment, start_ms)
        plan = segment.plan
        return cls(
            tenant,
            starts_from,
            ends_before,
            segment,
            segment.version_name,
            plan.currency,
            plan.id,
            segment.period_start_ms,
        )

    def meter(
        self, meter: str, pricers: dict[tuple[int, int, str, int], Callable[[Decimal], Decimal]]
    ) -> PricedPeriod:
        """``meter``'s ledger key, period end and pricer, kept for the span's next revisions."""
        start, segment = self.period_start_ms, self.segment
        shared = (id(segment.plan), id(segment.version), meter, start)
        pricer = pricers.get(shared)
        if pricer is None:
            if len(pricers) >= _MAX_PRICERS:
                # A few per plan, meter and month: cleared rather than left to grow.
                pricers.clear()
            pricer = pricers[shared] = segment_pricer(segment.plan, segment.version, meter, start)
        key = PeriodKey(self.tenant, meter, start, self.version)
        priced = self.meters[meter] = PricedPeriod(key, segment.period_end_ms, pricer)
        return priced
