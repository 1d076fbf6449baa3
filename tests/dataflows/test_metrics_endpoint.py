"""Scrape /metrics of a real run (Kafka in, Redis, chDB) and reconcile it with the run's outcome."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.load import LoadGenerator, LoadSpec, write_kafka
from sinks.clickhouse import connect, rejected_counts
from sinks.local_services import free_port

pytestmark = pytest.mark.integration

EVENTS = 6_000
TIMEOUT_S = 120.0
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def _total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over series whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(ls)[label]: v for (n, ls), v in samples.items() if n == name and label in dict(ls)}


def _poll(port: int, done: Callable[[Samples], bool], process: subprocess.Popen[bytes]) -> Samples:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run stopped early"
        try:
            _, samples = _scrape(port)
            if done(samples):
                return samples
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.25)
    raise AssertionError("the run did not get there in time")


def test_counters_reconcile_with_the_run_and_clickhouse(
    tmp_path: Path, kafka_brokers: str, new_topic: Callable[..., str], redis_url: str
) -> None:
    workdir = tmp_path
    topic = new_topic(partitions=2, prefix="metrics")
    spec = LoadSpec(
        events=EVENTS,
        tenants=30,
        duplicate_rate=0.05,
        late_rate=0.02,
        invalid_rate=0.03,
        span_ms=20 * 60_000,
        source="metrics/test",
    )
    generator = LoadGenerator(spec)
    produced = write_kafka(generator.payloads(), kafka_brokers, topic, partitions=2)
    assert produced.failed == 0
    truth = generator.truth
    config = {
        "input": {"kind": "kafka"},
        "kafka": {"brokers": kafka_brokers, "topics": [topic], "dead_letter_topic": f"{topic}-dl"},
        "redis": {"url": redis_url, "key_prefix": f"m-{topic}"},
        "clickhouse": {"dsn": f"chdb://{workdir / 'ch'}", "database": "metrics"},
        # Windows close on event time only: nothing changes once the input is drained.
        "window": {"idle_timeout": "1h"},
        "recovery": {"snapshot_interval": "500ms"},
    }
    (workdir / "meterwax.json").write_text(json.dumps(config))
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "cli.main", "run", "--config", "meterwax.json"),
            *("--no-progress", "--metrics-port", str(port)),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "run.err").open("wb"),
    )
    try:

        def drained(s: Samples) -> bool:
            # Everything consumed, and the partitions' lag reported as caught up.
            lags = _by(s, "meterwax_consumer_lag_messages", "partition")
            return (
                _total(s, "meterwax_events_consumed_total") >= truth.messages
                and len(lags) == 2
                and not any(lags.values())
            )

        _poll(port, drained, process)
        # Then wait until the sinks have flushed and nothing moves between two scrapes.
        previous: Samples = {}
        for _ in range(60):
            time.sleep(0.6)
            text, samples = _scrape(port)
            rows = _by(samples, "meterwax_sink_rows_total", "sink")
            if rows == _by(previous, "meterwax_sink_rows_total", "sink") and rows.get(
                "clickhouse_events"
            ):
                break
            previous = samples
        else:
            raise AssertionError("sink row counts kept changing")
    finally:
        process.kill()
        process.wait()
    assert "Traceback" not in (workdir / "run.err").read_text()

    consumed = _total(samples, "meterwax_events_consumed_total")
    accepted = _total(samples, "meterwax_events_accepted_total")
    duplicates = _by(samples, "meterwax_duplicates_total", "layer")
    rejected = {
        k: v for k, v in _by(samples, "meterwax_events_rejected_total", "reason").items() if v
    }
    # The books of the run: every message counted once, matching the generator.
    assert consumed == truth.messages
    assert accepted == truth.originals
    assert sum(duplicates.values()) == truth.duplicates
    assert sum(rejected.values()) == truth.invalid
    assert consumed == accepted + sum(duplicates.values()) + sum(rejected.values())
    assert _total(samples, "meterwax_late_events_total") > 0

    # What the sinks say they wrote is what ClickHouse holds.
    rows = _by(samples, "meterwax_sink_rows_total", "sink")
    client = connect(f"chdb://{workdir / 'ch'}", "metrics")
    stored_events = client.query("SELECT count() FROM metrics.accepted_events").result_rows[0][0]
    stored_windows = client.query("SELECT count() FROM metrics.rated_windows").result_rows[0][0]
    assert rows["clickhouse_events"] == stored_events
    assert rows["clickhouse_windows"] == stored_windows
    assert rows["clickhouse_windows"] == _total(samples, "meterwax_windows_emitted_total")
    assert rejected == {
        reason: float(n) for reason, n in rejected_counts(client, "metrics").items()
    }
    assert rows["dead_letters"] == sum(rejected.values())
    assert _total(samples, "meterwax_sink_failures_total") == 0

    # Money and time.
    charged = _total(samples, "meterwax_rated_amount_total", sign="charge")
    stored_amount = client.query("SELECT sum(amount) FROM metrics.window_usage").result_rows[0][0]
    credited = _total(samples, "meterwax_rated_amount_total", sign="credit")
    assert charged - credited == pytest.approx(float(stored_amount), rel=1e-9)
    assert _total(samples, "meterwax_event_latency_seconds_count", stage="live_counter") > 0
    assert _total(samples, "meterwax_event_latency_seconds_count", stage="clickhouse") > 0
    assert _total(samples, "meterwax_redis_seconds_count", operation="claim") > 0
    lag = _total(samples, "meterwax_watermark_lag_seconds")
    assert 0 < lag < 3600

    # Low cardinality: no tenant ever becomes a label.
    assert "tenant-" not in text
