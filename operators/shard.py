"""One shard's metering state: duplicate screening, then event-time windows.

The steps are split so that a durable dedup layer (Redis) can sit between
screening and admission: ``screen`` -> (claim ``claims(fresh)``, drop the
duplicates) -> ``admit`` -> ``finish``. Keys the durable layer calls
duplicates stay in the keyed state: later copies are caught there, cheaply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from config.meters import Aggregation
from operators.dedup import DedupState
from operators.idempotency import Claim, claim_token
from operators.model import Event, Reason, Rejection, WindowUsage
from operators.windowing import Lateness, PartitionKey, WindowConfig, WindowStore


@dataclass(slots=True)
class Screened:
    """Outcome of screening a batch against this shard's state."""

    fresh: list[Event] = field(default_factory=list)
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
    ) -> None:
        self.windows = WindowStore(window, aggregations, expected_partitions)
        self.dedup = DedupState(dedup_horizon_ms, bucket_ms=window.size_ms)
        # Names the flow in durable idempotency claims: the same after a restart
        # from recovery (even one before the first snapshot), so replayed messages
        # are not duplicates of themselves; new for a flow started afresh.
        self.instance = instance

    def claims(self, events: Sequence[Event]) -> list[Claim]:
        """Durable-store claims for ``events``, tokened with this instance and their positions."""
        instance = self.instance
        return [
            Claim(
                e.tenant,
                e.source,
                e.id,
                claim_token(instance, e.message.origin, e.message.partition, e.message.offset),
            )
            for e in events
        ]

    def resume(self, now_s: float) -> None:
        """Called when the flow starts or restarts: start the quiet-time clocks."""
        self.windows.resume(now_s)

    def screen(self, events: Sequence[Event], now_ms: int) -> Screened:
        """Drop in-state duplicates, reject too-late events, keep the rest (in order)."""
        result = Screened()
        lateness = self.windows.lateness
        add = self.dedup.add
        fresh = result.fresh
        for event in events:
            status = lateness(event.time_ms)
            if status is Lateness.TOO_LATE:
                result.too_late.append(_too_late(event, now_ms))
                continue
            if not add(event.idempotency_key, event.time_ms):
                result.duplicates += 1
                continue
            if status is Lateness.LATE:
                result.late += 1
            fresh.append(event)
        return result

    def admit(self, events: Sequence[Event]) -> None:
        """Fold accepted events into their windows."""
        fold = self.windows.fold
        for event in events:
            fold(event)

    def finish(
        self, partition: PartitionKey | None, max_time_ms: int | None, now_s: float
    ) -> list[WindowUsage]:
        """After a batch: move the watermark, emit closed windows and adjustments, expire keys."""
        if partition is not None:
            self.windows.observe(partition, max_time_ms, now_s)
        out = self.windows.advance(now_s)
        self.dedup.expire(self.windows.watermark)
        return out

    def close_all(self) -> list[WindowUsage]:
        """End of input: close every window."""
        return self.windows.close_all()


def _too_late(event: Event, now_ms: int) -> Rejection:
    message = event.message
    return Rejection(
        reason=Reason.TOO_LATE,
        detail=f"time {event.time_ms} ms is beyond the settlement horizon of its window",
        payload=message.payload,
        origin=message.origin,
        partition=message.partition,
        offset=message.offset,
        rejected_at_ms=now_ms,
        event_id=event.id,
        event_source=event.source,
        tenant=event.tenant,
    )
