"""The native core's split and shard (operators._native), behind ShardState's steps.

``NativeSplitter`` is ``ShardSplitter`` over parsed columns: one ``ShardBatch``
of columns per shard, which pickles as bytes. ``NativeShardState`` is
``ShardState``'s screen -> admit -> finish -> rate, with the dedup keys and
windows in Rust and no Python object per event: screening returns rows of the
batch, and only the rare too-late rejections become Python objects. Window
revisions leave the core as columns, the Python ``PeriodLedger`` rates them
row by row (Decimal only here, at the edge) and they go on as ``RatedColumns``.
tests/native/test_shard_differential.py holds both to operators/shard.py.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from operators._native import NativeShard, ParsedColumns, Revisions, ShardBatch, split_batch
from operators.aggregation import (
    ACCUMULATORS,
    CountAccumulator,
    LatestAccumulator,
    MaxAccumulator,
    SumAccumulator,
    UniqueCountAccumulator,
)
from operators.contributions import Contribution
from operators.idempotency import Claim, claim_token
from operators.live_usage import LiveCounter, LiveUsage, Partial, QuotaEvent
from operators.message_batch import MessageBatch
from operators.model import (
    GroupValues,
    RatedColumns,
    RawMessage,
    Rejection,
    WindowKind,
    WindowUsage,
)
from operators.money import ZERO
from operators.native_rating import NativeRating, RatingRows
from operators.period_rating import PeriodKey, PeriodLedger, PeriodRef
from operators.shard import (
    IncompatibleStateError,
    SeededPeriods,
    check_priced,
    check_shards,
    forget_settled,
    seed_periods,
    too_late_rejection,
    unseeded_periods,
)
from operators.windowing import PartitionKey, WindowConfig

# Revisions.kind: 0 closed on time, 1 adjustment.
_KINDS = (WindowKind.WINDOW.value, WindowKind.ADJUSTMENT.value)


def _meter_specs(meters: MeterCatalog) -> list[tuple[str, str, list[str]]]:
    """The catalog as the core takes it, in the order parsed columns number meters."""
    return [
        (m.slug, m.aggregation.value, sorted(name for name, _ in m.group_by)) for m in meters.meters
    ]


class NativeSplitter:
    """Splits a parsed batch of one input partition by shard, in input order."""

    def __init__(self, meters: MeterCatalog, shards: int) -> None:
        self.shards = shards
        self._group_counts = [len(m.group_by) for m in meters.meters]

    def split(
        self, partition: PartitionKey, batch: Sequence[RawMessage], columns: ParsedColumns
    ) -> dict[str, ShardBatch]:
        """Every shard's part of ``columns`` (parsed from ``batch``), keyed as shard_of keys."""
        messages = MessageBatch.of(batch)
        origin, number = partition
        parts = split_batch(
            columns,
            self._group_counts,
            messages.data,
            messages.ends,
            messages.offsets,
            messages.arrivals_ms,
            origin,
            number,
            self.shards,
        )
        return {str(s): part for s, part in enumerate(parts)}


@dataclass(slots=True)
class NativeScreened:
    """Outcome of screening a ShardBatch: ``fresh`` are rows of the batch, in order."""

    fresh: array[int] = field(default_factory=lambda: array("I"))
    fresh_late: bytes = b""
    too_late: list[Rejection] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0


