"""Bytewax sinks around the engine-free writers in sinks/.

Each sink has a single partition, so every row of a run goes through one
writer in one process: chDB allows one process per data path, and rated
windows (aggregates) and rejections are few enough for one writer.

Rows are buffered and written in large inserts. The buffer is always flushed
in ``snapshot()``, which Bytewax calls at the end of every epoch before it
commits recovery progress: nothing acknowledged by a snapshot is left unwritten.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, TypeVar

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from dataflows.metering_step import Admitted, AdmittedRows, LiveUpdate
from dataflows.metrics import LATENCY_SAMPLES_PER_BATCH as SAMPLES
from dataflows.metrics import Metrics, sample
from operators.live_usage import QuotaEvent
from operators.model import RatedColumns, RatedWindow, Rejection
from operators.webhooks import quota_event_data
from sinks.clickhouse import ClickHouseWriter
from sinks.kafka_dead_letters import ConfirmedProducer, DeadLetterProducer
from sinks.redis_live_writer import LiveUsageWriter
from sinks.webhook_announcer import WebhookAnnouncer

log = logging.getLogger(__name__)

PART = "clickhouse"
T = TypeVar("T")


class BufferedPartition(StatefulSinkPartition[T, None], Generic[T]):
    """Collects rows and hands them to ``write`` in batches.

    Flushes when ``max_rows`` are waiting, when the oldest waiting row is
    ``max_delay_s`` old (checked as rows arrive), at every snapshot and at close.
    ``write`` blocks (retrying) until the rows are stored, so input waits
    while the sink cannot write. ``guard`` runs before each write and raises
    if the flow may not write any more (its output lease is lost). ``size``
    says how many rows an item holds (1 unless items are batches).

    With ``background``, a flush hands the rows to a thread of the partition's
    own and returns: the flow goes on while the store works (chDB releases the
    GIL). One write at a time, in order: a flush first waits for the write
    before it, and a snapshot for every write, so nothing acknowledged by a
    snapshot is left unwritten; a failed write raises at the next flush,
    snapshot or close.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], int | None],
        max_rows: int = 20_000,
        max_delay_s: float = 1.0,
        *,
        sink: str = "",
        metrics: Metrics | None = None,
        guard: Callable[[], None] | None = None,
        size: Callable[[T], int] | None = None,
        background: bool = False,
    ) -> None:
        self._write = write
        self._guard = guard or _no_guard
        self._size = size
        self._sink = sink
        self._metrics = metrics
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._rows: list[T] = []
        self._waiting = 0
        self._oldest = 0.0
        self._failed = False
        self._background = background
        # The write in the background, and its error. A daemon thread: a process
        # ending on an error must not wait for a write still retrying.
        self._writing: threading.Thread | None = None
        self._error: BaseException | None = None

    def write_batch(self, values: list[T]) -> None:
        if not self._rows:
            self._oldest = time.monotonic()
        self._rows.extend(values)
        self._waiting += len(values) if self._size is None else sum(map(self._size, values))
        if self._waiting >= self._max_rows or time.monotonic() - self._oldest >= self._max_delay_s:
            self.flush()

    def flush(self) -> None:
        """Write every waiting row (with ``background``: start writing them)."""
        self._finish_writing()
        if self._failed:
            return
        rows = self._rows
        if rows:
            try:
                self._guard()
            except BaseException:
                self._failed = True
                raise
            self._rows = []
            self._waiting = 0
        if not self._background:
            self._write_now(rows)
        elif rows:
            self._writing = threading.Thread(
                target=self._write_in_background,
                args=(rows,),
                name=f"meterwax-{self._sink or 'sink'}",
                daemon=True,
            )
            self._writing.start()

    def _write_in_background(self, rows: list[T]) -> None:
        try:
            self._write_now(rows)
        except BaseException as exc:  # raised in the flow's thread by _finish_writing
            self._error = exc

    def _write_now(self, rows: list[T]) -> None:
        started = time.perf_counter()
        written: int | None = 0
        if rows:
            try:
                written = self._write(rows)
            except BaseException:
                # The flow is stopping: do not write again from close(), which the
                # engine calls while it unwinds (a second error there aborts the process).
                self._failed = True
                raise
        if self._metrics is not None:
            # Writers that store several rows per item say how many they wrote.
            count = len(rows) if written is None else written
            self._metrics.wrote(self._sink, count, time.perf_counter() - started)

    def _finish_writing(self) -> None:
        """Wait for the write in the background, if any; raise its error."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def snapshot(self) -> None:
        self.flush()
        self._finish_writing()

    def close(self) -> None:
        # Normally empty: the final snapshot flushed. When the flow is stopping on an
        # error, raising here would abort the process; unflushed rows were never
        # covered by a snapshot, so a restart writes them.
        try:
            self.flush()
            self._finish_writing()
        except Exception:
            log.exception("could not write %d buffered rows while closing", len(self._rows))


def _no_guard() -> None:
    return None


class _WriterSink(FixedPartitionedSink[T, None]):
    # The ``sink`` label of this sink's metrics.
    SINK = ""

    def __init__(
        self,
        open_writer: Callable[[], ClickHouseWriter],
        *,
        primary: bool = True,
        metrics: Metrics | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self._open_writer = open_writer
        self._primary = primary
        self._metrics = metrics
        self._guard = guard

    def _writer(self) -> ClickHouseWriter:
        writer = self._open_writer()
        if self._metrics is not None:
            writer.on_failure = self._metrics.failure_counter(self.SINK)
        if self._guard is not None:
            # Checked before every attempt: a retry long after the flush began must
            # not write once another flow holds the lease.
            writer.before_attempt = self._guard
        return writer

    def _buffer(
        self,
        write: Callable[[Sequence[T]], int | None],
        max_rows: int = 20_000,
        size: Callable[[T], int] | None = None,
    ) -> BufferedPartition[T]:
        # In the background: the flow's thread goes on while ClickHouse inserts.
        return BufferedPartition(
            write,
            max_rows,
            sink=self.SINK,
            metrics=self._metrics,
            guard=self._guard,
            size=size,
            background=True,
        )

    def list_parts(self) -> list[str]:
        # Only the primary process offers the partition, so only it opens ClickHouse
        # (chDB allows one process per data path).
        return [PART] if self._primary else []

    def part_fn(self, item_key: str) -> int:
        return 0


class RatedWindowSink(_WriterSink[RatedWindow | RatedColumns]):
    """Rated window revisions into ClickHouse; items are ``(key, RatedWindow | RatedColumns)``."""

    SINK = "clickhouse_windows"

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> BufferedPartition[RatedWindow | RatedColumns]:
        return self._buffer(self._writer().write_windows, size=_revisions)


def _revisions(item: RatedWindow | RatedColumns) -> int:
    return len(item) if isinstance(item, RatedColumns) else 1


class EventLogSink(_WriterSink[Admitted | AdmittedRows]):
    """Accepted events into the append-only ``accepted_events`` table.

    Items are the Python engine's events or the native engine's encoded rows.
    """

    SINK = "clickhouse_events"
    # Items are whole batches of events: flush after this many.
    BATCHES_PER_INSERT = 64

    def __init__(
        self,
        open_writer: Callable[[], ClickHouseWriter],
        aggregations: Mapping[str, str],
        *,
        primary: bool = True,
        metrics: Metrics | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(open_writer, primary=primary, metrics=metrics, guard=guard)
        self._aggregations = dict(aggregations)

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> BufferedPartition[Admitted | AdmittedRows]:
        writer = self._writer()
        aggregations = self._aggregations
        metrics = self._metrics

        def write(items: Sequence[Admitted | AdmittedRows]) -> int:
            events = [item for item in items if isinstance(item, Admitted)]
            written = writer.write_events(
                [(item.events, item.at_ms) for item in events], aggregations
            )
            written += writer.write_event_rows(
                [(item.rows, item.size) for item in items if isinstance(item, AdmittedRows)]
            )
            if metrics is not None:
                now_ms = metrics.clock.now_ms()
                for item in items:
                    if isinstance(item, AdmittedRows):
                        arrivals = list(item.arrivals_ms)
                    else:
                        arrivals = [e.message.arrived_ms for e in sample(item.events, SAMPLES)]
                    metrics.observe_latency("clickhouse", now_ms, arrivals)
            return written

        return self._buffer(write, max_rows=self.BATCHES_PER_INSERT)


class LiveUsageSink(FixedPartitionedSink[LiveUpdate, None]):
    """Live counters to Redis and quota events to Kafka, written as they come (no buffer)."""

    def __init__(
        self,
        open_writer: Callable[[], LiveUsageWriter],
        open_quota_producer: Callable[[], ConfirmedProducer] | None,
        *,
        primary: bool = True,
        metrics: Metrics | None = None,
        guard: Callable[[], None] | None = None,
        open_announcer: Callable[[], WebhookAnnouncer] | None = None,
    ) -> None:
        self._open_writer = open_writer
        self._open_quota_producer = open_quota_producer
        self._open_announcer = open_announcer
        self._primary = primary
        self._metrics = metrics
        self._guard = guard or _no_guard

    def list_parts(self) -> list[str]:
        return ["live"] if self._primary else []

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _LivePartition:
        producer = None if self._open_quota_producer is None else self._open_quota_producer()
        writer = self._open_writer()
        metrics = self._metrics
        if metrics is not None:
            writer.on_failure = metrics.failure_counter(LIVE_SINK)
            if producer is not None:
                producer.on_failure = metrics.failure_counter(QUOTA_SINK)
        announcer = None if self._open_announcer is None else self._open_announcer()
        return _LivePartition(writer, producer, metrics, self._guard, announcer)


LIVE_SINK = "live_usage"
QUOTA_SINK = "quota_events"


class _LivePartition(StatefulSinkPartition[LiveUpdate, None]):
    def __init__(
        self,
        writer: LiveUsageWriter,
        producer: ConfirmedProducer | None,
        metrics: Metrics | None,
        guard: Callable[[], None],
        announcer: WebhookAnnouncer | None = None,
    ) -> None:
        self._writer = writer
        self._producer = producer
        self._metrics = metrics
        # Queues webhooks in Redis; the dispatcher delivers them off this path.
        self._announcer = announcer
        # Counters are fenced in Redis; quota events to Kafka are guarded here.
        self._guard = guard

    def write_batch(self, values: list[LiveUpdate]) -> None:
        # Later updates of a counter supersede earlier ones in the same batch.
        latest = {(c.tenant, c.meter, c.period_start_ms): c for u in values for c in u.counters}
        started = time.perf_counter()
        self._writer.publish(list(latest.values()), values[-1].at_ms)
        metrics = self._metrics
        if metrics is not None:
            seconds = time.perf_counter() - started
            metrics.wrote(LIVE_SINK, len(latest), seconds)
            metrics.redis_seconds.labels("live_usage").observe(seconds)
            now_ms = metrics.clock.now_ms()
            for update in values:
                metrics.observe_latency("live_counter", now_ms, update.arrivals_ms)
        if self._announcer is not None:
            self._guard()
            self._announcer.counters(latest.values())
        for update in values:
            for event in update.quota_events:
                self._announce(event)

    def _announce(self, event: QuotaEvent) -> None:
        # Produce, then mark: a crash in between can repeat an event (same event_id),
        # never lose one.
        if self._writer.quota_sent(event.event_id):
            return
        if self._producer is None:
            log.warning("quota event (no quota topic configured): %s", quota_event_json(event))
        else:
            self._guard()
            started = time.perf_counter()
            self._producer.send_records(
                [(event.event_id.encode(), quota_event_json(event).encode(), [])]
            )
            if self._metrics is not None:
                self._metrics.wrote(QUOTA_SINK, 1, time.perf_counter() - started)
        if self._announcer is not None:
            self._guard()
            self._announcer.quota(event)
        self._writer.mark_quota_sent(event.event_id, event.period_end_ms)

    def snapshot(self) -> None:
        return None


def quota_event_json(event: QuotaEvent) -> str:
    """The quota event as JSON (decimals as exact strings)."""
    return json.dumps(quota_event_data(event), sort_keys=True)


class RejectionSink(_WriterSink[Rejection]):
    """Rejected events to the dead-letter topic (when given) and ClickHouse."""

    SINK = "clickhouse_rejections"
    DEAD_LETTER_SINK = "dead_letters"

    def __init__(
        self,
        open_writer: Callable[[], ClickHouseWriter],
        *,
        primary: bool = True,
        open_dead_letters: Callable[[], DeadLetterProducer] | None = None,
        metrics: Metrics | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(open_writer, primary=primary, metrics=metrics, guard=guard)
        self._open_dead_letters = open_dead_letters

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> BufferedPartition[Rejection]:
        writer = self._writer()
        if self._open_dead_letters is None:
            return self._buffer(writer.write_rejections)
        dead_letters = self._open_dead_letters()
        metrics = self._metrics
        if metrics is not None:
            dead_letters.on_failure = metrics.failure_counter(self.DEAD_LETTER_SINK)

        def write(rows: Sequence[Rejection]) -> int:
            started = time.perf_counter()
            dead_letters.send(rows)
            if metrics is not None:
                metrics.wrote(self.DEAD_LETTER_SINK, len(rows), time.perf_counter() - started)
            return writer.write_rejections(rows)

        return self._buffer(write)
