"""Prometheus metrics of a running flow.

One set per process (the default registry, so the process collector's CPU and
memory series come along). Steps update them once per batch, never per event:
counting is on the hot path. Labels are low-cardinality by rule: a tenant,
subject or event id is never a label (it would grow without bound); per-tenant
figures live in ClickHouse and Redis.

Dashboards (deploy/grafana) and alert rules (deploy/prometheus) use these names;
tests/deploy checks that every name they use is defined here.
"""

from __future__ import annotations

import bisect
import math
import random
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Protocol, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import start_http_server
from prometheus_client.samples import Sample

from config.clock import SYSTEM_CLOCK, Clock
from operators.model import RatedColumns, RatedWindow, Reason

# Batch writes and round trips: milliseconds to a minute.
_SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
# Event to live counter / to ClickHouse: tens of milliseconds to minutes.
_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
# End-to-end latency is sampled: at most this many events of a batch are observed.
LATENCY_SAMPLES_PER_BATCH = 16
# Every ``sink`` label value.
SINKS = (
    "clickhouse_windows",
    "clickhouse_events",
    "clickhouse_rejections",
    "dead_letters",
    "live_usage",
    "quota_events",
    "redis_claims",
)
# RunStats names of window counts -> the windows_emitted kind label.
_WINDOW_KINDS = {"windows": "on_time", "adjustments": "adjustment"}


_ZERO = Decimal(0)
T = TypeVar("T")


class WatermarkSource(Protocol):
    """Something with an event-time watermark (a shard's metering logic)."""

    def watermark_ms(self) -> int | None: ...


