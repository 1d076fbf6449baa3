"""The stateful step: one shard state per shard key, driven by Bytewax.

Everything it decides is in operators.shard (or, with flow.engine: native, in
operators.native_shard); this file only adapts the engine's callbacks
(batches, notifications, end of input, snapshots).
"""

from __future__ import annotations

import pickle
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, NamedTuple, TypeVar

from bytewax.operators import StatefulBatchLogic

from config.clock import SYSTEM_CLOCK, Clock, engine_deadline
from config.pricing import PricingCatalog
from dataflows.metrics import LATENCY_SAMPLES_PER_BATCH as SAMPLES
from dataflows.metrics import Metrics, StageTimer, sample
from dataflows.shutdown import StopRequest
from dataflows.stats import RunStats
from operators._native import Revisions
from operators._native import ShardBatch as NativeShardBatch
from operators.contributions import Contribution
from operators.idempotency import DUPLICATE_DIGIT, ClaimStatus, IdempotencyStore
from operators.live_usage import LiveCounter, QuotaEvent
from operators.model import Event, RatedColumns, RatedWindow, Rejection, WindowKind, WindowUsage
from operators.native_shard import NativeScreened, NativeShardState
from operators.period_rating import PeriodKey, PeriodRef
from operators.shard import Screened, ShardState
from operators.windowing import NO_WATERMARK, PartitionKey


class Admitted(NamedTuple):
    """The events one batch added to the windows, for the append-only event log."""

    events: list[Event]
    at_ms: int


class AdmittedRows(NamedTuple):
    """Admitted, from the native engine: ``size`` event log rows already encoded
    (RowBinary of operators._native.EVENT_LOG_COLUMNS)."""

    rows: bytes
    size: int
    at_ms: int
    # When a sample of the events arrived (for the latency metric).
    arrivals_ms: tuple[int, ...] = ()


class LiveUpdate(NamedTuple):
    """Live counters changed since the last update, and the quota levels reached.

    ``arrivals_ms`` samples when the events behind it arrived (for the latency metric).
    """

    counters: list[LiveCounter]
    quota_events: list[QuotaEvent]
    at_ms: int
    arrivals_ms: tuple[int, ...] = ()


Output = RatedWindow | RatedColumns | Rejection | Admitted | AdmittedRows | LiveUpdate
# (own incarnation, periods) -> what other incarnations stored for them.
SeedReader = Callable[[str, Sequence[PeriodRef]], Mapping[PeriodKey, Contribution]]
DUPLICATE = ClaimStatus.DUPLICATE
# Arrival samples kept for one live update, however many batches it covers.
MAX_ARRIVAL_SAMPLES = 256


class ShardBatch(NamedTuple):
    """The part of one input batch that belongs to one shard.

    ``max_time_ms`` is the latest accepted event time of the whole input batch:
    every shard learns how far the input partition has progressed, even from
    batches that carry none of its tenants. ``progress_ms`` has, for each of
    ``events``, how far it had got at that event (see operators.sharding).
    """

    partition: PartitionKey
    max_time_ms: int | None
    events: list[Event]
    progress_ms: list[int]


# A shard's state: the Python operators' or the native core's (flow.engine).
S = TypeVar("S", ShardState, NativeShardState)
# What one shard receives per input batch, by engine.
B = TypeVar("B", ShardBatch, NativeShardBatch)


@dataclass(frozen=True)
class StepContext(Generic[S]):
    """What every shard logic shares: how to build state, rate, claim and count."""

    new_state: Callable[[], S]
    # Applies the current settings to a state restored from a snapshot.
    reconfigure: Callable[[S], None]
    pricing: PricingCatalog
    stats: RunStats
    snapshots: bool
    idempotency: IdempotencyStore | None = None
    event_log: bool = True
    live_usage: bool = False
    # Live counters go out at most this often (0: after every batch).
    live_interval_s: float = 0.0
    metrics: Metrics | None = None
    # A stop signal ends the input without it having ended for good.
    stop: StopRequest = field(default_factory=StopRequest)
    clock: Clock = SYSTEM_CLOCK
    # Reads the stored usage of billing periods a shard meets for the first time.
    seeds: SeedReader | None = None


