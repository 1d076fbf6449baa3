"""The metering dataflow: read -> parse -> shard -> dedup/window/rate -> sinks."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, NamedTuple, TypeGuard, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from config.clock import SYSTEM_CLOCK, Clock
from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from dataflows.metering_step import (
    Admitted,
    AdmittedRows,
    LiveUpdate,
    MeteringLogic,
    NativeMeteringLogic,
    Output,
    SeedReader,
    ShardBatch,
    StepContext,
)
from dataflows.metrics import Metrics
from dataflows.shutdown import StopRequest
from dataflows.sources import Batch
from dataflows.stats import RunStats
from operators._native import ParsedColumns
from operators._native import ShardBatch as NativeShardBatch
from operators.idempotency import IdempotencyStore
from operators.message_batch import MessageBatch
from operators.model import RatedColumns, RatedWindow, Rejection
from operators.native_parse import NativeParser, known_tenants
from operators.native_parse import rejections as native_rejections
from operators.native_shard import NativeShardState, NativeSplitter
from operators.parse import BatchParser, ParsedBatch, ParserConfig
from operators.shard import ShardState
from operators.sharding import ShardSplitter
from operators.windowing import PartitionKey, WindowConfig


@dataclass(frozen=True)
class FlowSpec:
    """Everything the flow's logic needs, already validated."""

    meters: MeterCatalog
    pricing: PricingCatalog
    window: WindowConfig
    dedup_horizon_ms: int
    shards: int = 8
    # Where parse, split and shard run (config.settings refuses what native lacks).
    engine: Literal["python", "native"] = "python"
    max_event_bytes: int = 65_536
    max_future_skew_ms: int = 300_000
    snapshots: bool = False
    # Live counters are published at most this often (0: after every batch).
    live_publish_interval_ms: int = 0
    idempotency: IdempotencyStore | None = None
    # Names this flow in idempotency claims; see flow_instance_id().
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Set by a stop signal; see dataflows.shutdown.
    stop: StopRequest = field(default_factory=StopRequest)
    # What "now" is: arrival and emission times, the future-skew check, live counters.
    clock: Clock = SYSTEM_CLOCK
    # Seeds billing periods from what other flow incarnations stored (None: no seeding).
    seeds: SeedReader | None = None


def build_flow(
    spec: FlowSpec,
    *,
    source: Source[Batch],
    window_sink: Sink[tuple[str, RatedWindow | RatedColumns]],
    rejection_sink: Sink[tuple[str, Rejection]],
    stats: RunStats,
    event_log_sink: Sink[tuple[str, Admitted | AdmittedRows]] | None = None,
    live_sink: Sink[tuple[str, LiveUpdate]] | None = None,
    flow_id: str = "meterwax",
    metrics: Metrics | None = None,
) -> Dataflow:
    """Wire the metering flow from ``source`` into the sinks (the event log is optional)."""
    # Sources of ours name their partitions up front; others are learnt as they deliver.
    list_partitions = getattr(source, "input_partitions", None)
    partitions: list[PartitionKey] = list_partitions() if list_partitions else []
    # Without a durable idempotency layer nothing stops two incarnations counting one
    # event: every run is then the same incarnation, and a rerun rewrites its windows.
    incarnation = spec.instance if spec.idempotency is not None else ""
    # Each engine adds how its shard state is built and reconfigured.
    context = partial(
        StepContext,
        pricing=spec.pricing,
        stats=stats,
        snapshots=spec.snapshots,
        idempotency=spec.idempotency,
        event_log=event_log_sink is not None,
        live_usage=live_sink is not None,
        live_interval_s=spec.live_publish_interval_ms / 1000,
        metrics=metrics,
        stop=spec.stop,
        clock=spec.clock,
        seeds=spec.seeds if incarnation else None,
    )
    choose = _native_engine if spec.engine == "native" else _python_engine
    engine = choose(spec, context, partitions, incarnation)
    clock = spec.clock

    def parse(batch: Batch) -> tuple[PartitionKey, ParsedBatch | NativeParsed]:
        started = time.perf_counter()
        parsed = engine.parse(batch, clock.now_ms())
        stats.add(consumed=len(batch))
        if parsed.rejections:
            stats.reject(Counter(r.reason.value for r in parsed.rejections))
        if metrics is not None:
            metrics.input_seen(started)
            metrics.observe_stages({"parse": time.perf_counter() - started})
        first = batch[0]
        return (first.origin, first.partition), parsed

    flow = Dataflow(flow_id)
    raw = op.input("read", flow, source)
    parsed = op.map("parse", raw, parse)
    bad = op.flat_map("parse_rejections", parsed, lambda item: item[1].rejections)
    sharded = op.flat_map("shard", parsed, engine.split)
    metered = op.stateful_batch("meter", sharded, engine.logic)
    outputs = op.map("unkey", metered, _value)
    windows = op.branch("split_windows", outputs, _is_window)
    others = op.branch("split_rejections", windows.falses, _is_rejection)
    rejections = op.merge("rejections", bad, others.trues)
    op.output("windows_out", op.key_on("key_windows", windows.trues, _sink_key), window_sink)
    op.output("rejections_out", op.key_on("key_rejections", rejections, _sink_key), rejection_sink)
    rest = op.branch("split_live", others.falses, _is_live)
    if live_sink is not None:
        op.output("live_out", op.key_on("key_live", rest.trues, _sink_key), live_sink)
    if event_log_sink is not None:
        # What is left after windows, rejections and live updates: admitted events.
        events = cast("Stream[Admitted | AdmittedRows]", rest.falses)
        admitted = op.key_on("key_events", events, _sink_key)
        op.output("events_out", admitted, event_log_sink)
    return flow


