"""Live usage counters in Redis and quota events on Kafka, on the real broker, Redis and chDB."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import cluster_main
from clickhouse_connect.driver.client import Client

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
from sinks.redis_live_writer import LiveUsageWriter, hard_limit_key, live_usage_key
from tests.dataflows.conftest import PRICING_YAML
from tests.dataflows.scenario import PRICE_CHANGE_MS
from tests.dataflows.test_kafka_flow import produce, read_topic

pytestmark = pytest.mark.integration

QUOTAS = """
        quotas:
          tokens: { soft_limit: "20000", hard_limit: "30000", thresholds: [50, 100] }
"""


@pytest.fixture
def pricing(tmp_path: Path, catalogs: tuple[MeterCatalog, PricingCatalog]) -> PricingCatalog:
    # The test catalog with quotas on the basic plan's v2 tokens.
    text = PRICING_YAML.replace(
        '      - version: v2\n        effective_from: "2026-11-01T00:00:00Z"\n',
        '      - version: v2\n        effective_from: "2026-11-01T00:00:00Z"\n' + QUOTAS,
    )
    assert "quotas" in text
    path = tmp_path / "pricing.yaml"
    path.write_text(text)
    return load_pricing_catalog(path, catalogs[0])


def _events(first: int, count: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "specversion": "1.0",
                "id": f"live-{n}",
                "source": "tests/live",
                "type": "llm.completion",
                "subject": "globex",
                "time": f"2026-11-01T00:{n // 60:02d}:{n % 60:02d}Z",
                "data": {"tokens": 100, "model": "m1"},
            }
        ).encode()
        for n in range(first, first + count)
    ]


def test_counters_quota_events_once_and_hard_limit_flag(
    kafka_brokers: str,
    new_topic: Callable[..., str],
    redis_url: str,
    catalogs: tuple[MeterCatalog, PricingCatalog],
    pricing: PricingCatalog,
    chdb_dsn: str,
    ch_client: Client,
    ch_database: str,
    tmp_path: Path,
) -> None:
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
                lambda: LiveUsageWriter(redis.Redis.from_url(redis_url), prefix),
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
    produce(kafka_brokers, topic, _events(0, 150))
    run()
    # 150 more, after a restart from recovery: past 100% (20,000) and the hard limit.
    produce(kafka_brokers, topic, _events(150, 150))
    run()

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    counter = client.hgetall(live_usage_key(prefix, "globex", "tokens", PRICE_CHANGE_MS))
    assert Decimal(counter["quantity"]) == 30_000
    assert Decimal(counter["amount"]) == Decimal(30_000) * Decimal("0.0000015")
    assert counter["currency"] == "USD"
    assert client.get(hard_limit_key(prefix, "globex", "tokens")) is not None
    assert client.get(hard_limit_key(prefix, "globex", "calls")) is None

    events = [json.loads(value) for value, _ in read_topic(kafka_brokers, quota_topic)]
    kinds = sorted((e["kind"], e["percent"]) for e in events)
    assert kinds == [
        ("hard_limit", None),
        ("soft_limit", None),
        ("threshold", "100"),
        ("threshold", "50"),
    ]
    assert len({e["event_id"] for e in events}) == len(events)