class _ShardLogic(StatefulBatchLogic[B, Output, bytes | None], Generic[S, B]):
    """What both engines' logics share: state, notifications, end of input, snapshots."""

    def __init__(self, context: StepContext[S], resume: bytes | None) -> None:
        self._ctx: StepContext[S] = context
        self._state: S
        if resume is None:
            self._state = context.new_state()
        else:
            self._state = pickle.loads(resume)
            context.reconfigure(self._state)
        self._state.resume(time.monotonic())
        # Read by the metrics endpoint's thread: a copy, since the native state cannot be
        # borrowed while the flow thread works in it with the GIL released.
        self._watermark = self._state.watermark
        if context.metrics is not None:
            context.metrics.watch_watermark(self)
        self._next_live_s = 0.0
        # Arrival times of a sample of the events behind the pending live update.
        self._arrivals: list[int] = []

    def watermark_ms(self) -> int | None:
        """The shard's event-time watermark after its last step (None before it has one)."""
        watermark = self._watermark
        return None if watermark == NO_WATERMARK else watermark

    def _publish_live(self, out: list[Output], now_ms: int, *, force: bool) -> None:
        """Emit the changed live counters when the publish interval is up (or ``force``)."""
        if not self._ctx.live_usage or not self._state.live.pending:
            return
        now_s = time.monotonic()
        if not force and now_s < self._next_live_s:
            return
        self._next_live_s = now_s + self._ctx.live_interval_s
        counters, quota_events = self._state.live_changes(self._ctx.pricing, now_ms)
        if counters:
            out.append(LiveUpdate(counters, quota_events, now_ms, tuple(self._arrivals)))
        self._arrivals = []
        metrics = self._ctx.metrics
        if metrics is not None:
            for event in quota_events:
                metrics.quota_events.labels(event.kind).inc()

    def _live_wakeup(self) -> float | None:
        """Monotonic time at which live counters are next due (None: nothing pending)."""
        return self._next_live_s if self._ctx.live_usage and self._state.live.pending else None

    def on_notify(self) -> tuple[Iterable[Output], bool]:
        out: list[Output] = []
        timer = StageTimer()
        now_ms = self._ctx.clock.now_ms()
        usages = self._state.finish(None, None, time.monotonic())
        timer.lap("finish")
        self._rate_into(out, usages, now_ms)
        timer.lap("rate")
        self._publish_live(out, now_ms, force=False)
        timer.lap("live")
        self._observe(timer)
        return out, self.RETAIN

    def on_eof(self) -> tuple[Iterable[Output], bool]:
        out: list[Output] = []
        timer = StageTimer()
        now_ms = self._ctx.clock.now_ms()
        self._publish_live(out, now_ms, force=True)
        timer.lap("live")
        # A stop signal pauses the input: with snapshots, open windows stay open for
        # the next run to fill. Closing them would push the watermark past events
        # still to come, making them adjustments or too late.
        if not (self._ctx.stop.requested and self._ctx.snapshots):
            usages = self._state.close_all()
            timer.lap("finish")
            self._rate_into(out, usages, now_ms)
            timer.lap("rate")
        self._observe(timer)
        return out, self.RETAIN

    def _observe(self, timer: StageTimer) -> None:
        self._watermark = self._state.watermark
        if self._ctx.metrics is not None:
            self._ctx.metrics.observe_stages(timer.seconds)

    def notify_at(self) -> datetime | None:
        now = time.monotonic()
        wake = self._state.next_wakeup(now)
        live = self._live_wakeup()
        if live is not None:
            wake = live if wake is None else min(wake, live)
        if wake is None:
            return None
        return engine_deadline(max(0.0, wake - now))

    def snapshot(self) -> bytes | None:
        # Pickled here, so the snapshot is immutable whatever happens to the state next.
        if not self._ctx.snapshots:
            return None
        return pickle.dumps(self._state, protocol=pickle.HIGHEST_PROTOCOL)

    def _rate_into(
        self, out: list[Output], usages: list[WindowUsage] | Revisions, now_ms: int
    ) -> None:
        if not usages:
            return
        # ``usages`` is what this state's own finish() returned, whichever the engine.
        rated = self._state.rate(usages, self._ctx.pricing, now_ms)  # type: ignore[arg-type]
        # The native engine's revisions go on as one item of columns.
        if isinstance(rated, RatedColumns):
            out.append(rated)
            adjustments = rated.kind.count(WindowKind.ADJUSTMENT.value)
        else:
            out.extend(rated)
            adjustments = sum(w.kind is WindowKind.ADJUSTMENT for w in rated)
        if not isinstance(rated, RatedColumns):
            # The native engine's ledger notes its periods itself (watch_periods).
            self._ctx.stats.rated(rated)
        self._ctx.stats.add(windows=len(usages) - adjustments, adjustments=adjustments)
        if self._ctx.metrics is not None:
            self._ctx.metrics.count_amounts(rated)


