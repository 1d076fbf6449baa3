"""One shard's metering state: duplicate screening, then event-time windows.

The steps are split so that a durable dedup layer (Redis) can sit between
screening and admission: ``screen`` -> (claim ``claims(fresh)``, drop the
duplicates) -> ``admit`` -> ``finish``. Keys the durable layer calls
duplicates stay in the keyed state: later copies are caught there, cheaply.

Before a batch is admitted, the billing periods it touches for the first time
can be seeded (``unseeded`` -> read what other flow incarnations stored ->
``seed``), so periods go on from the stored usage and cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from config.meters import Aggregation
from config.pricing import PricingCatalog
from operators.contributions import Contribution
from operators.dedup import DedupState
from operators.idempotency import Claim, claim_token
from operators.live_usage import CounterKey, LiveCounter, LiveUsage, QuotaEvent
from operators.model import Event, RatedWindow, Reason, Rejection, WindowUsage
from operators.period_rating import Ledger, PeriodKey, PeriodLedger, PeriodRef
from operators.periods import NEVER_MS, BillingSegment, billing_segment
from operators.windowing import Lateness, PartitionKey, WindowConfig, WindowStore


class IncompatibleStateError(ValueError):
    """Restored state cannot work with the current settings; the message says which."""


def check_shards(built_with: int, shards: int) -> None:
    """Refuse another shard count than restored state was built with (0: not known)."""
    if shards and built_with and shards != built_with:
        raise IncompatibleStateError(
            f"flow.shards is {shards} but the recovery state spreads tenants over "
            f"{built_with} shards; keep it, or start with a new recovery directory"
        )


@dataclass(slots=True)
class Screened:
    """Outcome of screening a batch against this shard's state.

    ``late`` counts the LATE events among ``fresh``; ``fresh_late`` says which.
    """

    fresh: list[Event] = field(default_factory=list)
    fresh_late: list[bool] = field(default_factory=list)
    too_late: list[Rejection] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0


class ShardState:
    """Dedup keys and windows for the tenants routed to one shard."""

    def __init__(
        self,
        window: WindowConfig,
        aggregations: Mapping[str, Aggregation],
        dedup_horizon_ms: int,
        instance: str,
        expected_partitions: Iterable[PartitionKey] = (),
        *,
        incarnation: str = "",
        shards: int = 0,
    ) -> None:
        self.windows = WindowStore(window, aggregations, expected_partitions)
        # How many shards the tenants were spread over (0: not recorded); see reconfigure().
        self.shards = shards
        # Rows of one incarnation replace each other (highest revision wins); those of
        # several combine (see operators.contributions).
        self.ledger = PeriodLedger(aggregations, incarnation)
        self.live = LiveUsage(aggregations)
        self.dedup = DedupState(dedup_horizon_ms, bucket_ms=window.size_ms)
        # Names the flow in durable idempotency claims: the same after a restart
        # from recovery (even one before the first snapshot), so replayed messages
        # are not duplicates of themselves; new for a flow started afresh.
        self.instance = instance
        # Periods already seeded from the stores (or found empty there), with their ends.
        self.seeded = SeededPeriods()

    def claims(self, events: Sequence[Event]) -> list[Claim]:
        """Durable-store claims for ``events``, tokened with this instance and their positions."""
        instance = self.instance
        return [
            Claim(
                e.tenant,
                e.source,
                e.id,
                claim_token(instance, e.message.origin, e.message.partition, e.message.offset),
                e.time_ms,
            )
            for e in events
        ]

    def reconfigure(
        self,
        window: WindowConfig,
        aggregations: Mapping[str, Aggregation],
        dedup_horizon_ms: int,
        expected_partitions: Iterable[PartitionKey] = (),
        *,
        pricing: PricingCatalog | None = None,
        shards: int = 0,
    ) -> None:
        """Apply the current settings to state restored from a snapshot.

        ``shards`` may not change either: a tenant routed to another shard would
        start its windows, period ledger and dedup keys afresh there.

        Grace, settlement, idle timeout, dedup horizon, new meters and the input
        partitions may change between runs; the window length and a meter's
        aggregation may not, as the state was built with them, and every tenant
        with restored usage must still have a plan (given ``pricing``).
        """
        check_shards(getattr(self, "shards", 0), shards)
        old = self.windows.config
        if window.size_ms != old.size_ms:
            raise IncompatibleStateError(
                f"window.size is {window.size_ms} ms but the recovery state was built with "
                f"{old.size_ms} ms; keep it, or start with a new recovery directory"
            )
        for meter, aggregation in self.windows.aggregations.items():
            if aggregations.get(meter, aggregation) != aggregation:
                raise IncompatibleStateError(
                    f"meter {meter!r} is now {aggregations[meter]} but the recovery state "
                    f"aggregates it as {aggregation}; keep it, or give the new meter a new slug"
                )
        if pricing is not None:
            self._check_priced(pricing)
        # A meter dropped from the catalog keeps its aggregation: its restored
        # windows and periods must still close and be rated.
        merged = {**self.windows.aggregations, **aggregations}
        self.windows.config = window
        self.windows.aggregations = merged
        self.windows.expected_partitions = frozenset(expected_partitions)
        self.ledger.aggregations = dict(merged)
        self.live.aggregations = dict(merged)
        self.dedup.horizon_ms = dedup_horizon_ms
        # State from before incarnations were kept: its rows are incarnation "".
        vars(self.ledger).setdefault("incarnation", "")
        # State from before SeededPeriods held a plain dict (or nothing, before seeding).
        seeded = vars(self).get("seeded", {})
        if not isinstance(seeded, SeededPeriods):
            self.seeded = SeededPeriods(seeded)

    def _check_priced(self, pricing: PricingCatalog) -> None:
        """Refuse a catalog that no longer prices a tenant whose usage is in this state."""
        tenants = {
            key[0]
            for windows in (self.windows.open, self.windows.settled)
            for series in windows.values()
            for key in series
        }
        tenants.update(key[0] for key in self.ledger.periods)
        check_priced(tenants, pricing)

    def resume(self, now_s: float) -> None:
        """Called when the flow starts or restarts: start the quiet-time clocks."""
        self.windows.resume(now_s)

    @property
    def watermark(self) -> int:
        """The event-time watermark (windowing.NO_WATERMARK before it has one)."""
        return self.windows.watermark

    def next_wakeup(self, now_s: float) -> float | None:
        """Monotonic time at which finish() could next emit without new input."""
        return self.windows.next_wakeup(now_s)

    def screen(
        self,
        partition: PartitionKey,
        events: Sequence[Event],
        progress_ms: Sequence[int],
        now_ms: int,
    ) -> Screened:
        """Drop in-state duplicates, reject too-late events, keep the rest (in order).

        ``events`` come from one batch of ``partition``; ``progress_ms[i]`` is the
        latest event time of that batch up to and including ``events[i]`` (all
        tenants'), so each event is judged by how far its partition had got.
        """
        result = Screened()
        lateness = self.windows.lateness
        add = self.dedup.add
        fresh, fresh_late = result.fresh, result.fresh_late
        seen = self.dedup.__contains__
        before = self.windows.progress(partition)
        for event, progress in zip(events, progress_ms, strict=True):
            key = event.idempotency_key
            status = lateness(event.time_ms, max(before, progress))
            # A copy of a counted event is a duplicate even when it comes too late
            # (while its key is remembered: see the README on lateness).
            if status is Lateness.TOO_LATE:
                if seen(key):
                    result.duplicates += 1
                else:
                    result.too_late.append(_too_late(event, now_ms))
                continue
            if not add(key, event.time_ms):
                result.duplicates += 1
                continue
            is_late = status is Lateness.LATE
            result.late += is_late
            fresh.append(event)
            fresh_late.append(is_late)
        return result

    def admit(self, events: Sequence[Event], pricing: PricingCatalog | None = None) -> None:
        """Fold accepted events into their windows (and, given pricing, the live usage)."""
        fold = self.windows.fold
        for event in events:
            fold(event)
        if pricing is not None:
            self.live.fold(events, pricing, self.windows.config.size_ms)

    def unseeded(self, events: Sequence[Event], pricing: PricingCatalog) -> list[PeriodRef]:
        """The billing periods ``events`` touch that were not seeded yet."""
        size = self.windows.config.size_ms
        places = (
            (event.tenant, measure.meter, event.time_ms - event.time_ms % size)
            for event in events
            for measure in event.measures
        )
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

    def live_changes(
        self, pricing: PricingCatalog, now_ms: int
    ) -> tuple[list[LiveCounter], list[QuotaEvent]]:
        """Live counters changed since the last call, and quota levels first reached."""
        return self.live.changes(pricing, now_ms)

    def finish(
        self, partition: PartitionKey | None, max_time_ms: int | None, now_s: float
    ) -> list[WindowUsage]:
        """After a batch: move the watermark, emit closed windows and adjustments, expire keys."""
        if partition is not None:
            self.windows.observe(partition, max_time_ms, now_s)
        out = self.windows.advance(now_s)
        # Keys stay while a lagging partition can still send an accepted copy.
        self.dedup.expire(self.windows.slowest_progress())
        return out

    def close_all(self) -> list[WindowUsage]:
        """End of input: close every window."""
        return self.windows.close_all()

    def rate(
        self, usages: Sequence[WindowUsage], pricing: PricingCatalog, now_ms: int
    ) -> list[RatedWindow]:
        """Price window revisions against their billing periods, then forget settled periods."""
        rated = [self.ledger.rate(usage, pricing, now_ms) for usage in usages]
        forget_settled(
            self.windows.slowest_progress(),
            self.windows.config,
            ledger=self.ledger,
            live=self.live,
            seeded=self.seeded,
        )
        return rated


def unseeded_periods(
    places: Iterable[tuple[str, str, int]],
    pricing: PricingCatalog,
    seeded: Mapping[CounterKey, int],
) -> list[PeriodRef]:
    """The billing periods of ``places`` (tenant, meter, window start) not in ``seeded``."""
    segments: dict[tuple[str, int], BillingSegment | None] = {}
    found: dict[CounterKey, PeriodRef] = {}
    for tenant, meter, start in places:
        place = (tenant, start)
        if place not in segments:
            segments[place] = billing_segment(pricing, tenant, start)
        segment = segments[place]
        if segment is None:
            continue
        key = (tenant, meter, segment.period_start_ms)
        if key not in seeded and key not in found:
            found[key] = PeriodRef(*key, segment.period_end_ms)
    return list(found.values())


def forget_settled(
    slowest_progress_ms: int,
    config: WindowConfig,
    *,
    ledger: Ledger,
    live: LiveUsage,
    seeded: SeededPeriods,
) -> None:
    """Forget the periods no window can change any more, seeded ones included.

    A period's last window can change until the slowest input partition has
    passed its end plus the settlement horizon.
    """
    done_before = slowest_progress_ms - config.size_ms - config.settlement_ms
    ledger.expire(done_before)
    live.expire(done_before)
    seeded.expire(done_before)


class SeededPeriods(dict[CounterKey, int]):
    """Periods seeded from the stores (or found empty there) -> their ends.

    Knows its earliest end, so forgetting costs nothing until a period is due:
    it runs after every batch, over every period the shard has met.
    """

    # A class default: a restored or copied one looks once, then knows.
    earliest_end_ms = -NEVER_MS

    def __setitem__(self, key: CounterKey, end_ms: int) -> None:
        super().__setitem__(key, end_ms)
        self.earliest_end_ms = min(self.earliest_end_ms, end_ms)

    def expire(self, before_ms: int) -> None:
        """Forget the periods that ended before ``before_ms``."""
        if before_ms < self.earliest_end_ms:
            return
        for key in [key for key, end in self.items() if end <= before_ms]:
            del self[key]
        self.earliest_end_ms = min(self.values(), default=NEVER_MS)


def seed_periods(
    periods: Sequence[PeriodRef],
    stored: Mapping[PeriodKey, Contribution],
    pricing: PricingCatalog,
    *,
    ledger: Ledger,
    live: LiveUsage,
    seeded: dict[CounterKey, int],
) -> None:
    """Start ``periods`` in ``ledger`` and ``live`` from what other incarnations stored."""
    by_period: dict[CounterKey, dict[str, Contribution]] = {}
    for (tenant, meter, start, version), part in stored.items():
        by_period.setdefault((tenant, meter, start), {})[version] = part
    for ref in periods:
        key = (ref.tenant, ref.meter, ref.start_ms)
        seeded[key] = ref.end_ms
        versions = by_period.get(key, {})
        for version, part in versions.items():
            ledger.seed(PeriodKey(*key, version), part, ref.end_ms)
        live.seed(key, ref.end_ms, versions, pricing)


def check_priced(tenants: Iterable[str], pricing: PricingCatalog) -> None:
    """Refuse a catalog without a plan for one of ``tenants`` (whose usage is in restored state)."""
    unpriced = sorted(t for t in tenants if pricing.subscription_for(t) is None)
    if unpriced:
        shown = ", ".join(repr(t) for t in unpriced[:5])
        more = f" and {len(unpriced) - 5} more" if len(unpriced) > 5 else ""
        raise IncompatibleStateError(
            f"tenant(s) {shown}{more} have usage in the recovery state but no plan in the "
            "pricing catalog; give them a subscription (or a default_plan) until their "
            "windows are settled, or start with a new recovery directory"
        )


def _too_late(event: Event, now_ms: int) -> Rejection:
    message = event.message
    return too_late_rejection(
        message.payload,
        (message.origin, message.partition, message.offset),
        event_id=event.id,
        source=event.source,
        tenant=event.tenant,
        time_ms=event.time_ms,
        now_ms=now_ms,
    )


def too_late_rejection(
    payload: bytes,
    position: tuple[str, int, int],
    *,
    event_id: str,
    source: str,
    tenant: str,
    time_ms: int,
    now_ms: int,
) -> Rejection:
    """The rejection of an event beyond its window's settlement horizon (both engines).

    ``position`` is the message's input origin, partition and offset.
    """
    origin, partition, offset = position
    return Rejection(
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