class NativeShardState:
    """Dedup keys and windows of one shard in the native core; rating in Python."""

    def __init__(
        self,
        window: WindowConfig,
        meters: MeterCatalog,
        dedup_horizon_ms: int,
        instance: str,
        expected_partitions: Iterable[PartitionKey] = (),
        *,
        incarnation: str = "",
        shards: int = 0,
    ) -> None:
        self.shards = shards
        self.shard = NativeShard(
            _meter_specs(meters),
            window.size_ms,
            window.grace_ms,
            window.settlement_ms,
            window.idle_timeout_ms,
            dedup_horizon_ms,
            list(expected_partitions),
        )
        self.config = window
        self.aggregations = {m.slug: m.aggregation for m in meters.meters}
        self.ledger = NativeRating(self.aggregations, incarnation)
        self.instance = instance
        self.live = LiveUsage(self.aggregations)
        # Periods already seeded from the stores (or found empty there), with their ends.
        self.seeded = SeededPeriods()
        self._catalog(meters)
        self._emitted: Revisions | None = None

    def _catalog(self, meters: MeterCatalog) -> None:
        # The catalog in the order batches number meters.
        self._slugs = [m.slug for m in meters.meters]
        self._event_types = [m.event_type for m in meters.meters]

    def __getstate__(self) -> dict[str, object]:
        return {
            "shard": self.shard.snapshot(),
            "config": self.config,
            "aggregations": self.aggregations,
            "ledger": self.ledger,
            "instance": self.instance,
            "shards": self.shards,
            "live": self.live,
            "seeded": self.seeded,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.shard = NativeShard.restore(state["shard"])  # type: ignore[arg-type]
        self.config = state["config"]  # type: ignore[assignment]
        self.aggregations = state["aggregations"]  # type: ignore[assignment]
        ledger = state["ledger"]
        # Snapshots from before the core rated hold a PeriodLedger.
        self.ledger = (
            NativeRating.of_python(ledger) if isinstance(ledger, PeriodLedger) else ledger  # type: ignore[assignment]
        )
        self.instance = state["instance"]  # type: ignore[assignment]
        self.shards = state.get("shards", 0)  # type: ignore[assignment]
        self.live = state.get("live") or LiveUsage(self.aggregations)  # type: ignore[assignment]
        seeded = state.get("seeded", {})
        # State from before SeededPeriods held a plain dict (or nothing, before seeding).
        self.seeded = (
            seeded if isinstance(seeded, SeededPeriods) else SeededPeriods(seeded)  # type: ignore[call-overload]
        )
        # The catalog's order: reconfigure() follows every restore and sets it.
        self._slugs, self._event_types = [], []
        self._emitted = None

    def reconfigure(
        self,
        window: WindowConfig,
        meters: MeterCatalog,
        dedup_horizon_ms: int,
        expected_partitions: Iterable[PartitionKey] = (),
        *,
        pricing: PricingCatalog | None = None,
        shards: int = 0,
    ) -> None:
        """Apply the current settings to restored state: ShardState.reconfigure's rules."""
        check_shards(self.shards, shards)
        old = self.config
        if window.size_ms != old.size_ms:
            raise IncompatibleStateError(
                f"window.size is {window.size_ms} ms but the recovery state was built with "
                f"{old.size_ms} ms; keep it, or start with a new recovery directory"
            )
        for meter in meters.meters:
            aggregation = self.aggregations.get(meter.slug, meter.aggregation)
            if meter.aggregation != aggregation:
                raise IncompatibleStateError(
                    f"meter {meter.slug!r} is now {meter.aggregation} but the recovery state "
                    f"aggregates it as {aggregation}; keep it, or give the new meter a new slug"
                )
        if pricing is not None:
            tenants = set(self.shard.tenants())
            tenants.update(self.ledger.tenants())
            check_priced(tenants, pricing)
        self.shard.reconfigure(
            _meter_specs(meters),
            window.size_ms,
            window.grace_ms,
            window.settlement_ms,
            window.idle_timeout_ms,
            dedup_horizon_ms,
            list(expected_partitions),
        )
        # A meter dropped from the catalog keeps its aggregation: its restored
        # windows and periods must still close and be rated.
        self.aggregations = {**self.aggregations, **{m.slug: m.aggregation for m in meters.meters}}
        self.config = window
        self.ledger.set_aggregations(self.aggregations)
        self.live.aggregations = dict(self.aggregations)
        self._catalog(meters)

    @property
    def watermark(self) -> int:
        """The event-time watermark (windowing.NO_WATERMARK before it has one)."""
        return self.shard.watermark

    def resume(self, now_s: float) -> None:
        """Called when the flow starts or restarts: start the quiet-time clocks."""
        self.shard.resume(now_s)

    def screen(self, batch: ShardBatch, now_ms: int) -> NativeScreened:
        """Drop in-state duplicates, reject too-late events, keep the rest (rows, in order)."""
        fresh, fresh_late, too_late, duplicates, late = self.shard.screen(batch)
        rows = array("I")
        rows.frombytes(fresh)
        origin, partition = batch.partition
        rejections = []
        for row in memoryview(too_late).cast("I"):
            tenant, source, event_id, time_ms, offset, payload = batch.event(row)
            rejections.append(
                too_late_rejection(
                    payload,
                    (origin, partition, offset),
                    event_id=event_id,
                    source=source,
                    tenant=tenant,
                    time_ms=time_ms,
                    now_ms=now_ms,
                )
            )
        return NativeScreened(rows, fresh_late, rejections, duplicates, late)

    def claims(self, batch: ShardBatch, rows: array[int]) -> bytes:
        """Durable-store claims of ``rows`` of ``batch``, packed (operators.idempotency)."""
        return self.shard.claim_records(batch, rows.tobytes(), self.instance)

    def unpacked_claims(self, batch: ShardBatch, rows: array[int]) -> list[Claim]:
        """The same claims as ``claims`` as Claim objects (ShardState.claims)."""
        origin, partition = batch.partition
        out = []
        for row in rows:
            tenant, source, event_id, time_ms, offset, _ = batch.event(row)
            token = claim_token(self.instance, origin, partition, offset)
            out.append(Claim(tenant, source, event_id, token, time_ms))
        return out

    def live_partials(self, batch: ShardBatch, rows: array[int]) -> list[Partial]:
        """The usage of ``rows`` of ``batch`` per (tenant, meter, window start), folded."""
        slugs, aggregations = self._slugs, self.aggregations
        out: list[Partial] = []
        for tenant, meter, start, quantity, latest_ms, distinct in self.shard.live_partials(
            batch, rows.tobytes()
        ):
            slug = slugs[meter]
            acc = ACCUMULATORS[aggregations[slug]]()
            value = Decimal(quantity)
            if isinstance(acc, SumAccumulator):
                acc.total = value
            elif isinstance(acc, CountAccumulator):
                acc.count = int(value)
            elif isinstance(acc, MaxAccumulator):
                acc.best = value
            elif isinstance(acc, UniqueCountAccumulator):
                acc.values = set(distinct)
            else:
                acc.time_ms, acc.latest = latest_ms, value
            out.append((tenant, slug, start, acc))
        return out

    def unseeded(self, partials: Sequence[Partial], pricing: PricingCatalog) -> list[PeriodRef]:
        """The billing periods ``partials`` touch that were not seeded yet."""
        places = ((tenant, meter, start) for tenant, meter, start, _ in partials)
        return unseeded_periods(places, pricing, self.seeded)

    def seed(
        self,
        periods: Sequence[PeriodRef],
        stored: Mapping[PeriodKey, Contribution],
        pricing: PricingCatalog,
    ) -> None:
        """Start ``periods`` from what other incarnations stored for them (by price version)."""
        seed_periods(
            periods, stored, pricing, ledger=self.ledger, live=self.live, seeded=self.seeded
        )

    def admit(self, batch: ShardBatch, rows: array[int]) -> None:
        """Fold the accepted ``rows`` of ``batch`` into their windows."""
        self.shard.admit(batch, rows.tobytes())

    def merge_live(self, live: Sequence[Partial], pricing: PricingCatalog) -> None:
        """Add a batch's ``live`` partials (``live_partials``) to the live usage."""
        self.live.merge(live, pricing)

    def event_log(self, batch: ShardBatch, rows: array[int], at_ms: int) -> tuple[bytes, int]:
        """The event log rows of ``rows`` (RowBinary of EVENT_LOG_COLUMNS) and how many."""
        return self.shard.event_log(batch, rows.tobytes(), self._event_types, at_ms)

    def live_changes(
        self, pricing: PricingCatalog, now_ms: int
    ) -> tuple[list[LiveCounter], list[QuotaEvent]]:
        """Live counters changed since the last call, and quota levels first reached."""
        return self.live.changes(pricing, now_ms)

    def finish(
        self, partition: PartitionKey | None, max_time_ms: int | None, now_s: float
    ) -> Revisions:
        """After a batch: move the watermark, emit closed windows and adjustments, expire keys."""
        self._emitted = self.shard.finish(partition, max_time_ms, now_s)
        return self._emitted

    def close_all(self) -> Revisions:
        """End of input: close every window."""
        self._emitted = self.shard.close_all()
        return self._emitted

    def next_wakeup(self, now_s: float) -> float | None:
        """Monotonic time at which finish() could next emit without new input."""
        return self.shard.next_wakeup(now_s)

    def rate(self, revisions: Revisions, pricing: PricingCatalog, now_ms: int) -> RatedColumns:
        """Price the last emission's revisions against their periods, then forget settled ones.

        ``revisions`` must be what the last ``finish``/``close_all`` returned: the
        amounts charged go back to their windows, for their next revision. No
        Python object per revision in the rating: the core's ledger prices the
        rows (``operators.native_rating``) and they leave as columns.
        """
        if revisions is not self._emitted:
            raise ValueError("rate() takes what the last finish() or close_all() returned")
        cols, ledger = revisions, self.ledger
        strings = cols.strings
        text = strings.__getitem__
        tenants = list(map(text, _ints(cols.tenant, "I")))
        meters = list(map(text, _ints(cols.meter, "I")))
        starts = _ints(cols.window_start, "q")
        quantities, previous = cols.quantity, cols.previous
        latest_ms = _ints(cols.latest_ms, "q")
        distinct = _ranges(strings, cols.distinct_end, cols.distinct)
        rows = RatingRows(
            tenants, meters, starts, quantities, previous, cols.amount, latest_ms, distinct
        )
        charges = ledger.rate(self.shard, rows, pricing)
        config = self.config
        forget_settled(
            self.shard.slowest_progress(), config, ledger=ledger, live=self.live, seeded=self.seeded
        )
        aggregations = {meter: a.value for meter, a in self.aggregations.items()}
        return RatedColumns(
            tenant=tenants,
            meter=meters,
            groups=_groups(strings, cols),
            window_start_ms=starts,
            window_end_ms=list(map(config.size_ms.__add__, starts)),
            quantity=quantities,
            previous_quantity=previous,
            amount=charges.amount,
            previous_amount=charges.previous_amount,
            currency=charges.currency,
            plan_id=charges.plan_id,
            price_version=charges.price_version,
            revision=_ints(cols.revision, "Q"),
            kind=list(map(_KINDS.__getitem__, cols.kind)),
            period_start_ms=charges.period_start_ms,
            period_quantity=charges.period_quantity,
            period_amount=charges.period_amount,
            aggregation=list(map(aggregations.__getitem__, meters)),
            latest_ms=latest_ms,
            distinct_values=list(map(sorted, distinct)),
            emitted_at_ms=now_ms,
            incarnation=ledger.incarnation,
            amount_changes=charges.amount_changes,
        )


def revision_usages(revisions: Revisions, meters: MeterCatalog, size_ms: int) -> list[WindowUsage]:
    """The revisions as the Python shard emits them: a WindowUsage with its accumulator each.

    For comparing the engines (tests, benchmarks); the flow rates the columns.
    """
    cols, strings = revisions, revisions.strings
    aggregations = {m.slug: m.aggregation for m in meters.meters}
    latest_ms = _ints(cols.latest_ms, "q")
    distinct = _ranges(strings, cols.distinct_end, cols.distinct)
    out: list[WindowUsage] = []
    for row, (
        tenant,
        meter,
        groups,
        start,
        quantity,
        previous,
        revision,
        kind,
        amount,
    ) in enumerate(
        zip(
            [strings[i] for i in _ints(cols.tenant, "I")],
            [strings[i] for i in _ints(cols.meter, "I")],
            _groups(strings, cols),
            _ints(cols.window_start, "q"),
            map(Decimal, cols.quantity),
            map(Decimal, cols.previous),
            _ints(cols.revision, "Q"),
            cols.kind,
            cols.amount,
            strict=True,
        )
    ):
        acc = ACCUMULATORS[aggregations[meter]]()
        acc.count = revision
        acc.emitted = quantity
        acc.amount = ZERO if amount is None else Decimal(amount)
        if isinstance(acc, SumAccumulator):
            acc.total = quantity
        elif isinstance(acc, MaxAccumulator):
            acc.best = quantity
        elif isinstance(acc, UniqueCountAccumulator):
            acc.values = set(distinct[row])
        elif isinstance(acc, LatestAccumulator):
            acc.time_ms, acc.latest = latest_ms[row], quantity
        out.append(
            WindowUsage(
                tenant,
                meter,
                groups,
                start,
                start + size_ms,
                quantity,
                previous,
                revision,
                WindowKind(_KINDS[kind]),
                acc,
            )
        )
    return out


def _groups(strings: list[str], cols: Revisions) -> list[GroupValues]:
    """Each row's (name, value) pairs."""
    ends = _ints(cols.group_end, "I")
    if not cols.group_name:
        return [()] * len(ends)
    names = [strings[i] for i in _ints(cols.group_name, "I")]
    values = [strings[i] for i in _ints(cols.group_value, "I")]
    pairs = list(zip(names, values, strict=True))
    return [tuple(pairs[begin:end]) for begin, end in zip([0, *ends], ends, strict=False)]


def _ranges(strings: list[str], ends_column: bytes, column: bytes) -> list[Sequence[str]]:
    """Each row's range of ``column`` (texts), its end in ``ends_column``."""
    ends = _ints(ends_column, "I")
    if not column:
        return [()] * len(ends)
    texts = [strings[i] for i in _ints(column, "I")]
    return [texts[begin:end] for begin, end in zip([0, *ends], ends, strict=False)]


def _ints(column: bytes, code: Literal["I", "q", "Q"]) -> list[int]:
    """A column of native-endian integers (``code``: an array typecode) as a list."""
    return memoryview(column).cast(code).tolist()