class MeteringLogic(_ShardLogic[ShardState, ShardBatch]):
    """Adapts ShardState to Bytewax's batch stateful operator."""

    def on_batch(self, values: list[ShardBatch]) -> tuple[Iterable[Output], bool]:
        state, stats, metrics = self._state, self._ctx.stats, self._ctx.metrics
        started = time.perf_counter()
        timer = StageTimer()
        now_ms = self._ctx.clock.now_ms()
        out: list[Output] = []
        for batch in values:
            screened = state.screen(batch.partition, batch.events, batch.progress_ms, now_ms)
            timer.lap("screen")
            fresh, durable_duplicates, late = self._claim(screened)
            timer.lap("claim")
            if fresh and self._ctx.seeds is not None:
                self._seed(fresh)
            state.admit(fresh, self._ctx.pricing if self._ctx.live_usage else None)
            if fresh and self._ctx.event_log:
                out.append(Admitted(fresh, now_ms))
            out.extend(screened.too_late)
            timer.lap("fold")
            usages = state.finish(batch.partition, batch.max_time_ms, time.monotonic())
            timer.lap("finish")
            self._rate_into(out, usages, now_ms)
            timer.lap("rate")
            stats.add(
                accepted=len(fresh),
                duplicates=screened.duplicates + durable_duplicates,
                redis_duplicates=durable_duplicates,
                late=late,
            )
            if screened.too_late:
                stats.reject(Counter(r.reason.value for r in screened.too_late))
            if self._ctx.live_usage and fresh and len(self._arrivals) < MAX_ARRIVAL_SAMPLES:
                self._arrivals.extend(e.message.arrived_ms for e in sample(fresh, SAMPLES))
            timer.lap("count")
        self._publish_live(out, now_ms, force=False)
        timer.lap("live")
        self._watermark = self._state.watermark
        if metrics is not None:
            metrics.batch_seconds.observe(time.perf_counter() - started)
            metrics.observe_stages(timer.seconds)
        return out, self.RETAIN

    def _seed(self, events: list[Event]) -> None:
        """Seed the periods ``events`` are the first of, from what other incarnations stored."""
        state, pricing, read = self._state, self._ctx.pricing, self._ctx.seeds
        periods = state.unseeded(events, pricing)
        if periods and read is not None:
            state.seed(periods, read(state.ledger.incarnation, periods), pricing)

    def _claim(self, screened: Screened) -> tuple[list[Event], int, int]:
        """Ask the durable store; keep NEW and REPLAY (our own message again).

        Returns the kept events, the durable duplicates and how many kept events
        are late (only late events that were counted).
        """
        events = screened.fresh
        store = self._ctx.idempotency
        if store is None or not events:
            return events, 0, screened.late
        started = time.perf_counter()
        statuses = store.claim(self._state.claims(events))
        if self._ctx.metrics is not None:
            self._ctx.metrics.redis_seconds.labels("claim").observe(time.perf_counter() - started)
        kept: list[Event] = []
        late = 0
        for event, is_late, status in zip(events, screened.fresh_late, statuses, strict=True):
            if status != DUPLICATE:
                kept.append(event)
                late += is_late
        return kept, len(events) - len(kept), late


class _Admitted(NamedTuple):
    """A native batch whose events are in their windows, its windows closed: what is left
    to do for it (live usage, event log, rating, counts) does not touch what the next
    batch's screen reads."""

    batch: NativeShardBatch
    screened: NativeScreened
    fresh: array[int]
    late: int
    revisions: Revisions