class Metrics:
    """The flow's metric families, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, clock: Clock = SYSTEM_CLOCK) -> None:
        self.registry = registry
        # The run's clock (a run sets its own): flush times, watermark lag, latency.
        self.clock = clock

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
        ) -> Histogram:
            return Histogram(name, doc, labels, registry=registry, buckets=buckets)

        self.info = Info("meterwax_build", "Version of meterwax running.", registry=registry)
        self.consumed = counter(
            "meterwax_events_consumed", "Messages read from the input, valid or not."
        )
        self.accepted = counter(
            "meterwax_events_accepted", "Events counted into windows (new, not duplicates)."
        )
        self.rejected = counter(
            "meterwax_events_rejected",
            "Events sent to the dead-letter topic, by reason code.",
            ["reason"],
        )
        self.duplicates = counter(
            "meterwax_duplicates",
            "Duplicate events dropped, by the layer that caught them (state or redis).",
            ["layer"],
        )
        self.late = counter(
            "meterwax_late_events",
            "Events accepted after their window closed (they become adjustments).",
        )
        self.windows = counter(
            "meterwax_windows_emitted",
            "Rated window revisions emitted, by kind (on_time or adjustment).",
            ["kind"],
        )
        self.rated_amount = counter(
            "meterwax_rated_amount",
            "Rated amounts emitted, by currency and sign (charge or credit); "
            "the net is charge minus credit.",
            ["currency", "sign"],
        )
        self.quota_events = counter(
            "meterwax_quota_events",
            "Quota levels reached (threshold, soft_limit, hard_limit).",
            ["kind"],
        )
        self.sink_rows = counter(
            "meterwax_sink_rows", "Rows (or records) written by each sink.", ["sink"]
        )
        self.sink_failures = counter(
            "meterwax_sink_failures",
            "Failed write attempts by each sink (each retry counts).",
            ["sink"],
        )
        self.sink_seconds = histogram(
            "meterwax_sink_batch_seconds",
            "Time to write one batch, retries included, by sink.",
            ["sink"],
            _SECONDS_BUCKETS,
        )
        self.redis_seconds = histogram(
            "meterwax_redis_seconds",
            "Redis round trips, by operation (claim, live_usage, quota_marker).",
            ["operation"],
            _SECONDS_BUCKETS,
        )
        self.batch_seconds = histogram(
            "meterwax_meter_batch_seconds",
            "Time the metering step spends on one input batch (dedup, windows, rating).",
            [],
            _SECONDS_BUCKETS,
        )
        self.stage_seconds = histogram(
            "meterwax_stage_seconds",
            "Time the flow spends in each stage (parse, screen, claim, fold, finish, rate, "
            "live), summed per batch.",
            ["stage"],
            _SECONDS_BUCKETS,
        )
        # perf_counter() of the first input batch and of the end of the last write with
        # rows: the processing time, which leaves out start-up and waiting for input.
        self.first_input_s: float | None = None
        self.last_write_s: float | None = None
        # Stage totals when this run began (a process may run several flows: tests do).
        self._stage_base: dict[str, tuple[float, float]] = {}
        self.event_latency = histogram(
            "meterwax_event_latency_seconds",
            "From an event's arrival in the input to its effect, by stage "
            "(live_counter or clickhouse); sampled per batch.",
            ["stage"],
            _LATENCY_BUCKETS,
        )
        self.watermark_lag = gauge(
            "meterwax_watermark_lag_seconds",
            "Wall clock minus the event-time watermark (the furthest behind shard of "
            "this process); NaN before the first event.",
        )
        self._watermarks: weakref.WeakSet[WatermarkSource] = weakref.WeakSet()
        self.watermark_lag.set_function(self._watermark_lag_s)
        self.consumer_lag = gauge(
            "meterwax_consumer_lag_messages",
            "Messages behind the end of each input partition (from the Kafka client).",
            ["topic", "partition"],
        )
        self._start_at_zero()
        self._plain = {"consumed": self.consumed, "accepted": self.accepted, "late": self.late}
        self.last_flush = gauge(
            "meterwax_last_sink_flush_timestamp_seconds",
            "When each sink last wrote successfully (Unix time).",
            ["sink"],
        )

    def _start_at_zero(self) -> None:
        # Known label values exist from the start, so rate() and increase() see their
        # first increment (a series born at 3 looks like it was always 3).
        for reason in Reason:
            self.rejected.labels(reason.value)
        for layer in ("state", "redis"):
            self.duplicates.labels(layer)
        for kind in _WINDOW_KINDS.values():
            self.windows.labels(kind)
        for kind in ("threshold", "soft_limit", "hard_limit"):
            self.quota_events.labels(kind)
        for sink in SINKS:
            self.sink_failures.labels(sink)
            self.sink_rows.labels(sink)
        for stage in ("live_counter", "clickhouse"):
            self.event_latency.labels(stage)

    def count(self, counts: Mapping[str, int]) -> None:
        """Mirror RunStats counts (see dataflows.stats) into the counters."""
        for name, value in counts.items():
            if not value:
                continue
            if name == "duplicates":
                # RunStats counts all duplicates and, separately, those Redis caught.
                in_state = value - counts.get("redis_duplicates", 0)
                if in_state:
                    self.duplicates.labels("state").inc(in_state)
            elif name == "redis_duplicates":
                self.duplicates.labels("redis").inc(value)
            elif name in self._plain:
                self._plain[name].inc(value)
            elif name in _WINDOW_KINDS:
                self.windows.labels(_WINDOW_KINDS[name]).inc(value)

    def failure_counter(self, sink: str) -> Callable[[], None]:
        """What a writer calls on each failed attempt of ``sink``."""
        return self.sink_failures.labels(sink).inc

    def wrote(self, sink: str, rows: int, seconds: float) -> None:
        """``sink`` stored ``rows`` in one write that took ``seconds``."""
        if rows:
            self.sink_rows.labels(sink).inc(rows)
            self.sink_seconds.labels(sink).observe(seconds)
            self.last_write_s = time.perf_counter()
        # Also with nothing to write: the sink is healthy, not stalled.
        self.last_flush.labels(sink).set(self.clock.now_ms() / 1000)

    def input_seen(self, at_s: float) -> None:
        """An input batch arrived at ``at_s`` (perf_counter); the first starts processing."""
        if self.first_input_s is None:
            self.first_input_s = at_s

    def observe_stages(self, seconds: Mapping[str, float]) -> None:
        """Add one batch's time per stage (see StageTimer)."""
        for stage, spent in seconds.items():
            self.stage_seconds.labels(stage).observe(spent)

    def processing(self, consumed: int) -> dict[str, float | None]:
        """From the first input batch to the end of the last write, and events/s over it."""
        if self.first_input_s is None or self.last_write_s is None:
            return {"seconds": None, "events_per_s": None}
        seconds = max(0.0, self.last_write_s - self.first_input_s)
        return {"seconds": seconds, "events_per_s": consumed / seconds if seconds else None}

    def begin_run(self) -> None:
        """Start a run: its processing time and stage totals count from here."""
        self.first_input_s = self.last_write_s = None
        self._stage_base = self._stage_sums()

    def stage_totals(self) -> dict[str, dict[str, float]]:
        """This run's seconds and batches per stage: the flow's stages, then each sink's writes."""
        totals: dict[str, dict[str, float]] = {}
        for name, (seconds, batches) in self._stage_sums().items():
            base_seconds, base_batches = self._stage_base.get(name, (0.0, 0.0))
            if batches > base_batches:
                totals[name] = {
                    "seconds": seconds - base_seconds,
                    "batches": batches - base_batches,
                }
        return totals

    def _stage_sums(self) -> dict[str, tuple[float, float]]:
        sums: dict[str, list[float]] = {}
        families = ((self.stage_seconds, "stage", ""), (self.sink_seconds, "sink", "write_"))
        for histogram, label, prefix in families:
            for family in histogram.collect():
                for s in family.samples:
                    pair = sums.setdefault(prefix + s.labels[label], [0.0, 0.0])
                    if s.name.endswith("_sum"):
                        pair[0] = s.value
                    elif s.name.endswith("_count"):
                        pair[1] = s.value
        return {name: (seconds, batches) for name, (seconds, batches) in sums.items()}

    def count_amounts(self, rated: Iterable[RatedWindow] | RatedColumns) -> None:
        """Count the change in rated amount each window revision brings, per currency."""
        by_currency: dict[tuple[str, str], Decimal] = {}
        if isinstance(rated, RatedColumns) and rated.amount_changes is not None:
            # Summed by the core already.
            for currency, sign, total in rated.amount_changes:
                self.rated_amount.labels(currency, sign).inc(float(Decimal(total)))
            return
        rows = (
            (
                (currency, Decimal(amount) - Decimal(previous))
                for currency, amount, previous in zip(
                    rated.currency, rated.amount, rated.previous_amount, strict=True
                )
                # Texts: an unchanged amount is (nearly always) the same text.
                if amount != previous
            )
            if isinstance(rated, RatedColumns)
            else ((w.currency, w.amount - w.previous_amount) for w in rated)
        )
        for currency, change in rows:
            if change:
                key = (currency, "charge" if change > 0 else "credit")
                by_currency[key] = by_currency.get(key, _ZERO) + abs(change)
        for (currency, sign), amount in by_currency.items():
            # A float for Prometheus; the exact amounts are in ClickHouse.
            self.rated_amount.labels(currency, sign).inc(float(amount))

    def watch_watermark(self, shard: WatermarkSource) -> None:
        """Include ``shard``'s watermark in the watermark lag (for as long as it lives)."""
        self._watermarks.add(shard)

    def _watermark_lag_s(self) -> float:
        marks = [m for m in (s.watermark_ms() for s in list(self._watermarks)) if m is not None]
        if not marks:
            return math.nan
        return max(0.0, (self.clock.now_ms() - min(marks)) / 1000)

    def latency_quantiles_ms(self) -> dict[str, dict[str, float | None]]:
        """p50 and p99 of each latency stage so far (from the histogram buckets)."""
        samples = [s for family in self.event_latency.collect() for s in family.samples]
        return latency_quantiles_ms(samples)

    def observe_latency(self, stage: str, now_ms: int, arrivals_ms: Sequence[int]) -> None:
        """Observe event-to-``stage`` latency for a sample of arrival times."""
        child = self.event_latency.labels(stage)
        for arrival in sample(arrivals_ms, LATENCY_SAMPLES_PER_BATCH):
            child.observe(max(0, now_ms - arrival) / 1000)


