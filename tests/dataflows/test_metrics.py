"""The Prometheus metrics: what RunStats counts lands in the right series."""

from __future__ import annotations

import math
import time
import urllib.request
from collections import Counter
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from config.clock import FixedClock
from dataflows.metrics import Metrics, StageTimer, histogram_quantile, metric_names, sample
from dataflows.stats import RunStats
from operators.model import RatedWindow, WindowKind
from sinks.local_services import free_port
from tests.sinks.test_clickhouse import as_columns

# The metrics' clock: flush times and the watermark lag are read from it.
NOW_MS = 1_893_456_000_000  # 2030-01-01T00:00:00Z


def _metrics() -> Metrics:
    return Metrics(CollectorRegistry(), FixedClock(NOW_MS))


def _value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_run_stats_are_mirrored_with_duplicates_split_by_layer() -> None:
    m = _metrics()
    stats = RunStats(metrics=m)
    stats.add(consumed=10, accepted=6, duplicates=3, redis_duplicates=1, late=2)
    stats.add(windows=4, adjustments=1)
    stats.reject(Counter({"bad_time": 1}))
    assert _value(m, "meterwax_events_consumed_total") == 10
    assert _value(m, "meterwax_events_accepted_total") == 6
    assert _value(m, "meterwax_duplicates_total", layer="state") == 2
    assert _value(m, "meterwax_duplicates_total", layer="redis") == 1
    assert _value(m, "meterwax_late_events_total") == 2
    assert _value(m, "meterwax_windows_emitted_total", kind="on_time") == 4
    assert _value(m, "meterwax_windows_emitted_total", kind="adjustment") == 1
    assert _value(m, "meterwax_events_rejected_total", reason="bad_time") == 1
    # The run's own books still balance.
    assert stats.consumed == stats.accepted + stats.duplicates + stats.rejected_total


def _rated(amount: str, previous: str, currency: str = "USD") -> RatedWindow:
    return RatedWindow(
        tenant="t",
        meter="m",
        groups=(),
        window_start_ms=0,
        window_end_ms=60_000,
        revision=1,
        kind=WindowKind.WINDOW,
        quantity=Decimal(1),
        amount=Decimal(amount),
        previous_quantity=Decimal(0),
        previous_amount=Decimal(previous),
        currency=currency,
        plan_id="p",
        price_version="v1",
        emitted_at_ms=0,
        period_start_ms=0,
        period_quantity=Decimal(1),
        period_amount=Decimal(amount),
    )


def test_rated_amounts_count_charges_and_credits_apart() -> None:
    m = _metrics()
    m.count_amounts([_rated("1.5", "0"), _rated("2", "2.25"), _rated("3", "1", "EUR")])
    assert _value(m, "meterwax_rated_amount_total", currency="USD", sign="charge") == 1.5
    assert _value(m, "meterwax_rated_amount_total", currency="USD", sign="credit") == 0.25
    assert _value(m, "meterwax_rated_amount_total", currency="EUR", sign="charge") == 2


def test_rated_columns_count_their_changes_from_the_texts() -> None:
    m = _metrics()
    windows = [_rated("1.5", "0"), _rated("2", "2.25"), _rated("3", "1", "EUR"), _rated("1.0", "1")]
    m.count_amounts(as_columns(windows))
    assert _value(m, "meterwax_rated_amount_total", currency="USD", sign="charge") == 1.5
    assert _value(m, "meterwax_rated_amount_total", currency="USD", sign="credit") == 0.25
    assert _value(m, "meterwax_rated_amount_total", currency="EUR", sign="charge") == 2


class _Shard:
    def __init__(self, watermark_ms: int | None) -> None:
        self.mark = watermark_ms

    def watermark_ms(self) -> int | None:
        return self.mark


def test_watermark_lag_follows_the_furthest_behind_shard() -> None:
    m = _metrics()
    assert math.isnan(_value(m, "meterwax_watermark_lag_seconds") or math.nan)
    ahead, behind, empty = _Shard(NOW_MS - 5_000), _Shard(NOW_MS - 120_000), _Shard(None)
    for shard in (ahead, behind, empty):
        m.watch_watermark(shard)
    lag = _value(m, "meterwax_watermark_lag_seconds")
    assert lag == 120
    del behind  # a shard that is gone no longer holds the lag back
    lag = _value(m, "meterwax_watermark_lag_seconds")
    assert lag == 5