# StepContext with everything but how shard state is built and reconfigured.
ContextMaker = Callable[..., StepContext[Any]]


class Engine(NamedTuple):
    """What ``flow.engine`` chooses: how a batch is parsed, split by shard and metered."""

    parse: Callable[[Batch, int], ParsedBatch | NativeParsed]
    split: Callable[[tuple[PartitionKey, Any]], list[tuple[str, Any]]]
    logic: Callable[[bytes | None], StatefulBatchLogic[Any, Output, bytes | None]]


def _python_engine(
    spec: FlowSpec, context: ContextMaker, partitions: list[PartitionKey], incarnation: str
) -> Engine:
    """The Python operators: the specification, and everything the flow can do."""
    parser = BatchParser(
        ParserConfig(
            meters=spec.meters,
            known_tenant=spec.pricing.knows,
            max_event_bytes=spec.max_event_bytes,
            max_future_skew_ms=spec.max_future_skew_ms,
        )
    )
    aggregations = {meter.slug: meter.aggregation for meter in spec.meters.meters}
    shard_context = context(
        new_state=lambda: ShardState(
            spec.window,
            aggregations,
            spec.dedup_horizon_ms,
            spec.instance,
            partitions,
            incarnation=incarnation,
            shards=spec.shards,
        ),
        reconfigure=lambda state: state.reconfigure(
            spec.window,
            aggregations,
            spec.dedup_horizon_ms,
            partitions,
            pricing=spec.pricing,
            shards=spec.shards,
        ),
    )
    splitter = ShardSplitter(spec.shards)

    def split(item: tuple[PartitionKey, ParsedBatch]) -> list[tuple[str, ShardBatch]]:
        partition, parsed = item
        # Every shard hears of every batch, so each knows how far the partition got.
        return [
            (key, ShardBatch(partition, parsed.max_time_ms, part.events, part.progress_ms))
            for key, part in splitter.split(parsed.events).items()
        ]

    return Engine(parser.parse, split, lambda resume: MeteringLogic(shard_context, resume))


class NativeParsed(NamedTuple):
    """A batch parsed by the native core: its messages, columns and rejections."""

    messages: MessageBatch
    columns: ParsedColumns
    rejections: list[Rejection]


def _native_engine(
    spec: FlowSpec, context: ContextMaker, partitions: list[PartitionKey], incarnation: str
) -> Engine:
    """The native core: parse, split, dedup and windows without a Python object per event."""
    parser = NativeParser(
        spec.meters, known_tenants(spec.pricing), spec.max_event_bytes, spec.max_future_skew_ms
    )
    shard_context = context(
        new_state=lambda: NativeShardState(
            spec.window,
            spec.meters,
            spec.dedup_horizon_ms,
            spec.instance,
            partitions,
            incarnation=incarnation,
            shards=spec.shards,
        ),
        reconfigure=lambda state: state.reconfigure(
            spec.window,
            spec.meters,
            spec.dedup_horizon_ms,
            partitions,
            pricing=spec.pricing,
            shards=spec.shards,
        ),
    )
    splitter = NativeSplitter(spec.meters, spec.shards)

    def parse(batch: Batch, now_ms: int) -> NativeParsed:
        messages = MessageBatch.of(batch)
        columns = parser.batch_columns(messages, now_ms)
        return NativeParsed(messages, columns, native_rejections(messages, columns, now_ms))

    def split(item: tuple[PartitionKey, NativeParsed]) -> list[tuple[str, NativeShardBatch]]:
        partition, parsed = item
        return list(splitter.split(partition, parsed.messages, parsed.columns).items())

    return Engine(parse, split, lambda resume: NativeMeteringLogic(shard_context, resume))


def _value(item: tuple[str, Output]) -> Output:
    return item[1]


def _is_window(item: Output) -> TypeGuard[RatedWindow | RatedColumns]:
    return isinstance(item, RatedWindow | RatedColumns)


def _is_live(item: Output) -> TypeGuard[LiveUpdate]:
    return isinstance(item, LiveUpdate)


def _is_rejection(item: Output) -> TypeGuard[Rejection]:
    return isinstance(item, Rejection)


def _sink_key(item: object) -> str:
    return "clickhouse"
