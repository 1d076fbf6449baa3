"""``meterwax run``: build everything from settings, run the flow, print the summary."""

from __future__ import annotations

import json
import time
from contextlib import nullcontext

from bytewax._bytewax import cli_main
from bytewax.inputs import Source

from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog
from config.settings import Settings
from dataflows.flow import FlowSpec, build_flow
from dataflows.outputs import RatedWindowSink, RejectionSink
from dataflows.progress import Progress
from dataflows.sources import Batch, JsonlFileSource, SyntheticSource
from dataflows.stats import RunStats
from dataflows.summary import render_summary, summary_data
from dataflows.synthetic import SyntheticSpec
from operators.windowing import WindowConfig
from sinks.clickhouse import ClickHouseWriter, connect, rejected_counts, usage_totals
from sinks.clickhouse_schema import migrate


def flow_spec(settings: Settings) -> FlowSpec:
    """Load and cross-check the catalogs named in ``settings``."""
    meters = load_meter_catalog(settings.catalogs.meters)
    pricing = load_pricing_catalog(settings.catalogs.pricing, meters)
    w = settings.window
    return FlowSpec(
        meters=meters,
        pricing=pricing,
        window=WindowConfig(w.size, w.grace, w.settlement_horizon, w.idle_timeout),
        dedup_horizon_ms=w.effective_dedup_horizon,
        shards=settings.flow.shards,
        max_event_bytes=settings.flow.max_event_bytes,
        max_future_skew_ms=w.max_future_skew,
    )


def make_source(settings: Settings) -> Source[Batch]:
    """The input named by ``settings.input.kind``."""
    if settings.input.kind == "generator":
        g = settings.generator
        spec = SyntheticSpec(
            events=g.events,
            tenants=g.tenants,
            seed=g.seed,
            # Events end about now, so none is refused as being from the future.
            start_ms=time.time_ns() // 1_000_000 - g.span,
            span_ms=g.span,
            partitions=g.partitions,
            duplicate_rate=g.duplicate_rate,
            late_rate=g.late_rate,
            late_by_ms=settings.window.grace + settings.window.size,
            invalid_rate=g.invalid_rate,
        )
        return SyntheticSource(spec, settings.input.batch_size, g.rate)
    if settings.input.kind == "file":
        return JsonlFileSource([settings.input.path], settings.input.batch_size)
    raise NotImplementedError(f"input kind {settings.input.kind!r} is not available yet")


def run(settings: Settings, *, progress: bool, as_json: bool) -> int:
    """Run the flow to the end of its input; 0 when every message is accounted for."""
    spec = flow_spec(settings)
    source = make_source(settings)
    ch = settings.clickhouse
    dsn = ch.dsn.get_secret_value()
    client = connect(dsn, ch.database)
    migrate(client, ch.database)

    def open_writer() -> ClickHouseWriter:
        return ClickHouseWriter(
            connect(dsn, ch.database), ch.database, max_attempts=ch.max_attempts
        )

    stats = RunStats()
    flow = build_flow(
        spec,
        source=source,
        window_sink=RatedWindowSink(open_writer),
        rejection_sink=RejectionSink(open_writer),
        stats=stats,
    )
    with Progress(stats) if progress else nullcontext():
        cli_main(flow, workers_per_process=settings.flow.workers)
    data = summary_data(
        stats, usage_totals(client, ch.database), rejected_counts(client, ch.database)
    )
    print(json.dumps(data, indent=2) if as_json else render_summary(data))
    return 0 if stats.reconciles else 1
