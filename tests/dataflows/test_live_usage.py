"""Live usage counters in Redis and quota events on Kafka, on the real broker, Redis and chDB.

Every instant comes from the flow's clock, run at clocks years apart: what
Redis keeps (and for how long) must follow our clock, not the server's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import cluster_main
from clickhouse_connect.driver.client import Client

from config.clock import Clock
from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from config.pricing_catalog import load_pricing_catalog
from dataflows.flow import FlowSpec, build_flow
from dataflows.kafka_source import KafkaBatchSource
from dataflows.outputs import LiveUsageSink, RatedWindowSink, RejectionSink
from dataflows.stats import RunStats
from operators.windowing import WindowConfig
from sinks.clickhouse import ClickHouseWriter, connect
from sinks.kafka_dead_letters import ConfirmedProducer
from sinks.redis_keys import hard_limit_key, live_usage_key
from sinks.redis_live_writer import RETAIN_MS, LiveUsageWriter
from tests.clocks import CLOCK_OFFSETS, DAY_MS, mid_month_clock, month_start_ms
from tests.dataflows.conftest import PRICING_YAML
from tests.dataflows.test_kafka_flow import produce, read_topic

pytestmark = pytest.mark.integration

QUOTAS = """
        quotas:
          tokens: { soft_limit: "20000", hard_limit: "30000", thresholds: [50, 100] }
"""


MINUTE = 60_000
# Slack for the time between the writer computing a TTL and the test computing it.
TTL_SLACK_MS = 60_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _pricing(path: Path, meters: MeterCatalog, period_start_ms: int) -> PricingCatalog:
    """The test catalog, its v2 (with quotas on tokens) in force from ``period_start_ms``."""
    text = PRICING_YAML.replace("2026-01-01T00:00:00Z", "2000-01-01T00:00:00Z").replace(
        '      - version: v2\n        effective_from: "2026-11-01T00:00:00Z"\n',
        f'      - version: v2\n        effective_from: "{_iso(period_start_ms)}"\n' + QUOTAS,
    )
    assert "quotas" in text and "2026-" not in text.replace(_iso(period_start_ms), "")
    path.write_text(text)
    return load_pricing_catalog(path, meters)


def _events(first: int, count: int, start_ms: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "specversion": "1.0",
                "id": f"live-{n}",
                "source": "tests/live",
                "type": "llm.completion",
                "subject": "globex",
                "time": _iso(start_ms + n * 1000),
                "data": {"tokens": 100, "model": "m1"},
            }
        ).encode()
        for n in range(first, first + count)
    ]


@pytest.mark.parametrize("offset_ms", CLOCK_OFFSETS)
def test_counters_quota_events_once_and_hard_limit_flag(
    kafka_brokers: str,
    new_topic: Callable[..., str],
    redis_url: str,
    catalogs: tuple[MeterCatalog, PricingCatalog],
    chdb_dsn: str,
    ch_client: Client,
    ch_database: str,
    tmp_path: Path,
    offset_ms: int,
) -> None:
    # Mid-month, so the whole test is in one billing period (calendar months).
    clock: Clock = mid_month_clock(offset_ms)
    now_ms = clock.now_ms()
    period_start = month_start_ms(now_ms)
    period_end = month_start_ms(period_start + 32 * DAY_MS)
    pricing = _pricing(tmp_path / "pricing.yaml", catalogs[0], period_start)
    # Recent events of the current period, a second apart.
    first_ms = (now_ms - 60 * MINUTE) // MINUTE * MINUTE
    topic, quota_topic = new_topic(partitions=1), new_topic(prefix="quota")
    prefix = f"live-{ch_database}"
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)

    def run() -> RunStats:
        spec = FlowSpec(
            meters=catalogs[0],
            pricing=pricing,
            window=WindowConfig(60_000, 30_000, 3_600_000, 10_000),
            dedup_horizon_ms=3_600_000,
            shards=2,
            snapshots=True,
            instance="live-test",
            clock=clock,
        )

        def open_writer() -> ClickHouseWriter:
            return ClickHouseWriter(connect(chdb_dsn, ch_database), ch_database)

        stats = RunStats()
        flow = build_flow(
            spec,
            source=KafkaBatchSource(
                [kafka_brokers], [topic], tail=False, add_config={}, batch_size=20
            ),
            window_sink=RatedWindowSink(open_writer),
            rejection_sink=RejectionSink(open_writer),
            live_sink=LiveUsageSink(
                lambda: LiveUsageWriter(redis.Redis.from_url(redis_url), prefix, clock=clock),
                lambda: ConfirmedProducer(kafka_brokers, quota_topic),
            ),
            stats=stats,
        )
        cluster_main(
            flow,
            [],
            0,
            epoch_interval=timedelta(milliseconds=200),
            recovery_config=RecoveryConfig(recovery),
        )
        return stats

    # 150 events of 100 tokens: 15,000, past the 50% threshold (10,000) only.
    produce(kafka_brokers, topic, _events(0, 150, first_ms))
    run()
    # 150 more, after a restart from recovery: past 100% (20,000) and the hard limit.
    produce(kafka_brokers, topic, _events(150, 150, first_ms))
    run()

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    counter_key = live_usage_key(prefix, "globex", "tokens", period_start)
    counter = client.hgetall(counter_key)
    assert Decimal(counter["quantity"]) == 30_000
    assert Decimal(counter["amount"]) == Decimal(30_000) * Decimal("0.0000015")
    assert (counter["currency"], counter["period_end_ms"]) == ("USD", str(period_end))
    flag_key = hard_limit_key(prefix, "globex", "tokens")
    assert client.get(flag_key) == str(period_end)
    assert client.get(hard_limit_key(prefix, "globex", "calls")) is None
    # They expire when our clock says: the flag at the period end, the counter after retention.
    expected = {flag_key: period_end, counter_key: period_end + RETAIN_MS}
    for key, expiry_ms in expected.items():
        ttl = client.pttl(key)
        assert abs(ttl - (expiry_ms - clock.now_ms())) <= TTL_SLACK_MS, (key, ttl)

    events = [json.loads(value) for value, _ in read_topic(kafka_brokers, quota_topic)]
    kinds = sorted((e["kind"], e["percent"]) for e in events)
    assert kinds == [
        ("hard_limit", None),
        ("soft_limit", None),
        ("threshold", "100"),
        ("threshold", "50"),
    ]
    assert len({e["event_id"] for e in events}) == len(events)
