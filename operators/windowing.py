"""Event-time tumbling windows with grace, idle close, adjustments and settlement.

Two clocks, kept apart:

* **Lateness is judged per input partition, event by event.** An event is
  judged against its own partition's progress: the latest event time of that
  partition up to and including the event (earlier batches, and earlier events
  of its own batch, whichever shard their tenants belong to). Its window
  [start, end) is OPEN if ``end + grace`` is ahead of that progress, LATE
  (an adjustment) if ``end + settlement`` is, else TOO_LATE. The progress is
  a function of the partition's content alone, so the decision does not depend
  on how partitions were scheduled, how many workers or processes read them,
  where batches were cut, the wall clock, or restarts (the progress is part of
  the snapshot, taken with the input offsets; a fresh flow from offset 0
  computes it again).
* **The watermark decides when windows close.** It is the minimum, over input
  partitions that delivered within ``idle_timeout``, of their progress (a
  lagging partition holds it back). When every partition has been quiet for
  ``idle_timeout`` it moves on by the quiet time, so quiet inputs still close
  their windows. Wall-clock marks are not part of the snapshot: after a
  restart the quiet time counts from the restart. A window [start, start +
  size) closes when the watermark reaches ``end + grace``; an event for a
  closed window is folded into the settled window and emitted as an
  ``adjustment`` revision. So whether a revision is a ``window`` or an
  ``adjustment`` can follow scheduling; which events it contains cannot.

A settled window is forgotten only once the slowest input partition (every
one the source names, and any other that delivered) has passed ``end +
settlement``: until then some partition could still send an event for it,
and a window made again would restart its revisions. The cost is memory: a
lagging partition keeps every settled window since its progress, and a
partition that never delivers an event keeps them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from config.meters import Aggregation
from operators.aggregation import ACCUMULATORS, Accumulator
from operators.model import Event, GroupValues, WindowKind, WindowUsage
from operators.money import ZERO

SeriesKey = tuple[str, str, GroupValues]  # tenant, meter, group values
PartitionKey = tuple[str, int]  # input origin, partition

NO_WATERMARK = -(2**62)


class Lateness(IntEnum):
    """Where an event's window stands relative to its input partition's progress."""

    OPEN = 0
    LATE = 1
    TOO_LATE = 2


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """Window geometry and lateness policy, all in milliseconds."""

    size_ms: int
    grace_ms: int
    settlement_ms: int
    idle_timeout_ms: int

    def __post_init__(self) -> None:
        if self.size_ms <= 0:
            raise ValueError("size_ms must be positive")
        if min(self.grace_ms, self.settlement_ms, self.idle_timeout_ms) < 0:
            raise ValueError("grace, settlement and idle timeout must not be negative")
        if self.settlement_ms < self.grace_ms:
            raise ValueError("settlement must be at least the grace period")


class WindowStore:
    """Open and settled windows of one shard, its input partitions' progress and watermark."""

    def __init__(
        self,
        config: WindowConfig,
        aggregations: Mapping[str, Aggregation],
        expected_partitions: Iterable[PartitionKey] = (),
    ) -> None:
        self.config = config
        self.aggregations = dict(aggregations)
        # Input partitions known up front (e.g. a topic's): until each has delivered
        # or stayed quiet for idle_timeout, it holds the watermark back, so the first
        # consumer to start cannot make the others' first events late.
        self.expected_partitions = frozenset(expected_partitions)
        self.watermark = NO_WATERMARK
        self.open: dict[int, dict[SeriesKey, Accumulator]] = {}
        self.settled: dict[int, dict[SeriesKey, Accumulator]] = {}
        self.dirty: dict[tuple[int, SeriesKey], None] = {}
        self.partition_max: dict[PartitionKey, int] = {}
        # Wall-clock marks (seconds, monotonic); reset by resume(), never restored.
        self._partition_seen: dict[PartitionKey, float] = {}
        self._last_activity = 0.0

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_partition_seen"] = {}
        state["_last_activity"] = 0.0
        return state

    def resume(self, now_s: float) -> None:
        """Start the quiet-time clocks (at start and after a restore): downtime is not quiet."""
        self._partition_seen = dict.fromkeys(
            self.partition_max.keys() | self.expected_partitions, now_s
        )
        self._last_activity = now_s

    def window_start(self, time_ms: int) -> int:
        """Start of the tumbling window that holds ``time_ms`` (epoch-aligned)."""
        return time_ms - time_ms % self.config.size_ms

    def lateness(self, time_ms: int, progress_ms: int) -> Lateness:
        """Whether an event at ``time_ms`` is on time, late or too late.

        ``progress_ms`` is the latest event time its input partition has reached
        (the event included); see the module docstring.
        """
        end = time_ms - time_ms % self.config.size_ms + self.config.size_ms
        if end + self.config.grace_ms > progress_ms:
            return Lateness.OPEN
        if end + self.config.settlement_ms > progress_ms:
            return Lateness.LATE
        return Lateness.TOO_LATE

    def progress(self, partition: PartitionKey) -> int:
        """Latest event time ``partition`` delivered in earlier batches (NO_WATERMARK: none)."""
        return self.partition_max.get(partition, NO_WATERMARK)

    def slowest_progress(self) -> int:
        """The least progress over every input partition, named up front or seen.

        No partition can still send an event that is not too late for a window
        that ended ``settlement`` before it, so state about such windows can go.
        """
        latest = self.partition_max
        partitions = self.expected_partitions.union(latest)
        if not partitions:
            return NO_WATERMARK
        return min(latest.get(p, NO_WATERMARK) for p in partitions)

    def fold(self, event: Event) -> None:
        """Add an accepted, deduplicated, not-too-late event to its window."""
        size = self.config.size_ms
        time_ms = event.time_ms
        start = time_ms - time_ms % size
        # A window stays where it is: after a restart with another grace, one still
        # open takes the event until the next advance closes it, a settled one revises.
        series = self.open.get(start)
        is_open = series is not None or (
            start + size + self.config.grace_ms > self.watermark and start not in self.settled
        )
        if series is None:
            windows = self.open if is_open else self.settled
            series = windows.get(start)
            if series is None:
                series = windows[start] = {}
        tenant = event.tenant
        for measure in event.measures:
            key = (tenant, measure.meter, measure.groups)
            acc = series.get(key)
            if acc is None:
                acc = series[key] = ACCUMULATORS[self.aggregations[measure.meter]]()
            acc.fold(measure.value, time_ms)
            if not is_open:
                self.dirty[(start, key)] = None

    def observe(self, partition: PartitionKey, max_time_ms: int | None, now_s: float) -> None:
        """Note that ``partition`` delivered a batch whose latest event time is ``max_time_ms``.

        A batch without one accepted event (None) says nothing about event time:
        it does not count as activity, so a partition sending only rejects
        cannot hold windows open.
        """
        if max_time_ms is None:
            return
        self._last_activity = now_s
        self._partition_seen[partition] = now_s
        if max_time_ms > self.partition_max.get(partition, NO_WATERMARK):
            self.partition_max[partition] = max_time_ms

    def advance(self, now_s: float) -> list[WindowUsage]:
        """Move the watermark, close due windows, emit pending adjustments, drop settled state."""
        candidate = self._watermark_candidate(now_s)
        self.watermark = max(self.watermark, candidate)
        out = self._close_due()
        self._emit_adjustments(out)
        self._drop_settled()
        return out

    def close_all(self) -> list[WindowUsage]:
        """End of input: close every open window and emit pending adjustments."""
        if self.open:
            last_end = max(self.open) + self.config.size_ms
            self.watermark = max(self.watermark, last_end + self.config.grace_ms)
        out = self._close_due()
        self._emit_adjustments(out)
        return out

    def next_wakeup(self, now_s: float) -> float | None:
        """Monotonic time at which advance() could next change something without new input."""
        if not self.open and not self.dirty:
            return None
        idle_s = self.config.idle_timeout_ms / 1000
        active = [seen for seen in self._partition_seen.values() if now_s - seen < idle_s]
        if active:
            return min(active) + idle_s
        if not self.open:
            return now_s
        due_ms = min(self.open) + self.config.size_ms + self.config.grace_ms
        wait_ms = max(0, due_ms - self._watermark_candidate(now_s))
        return now_s + min(wait_ms / 1000, idle_s)

    def _watermark_candidate(self, now_s: float) -> int:
        idle_s = self.config.idle_timeout_ms / 1000
        latest = self.partition_max
        active = [p for p, seen in self._partition_seen.items() if now_s - seen < idle_s]
        if active:
            # An active partition that has not delivered yet holds everything back.
            return min(latest.get(p, NO_WATERMARK) for p in active)
        if not latest:
            return NO_WATERMARK
        quiet_ms = int((now_s - self._last_activity) * 1000)
        return max(latest.values()) + quiet_ms

    def _close_due(self) -> list[WindowUsage]:
        size, grace = self.config.size_ms, self.config.grace_ms
        out: list[WindowUsage] = []
        for start in sorted(self.open):
            if start + size + grace > self.watermark:
                break
            series = self.open.pop(start)
            for (tenant, meter, groups), acc in series.items():
                quantity = acc.quantity()
                acc.emitted = quantity
                out.append(
                    WindowUsage(
                        tenant,
                        meter,
                        groups,
                        start,
                        start + size,
                        quantity,
                        ZERO,
                        acc.count,
                        WindowKind.WINDOW,
                        acc,
                    )
                )
            # A window is open or settled, never both: events reach settled[start]
            # only once the watermark has passed its close, which closes it first.
            self.settled[start] = series
        return out

    def _emit_adjustments(self, out: list[WindowUsage]) -> None:
        size = self.config.size_ms
        for start, key in self.dirty:
            acc = self.settled[start][key]
            quantity = acc.quantity()
            previous = ZERO if acc.emitted is None else acc.emitted
            acc.emitted = quantity
            tenant, meter, groups = key
            out.append(
                WindowUsage(
                    tenant,
                    meter,
                    groups,
                    start,
                    start + size,
                    quantity,
                    previous,
                    acc.count,
                    WindowKind.ADJUSTMENT,
                    acc,
                )
            )
        self.dirty.clear()

    def _drop_settled(self) -> None:
        # Not by the watermark: it can run ahead of a lagging partition, whose
        # events may still be on time or late for these windows.
        horizon = self.config.size_ms + self.config.settlement_ms
        slowest = self.slowest_progress()
        for start in [s for s in self.settled if s + horizon <= slowest]:
            del self.settled[start]