class StageTimer:
    """Time per stage of one batch: ``lap(stage)`` charges the time since the last lap."""

    __slots__ = ("_last", "seconds")

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        """Charge the time since the previous lap (or the start) to ``stage``."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now


def sample(values: Sequence[T], most: int) -> Sequence[T]:
    """Up to ``most`` of ``values``, evenly spread (all of them when there are few)."""
    if len(values) <= most:
        return values
    step = len(values) / most
    offset = random.random() * step
    return [values[int(offset + i * step)] for i in range(most)]


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style quantile from cumulative ``(upper_bound, count)`` buckets."""
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    counts = [count for _, count in buckets]
    i = bisect.bisect_left(counts, rank)
    i = min(i, len(buckets) - 1)
    upper, count = buckets[i]
    if upper == float("inf"):
        return buckets[i - 1][0] if i > 0 else None
    lower, below = (0.0, 0.0) if i == 0 else buckets[i - 1]
    if count == below:
        return upper
    return lower + (upper - lower) * (rank - below) / (count - below)


def latency_quantiles_ms(samples: Iterable[Sample]) -> dict[str, dict[str, float | None]]:
    """p50, p99 (ms) and sample count per stage of ``meterwax_event_latency_seconds``.

    ``samples`` may come from this process's registry or from a scraped endpoint.
    """
    stages: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        if s.name == "meterwax_event_latency_seconds_bucket":
            stages.setdefault(s.labels["stage"], []).append((float(s.labels["le"]), s.value))
    out: dict[str, dict[str, float | None]] = {}
    for stage, buckets in sorted(stages.items()):
        buckets.sort()
        out[stage] = {
            "p50": _ms(histogram_quantile(buckets, 0.5)),
            "p99": _ms(histogram_quantile(buckets, 0.99)),
            "samples": buckets[-1][1],
        }
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


METRICS = Metrics(REGISTRY)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Expose ``/metrics`` on ``host:port`` from a daemon thread."""
    start_http_server(port, addr=host, registry=REGISTRY)


def metric_names(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """Every series name meterwax exports (the dashboard and alert-rule checks use it)."""
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in registry.collect():
        if family.name.startswith("meterwax_"):
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names