def test_sink_writes_failures_and_flush_time() -> None:
    m = _metrics()
    m.failure_counter("clickhouse_windows")()
    m.wrote("clickhouse_windows", 100, 0.02)
    m.wrote("clickhouse_windows", 0, 0.0)  # nothing to write still counts as healthy
    assert _value(m, "meterwax_sink_failures_total", sink="clickhouse_windows") == 1
    assert _value(m, "meterwax_sink_rows_total", sink="clickhouse_windows") == 100
    assert _value(m, "meterwax_sink_batch_seconds_count", sink="clickhouse_windows") == 1
    flushed = _value(m, "meterwax_last_sink_flush_timestamp_seconds", sink="clickhouse_windows")
    assert flushed == NOW_MS / 1000


def test_latency_is_sampled_and_summarised() -> None:
    m = _metrics()
    now_ms = 1_000_000
    m.observe_latency("live_counter", now_ms, [now_ms - 100] * 1000)
    count = _value(m, "meterwax_event_latency_seconds_count", stage="live_counter")
    assert count is not None and 0 < count <= 16
    quantiles = m.latency_quantiles_ms()["live_counter"]
    assert quantiles["p50"] is not None and 75 <= quantiles["p50"] <= 100
    assert quantiles["p99"] is not None and 75 <= quantiles["p99"] <= 100


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 50.0), (0.2, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.1)
    assert histogram_quantile(buckets, 0.75) == pytest.approx(0.15)
    assert histogram_quantile([(0.1, 0.0), (math.inf, 0.0)], 0.5) is None
    # Everything beyond the last finite bucket: its bound is the best answer.
    assert histogram_quantile([(0.1, 0.0), (math.inf, 5.0)], 0.99) == 0.1


def test_sample_spreads_evenly_and_keeps_small_inputs_whole() -> None:
    assert sample([1, 2, 3], 16) == [1, 2, 3]
    picked = sample(list(range(1600)), 16)
    assert len(picked) == 16
    assert all(100 * i <= v < 100 * (i + 1) for i, v in enumerate(picked))


def test_no_tenant_label_anywhere() -> None:
    m = _metrics()
    for family in m.registry.collect():
        for s in family.samples:
            assert not {"tenant", "subject", "id"} & set(s.labels)
    assert "meterwax_events_consumed_total" in metric_names(m.registry)


def test_endpoint_serves_the_exposition_format() -> None:
    m = _metrics()
    m.consumed.inc(3)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=m.registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            body = reply.read()
    finally:
        server.shutdown()
        thread.join(5)
    assert b"meterwax_events_consumed_total 3.0" in body


def test_stage_totals_count_this_run_only_with_sinks_after_stages() -> None:
    m = _metrics()
    m.observe_stages({"parse": 0.5})
    m.begin_run()
    m.observe_stages({"parse": 0.25, "screen": 0.125})
    m.observe_stages({"parse": 0.25})
    m.wrote("clickhouse_windows", 10, 0.5)
    m.wrote("clickhouse_events", 0, 0.0)  # nothing written: not a stage of this run
    assert m.stage_totals() == {
        "parse": {"seconds": 0.5, "batches": 2},
        "screen": {"seconds": 0.125, "batches": 1},
        "write_clickhouse_windows": {"seconds": 0.5, "batches": 1},
    }


def test_processing_runs_from_first_input_to_last_write() -> None:
    m = _metrics()
    assert m.processing(10) == {"seconds": None, "events_per_s": None}
    started = time.perf_counter()
    m.input_seen(started)
    m.input_seen(started + 100)  # a later batch does not move the start
    m.wrote("clickhouse_windows", 5, 0.01)
    ended = time.perf_counter()
    processing = m.processing(1000)
    seconds = processing["seconds"]
    assert seconds is not None and 0 < seconds <= ended - started
    assert processing["events_per_s"] == pytest.approx(1000 / seconds)
    m.begin_run()
    assert m.processing(1000) == {"seconds": None, "events_per_s": None}


def test_stage_timer_charges_each_lap_to_its_stage() -> None:
    timer = StageTimer()
    time.sleep(0.01)
    timer.lap("screen")
    timer.lap("fold")
    time.sleep(0.01)
    timer.lap("screen")
    assert set(timer.seconds) == {"screen", "fold"}
    assert timer.seconds["screen"] >= 0.02 > timer.seconds["fold"]
