"""The native core's split and shard (operators._native), behind ShardState's steps.

``NativeSplitter`` is ``ShardSplitter`` over parsed columns: one ``ShardBatch``
of columns per shard, which pickles as bytes. ``NativeShardState`` is
``ShardState``'s screen -> admit -> finish -> rate, with the dedup keys and
windows in Rust and no Python object per event: screening returns rows of the
batch, and only the rare too-late rejections and the window revisions (one
``WindowUsage`` each, Decimal only here, at the edge) become Python objects,
which the Python ``PeriodLedger`` rates. tests/native/test_shard_differential.py
holds both to operators/shard.py.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import accumulate

from config.meters import Aggregation, MeterCatalog
from config.pricing import PricingCatalog
from operators._native import NativeShard, ParsedColumns, Revisions, ShardBatch, split_batch
from operators.aggregation import (
    Accumulator,
    CountAccumulator,
    LatestAccumulator,
    MaxAccumulator,
    SumAccumulator,
    UniqueCountAccumulator,
)
from operators.model import RatedWindow, RawMessage, Reason, Rejection, WindowKind, WindowUsage
from operators.period_rating import PeriodLedger
from operators.shard import IncompatibleStateError, check_priced
from operators.windowing import PartitionKey, WindowConfig

_KINDS = (WindowKind.WINDOW, WindowKind.ADJUSTMENT)


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
        payloads = b"".join(m.payload for m in batch)
        ends = array("Q", accumulate(len(m.payload) for m in batch))
        offsets = array("q", (m.offset for m in batch))
        origin, number = partition
        parts = split_batch(
            columns, self._group_counts, payloads, ends, offsets, origin, number, self.shards
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
    ) -> None:
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
        self.ledger = PeriodLedger(self.aggregations, incarnation)
        self.instance = instance
        self._emitted: list[WindowUsage] = []

    def __getstate__(self) -> dict[str, object]:
        return {
            "shard": self.shard.snapshot(),
            "config": self.config,
            "aggregations": self.aggregations,
            "ledger": self.ledger,
            "instance": self.instance,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.shard = NativeShard.restore(state["shard"])  # type: ignore[arg-type]
        self.config = state["config"]  # type: ignore[assignment]
        self.aggregations = state["aggregations"]  # type: ignore[assignment]
        self.ledger = state["ledger"]  # type: ignore[assignment]
        self.instance = state["instance"]  # type: ignore[assignment]
        self._emitted = []

    def reconfigure(
        self,
        window: WindowConfig,
        meters: MeterCatalog,
        dedup_horizon_ms: int,
        expected_partitions: Iterable[PartitionKey] = (),
        pricing: PricingCatalog | None = None,
    ) -> None:
        """Apply the current settings to restored state: ShardState.reconfigure's rules."""
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
            tenants.update(key[0] for key in self.ledger.periods)
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
        self.ledger.aggregations = dict(self.aggregations)

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
                Rejection(
                    reason=Reason.TOO_LATE,
                    detail=f"time {time_ms} ms is beyond the settlement horizon of its window",
                    payload=payload,
                    origin=origin,
                    partition=partition,
                    offset=offset,
                    rejected_at_ms=now_ms,
                    event_id=event_id,
                    event_source=source,
                    tenant=tenant,
                )
            )
        return NativeScreened(rows, fresh_late, rejections, duplicates, late)

    def admit(self, batch: ShardBatch, rows: array[int]) -> None:
        """Fold the accepted ``rows`` of ``batch`` into their windows."""
        self.shard.admit(batch, rows.tobytes())

    def finish(
        self, partition: PartitionKey | None, max_time_ms: int | None, now_s: float
    ) -> list[WindowUsage]:
        """After a batch: move the watermark, emit closed windows and adjustments, expire keys."""
        return self._usages(self.shard.finish(partition, max_time_ms, now_s))

    def close_all(self) -> list[WindowUsage]:
        """End of input: close every window."""
        return self._usages(self.shard.close_all())

    def next_wakeup(self, now_s: float) -> float | None:
        """Monotonic time at which finish() could next emit without new input."""
        return self.shard.next_wakeup(now_s)

    def rate(
        self, usages: Sequence[WindowUsage], pricing: PricingCatalog, now_ms: int
    ) -> list[RatedWindow]:
        """Price the last emission's revisions against their periods, then forget settled ones.

        ``usages`` must be what the last ``finish``/``close_all`` returned: the
        amounts charged go back to their windows, for their next revision.
        """
        if usages is not self._emitted:
            raise ValueError("rate() takes the list the last finish() or close_all() returned")
        rated = [self.ledger.rate(usage, pricing, now_ms) for usage in usages]
        self.shard.set_amounts([str(u.accumulator.amount) for u in usages])
        config = self.config
        # A period's last window can change until the slowest input partition has
        # passed its end plus the settlement horizon.
        self.ledger.expire(self.shard.slowest_progress() - config.size_ms - config.settlement_ms)
        return rated

    def _usages(self, cols: Revisions) -> list[WindowUsage]:
        strings = cols.strings
        tenant = memoryview(cols.tenant).cast("I")
        meter = memoryview(cols.meter).cast("I")
        group_end = memoryview(cols.group_end).cast("I")
        group_name = memoryview(cols.group_name).cast("I")
        group_value = memoryview(cols.group_value).cast("I")
        start = memoryview(cols.window_start).cast("q")
        revision = memoryview(cols.revision).cast("Q")
        kind = cols.kind
        latest_ms = memoryview(cols.latest_ms).cast("q")
        distinct_end = memoryview(cols.distinct_end).cast("I")
        distinct = memoryview(cols.distinct).cast("I")
        size = self.config.size_ms
        out: list[WindowUsage] = []
        groups_from = distinct_from = 0
        for row in range(len(cols)):
            slug = strings[meter[row]]
            quantity = Decimal(cols.quantity[row])
            groups = tuple(
                (strings[group_name[k]], strings[group_value[k]])
                for k in range(groups_from, group_end[row])
            )
            groups_from = group_end[row]
            values = {strings[distinct[k]] for k in range(distinct_from, distinct_end[row])}
            distinct_from = distinct_end[row]
            acc = _accumulator(
                self.aggregations[slug], quantity, revision[row], latest_ms[row], values
            )
            amount = cols.amount[row]
            acc.amount = Decimal(0) if amount is None else Decimal(amount)
            out.append(
                WindowUsage(
                    strings[tenant[row]],
                    slug,
                    groups,
                    start[row],
                    start[row] + size,
                    quantity,
                    Decimal(cols.previous[row]),
                    revision[row],
                    _KINDS[kind[row]],
                    acc,
                )
            )
        self._emitted = out
        return out


def _accumulator(
    aggregation: Aggregation, quantity: Decimal, count: int, latest_ms: int, values: set[str]
) -> Accumulator:
    """The window's Python accumulator as of this revision: what the ledger merges."""
    acc: Accumulator
    match aggregation:
        case Aggregation.SUM:
            acc = SumAccumulator()
            acc.total = quantity
        case Aggregation.COUNT:
            acc = CountAccumulator()
        case Aggregation.MAX:
            acc = MaxAccumulator()
            acc.best = quantity
        case Aggregation.UNIQUE_COUNT:
            acc = UniqueCountAccumulator()
            acc.values = values
        case Aggregation.LATEST:
            acc = LatestAccumulator()
            acc.time_ms, acc.latest = latest_ms, quantity
    acc.count = count
    acc.emitted = quantity
    return acc