class NativeMeteringLogic(_ShardLogic[NativeShardState, NativeShardBatch]):
    """Adapts NativeShardState (flow.engine: native) to Bytewax's batch stateful operator.

    MeteringLogic's steps, on rows of columns: screen -> claim -> admit -> finish,
    then seed, live usage, event log and rating. While Redis runs a batch's
    claims, the batch before it is concluded: its seeding, live usage, event
    log rows and rating only touch what the next screen does not read, and
    each batch is still screened after the one before it was admitted and its
    windows closed, and rated before the next one's windows close. So the
    outputs are those of one batch after the other.
    """

    def __init__(self, context: StepContext[NativeShardState], resume: bytes | None) -> None:
        super().__init__(context, resume)
        context.stats.watch_periods(self._state.ledger.rated_periods)

    def on_batch(self, values: list[NativeShardBatch]) -> tuple[Iterable[Output], bool]:
        state, metrics = self._state, self._ctx.metrics
        started = time.perf_counter()
        timer = StageTimer()
        now_ms = self._ctx.clock.now_ms()
        out: list[Output] = []
        admitted: _Admitted | None = None
        for batch in values:
            screened = state.screen(batch, now_ms)
            timer.lap("screen")
            claimed = self._start_claim(batch, screened)
            timer.lap("claim")
            if admitted is not None:
                self._conclude(admitted, out, now_ms, timer)
            fresh, late = claimed()
            timer.lap("claim")
            state.admit(batch, fresh)
            timer.lap("fold")
            revisions = state.finish(batch.partition, batch.max_time_ms, time.monotonic())
            timer.lap("finish")
            admitted = _Admitted(batch, screened, fresh, late, revisions)
        if admitted is not None:
            self._conclude(admitted, out, now_ms, timer)
        self._publish_live(out, now_ms, force=False)
        timer.lap("live")
        self._watermark = self._state.watermark
        if metrics is not None:
            metrics.batch_seconds.observe(time.perf_counter() - started)
            metrics.observe_stages(timer.seconds)
        return out, self.RETAIN

    def _conclude(
        self, admitted: _Admitted, out: list[Output], now_ms: int, timer: StageTimer
    ) -> None:
        """Seed, live usage, event log, rating and counts of an admitted batch."""
        state, stats, pricing = self._state, self._ctx.stats, self._ctx.pricing
        batch, screened, fresh = admitted.batch, admitted.screened, admitted.fresh
        durable_duplicates = len(screened.fresh) - len(fresh)
        # The usage per tenant, meter and window: what live usage and seeding need.
        wanted = self._ctx.live_usage or self._ctx.seeds is not None
        live = state.live_partials(batch, fresh) if wanted and fresh else []
        if live and self._ctx.seeds is not None:
            periods = state.unseeded(live, pricing)
            if periods:
                read = self._ctx.seeds(state.ledger.incarnation, periods)
                state.seed(periods, read, pricing)
        if live and self._ctx.live_usage:
            state.merge_live(live, pricing)
        out.extend(screened.too_late)
        timer.lap("fold")
        arrivals = batch.arrivals(list(sample(fresh, SAMPLES))) if fresh else []
        if fresh and self._ctx.event_log:
            rows, size = state.event_log(batch, fresh, now_ms)
            out.append(AdmittedRows(rows, size, now_ms, tuple(arrivals)))
            timer.lap("event_log")
        self._rate_into(out, admitted.revisions, now_ms)
        timer.lap("rate")
        stats.add(
            accepted=len(fresh),
            duplicates=screened.duplicates + durable_duplicates,
            redis_duplicates=durable_duplicates,
            late=admitted.late,
        )
        if screened.too_late:
            stats.reject(Counter(r.reason.value for r in screened.too_late))
        if self._ctx.live_usage and len(self._arrivals) < MAX_ARRIVAL_SAMPLES:
            self._arrivals.extend(arrivals)
        timer.lap("count")

    def _start_claim(
        self, batch: NativeShardBatch, screened: NativeScreened
    ) -> Callable[[], tuple[array[int], int]]:
        """Ask the durable store; the returned call gives the NEW and REPLAY rows and how
        many of them are late (waiting for the store's answer)."""
        rows, store = screened.fresh, self._ctx.idempotency
        if store is None or not rows:
            return lambda: (rows, screened.late)
        started = time.perf_counter()
        digits_of = store.start_claim_packed(
            self._state.claims(batch, rows), lambda: self._state.unpacked_claims(batch, rows)
        )
        sending = time.perf_counter() - started

        def kept() -> tuple[array[int], int]:
            waited = time.perf_counter()
            digits = digits_of()
            if self._ctx.metrics is not None:
                # The flow's time on the claim: sending it, then waiting for the answer
                # (not the batch before's work in between).
                seconds = sending + time.perf_counter() - waited
                self._ctx.metrics.redis_seconds.labels("claim").observe(seconds)
            if DUPLICATE_DIGIT not in digits:
                return rows, screened.late
            out, late = array("I"), 0
            for row, is_late, digit in zip(rows, screened.fresh_late, digits, strict=True):
                if digit != DUPLICATE_DIGIT:
                    out.append(row)
                    late += is_late
            return out, late

        return kept
