"""The flow on the real broker, Redis and chDB: Kafka input, Redis dedup, dead letters, recovery."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

import orjson
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import cluster_main
from clickhouse_connect.driver.client import Client
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from dataflows.flow import FlowSpec, build_flow
from dataflows.kafka_source import KafkaBatchSource
from dataflows.outputs import EventLogSink, RatedWindowSink, RejectionSink
from dataflows.stats import RunStats
from operators.windowing import WindowConfig
from sinks.clickhouse import ClickHouseWriter, connect, rejected_counts, usage_totals
from sinks.kafka_dead_letters import DeadLetterProducer
from sinks.redis_idempotency import RedisIdempotencyStore
from tests.dataflows.scenario import (
    MINUTE,
    SCENARIO_CLOCK,
    Scenario,
    build_scenario,
    expected_totals,
)

pytestmark = pytest.mark.integration

Totals = dict[tuple[str, str], tuple[Decimal, Decimal]]


def produce(brokers: str, topic: str, lines: list[bytes], partitions: int = 0) -> None:
    """Produce lines keyed by tenant (when readable), as a platform would.

    With ``partitions``, lines go round-robin instead, so that no partition is
    empty (an empty partition holds the watermark for the idle timeout).
    """
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5})
    for n, line in enumerate(lines):
        if partitions:
            producer.produce(topic, value=line, partition=n % partitions)
            continue
        try:
            key = str(orjson.loads(line).get("subject", "")).encode()
        except (orjson.JSONDecodeError, AttributeError):
            key = None
        producer.produce(topic, value=line, key=key)
    assert producer.flush(30) == 0


def read_topic(
    brokers: str, topic: str, partitions: int = 1
) -> list[tuple[bytes, dict[str, bytes]]]:
    """Every message of ``topic`` (value and headers), read to the end."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "tests",
            "enable.partition.eof": True,
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[tuple[bytes, dict[str, bytes]]] = []
    ended = 0
    while ended < partitions:
        for msg in consumer.consume(500, 1.0):
            if msg.error():
                ended += 1
            else:
                out.append((msg.value(), dict(msg.headers() or [])))
    consumer.close()
    return out


@dataclass
class Rig:
    """Everything a run needs; each test gets its own topic, database and key prefix."""

    brokers: str
    topic: str
    dead_letter_topic: str
    catalogs: tuple[MeterCatalog, PricingCatalog]
    dsn: str
    database: str
    redis_url: str
    key_prefix: str
    client: Client

    def run(
        self,
        *,
        workers: int = 1,
        recovery: Path | None = None,
        redis: bool = True,
        engine: Literal["python", "native"] = "python",
    ) -> RunStats:
        meters, pricing = self.catalogs
        store = (
            RedisIdempotencyStore.from_url(self.redis_url, key_prefix=self.key_prefix)
            if redis
            else None
        )
        spec = FlowSpec(
            meters=meters,
            pricing=pricing,
            window=WindowConfig(MINUTE, 30_000, 3_600_000, 10_000),
            dedup_horizon_ms=3_600_000,
            shards=4,
            engine=engine,
            snapshots=recovery is not None,
            idempotency=store,
            clock=SCENARIO_CLOCK,
            # As `meterwax run` does: one instance per recovery directory.
            **({"instance": f"rig-{recovery.name}"} if recovery is not None else {}),
        )

        def open_writer() -> ClickHouseWriter:
            return ClickHouseWriter(connect(self.dsn, self.database), self.database)

        stats = RunStats()
        flow = build_flow(
            spec,
            source=KafkaBatchSource(
                [self.brokers],
                [self.topic],
                tail=False,
                add_config={"fetch.queue.backoff.ms": "10"},
                batch_size=50,
            ),
            window_sink=RatedWindowSink(open_writer),
            rejection_sink=RejectionSink(
                open_writer,
                open_dead_letters=lambda: DeadLetterProducer(self.brokers, self.dead_letter_topic),
            ),
            event_log_sink=EventLogSink(
                open_writer, {m.slug: m.aggregation.value for m in meters.meters}
            ),
            stats=stats,
        )
        config = None
        if recovery is not None:
            if not any(recovery.glob("*.sqlite3")):
                init_db_dir(recovery, 1)
            config = RecoveryConfig(recovery)
        cluster_main(
            flow,
            [],
            0,
            epoch_interval=timedelta(milliseconds=200),
            recovery_config=config,
            worker_count_per_proc=workers,
        )
        return stats

    def totals(self) -> Totals:
        return {
            (t.tenant, t.meter): (t.quantity, t.amount)
            for t in usage_totals(self.client, self.database)
        }


@pytest.fixture
def rig(
    kafka_brokers: str,
    new_topic: Callable[..., str],
    catalogs: tuple[MeterCatalog, PricingCatalog],
    chdb_dsn: str,
    ch_database: str,
    ch_client: Client,
    redis_url: str,
) -> Rig:
    return Rig(
        brokers=kafka_brokers,
        # One partition: which events are too late must not depend on how far other
        # partitions got (that race is the cluster and fault tests' business, which
        # leave too-late events out).
        topic=new_topic(partitions=1),
        dead_letter_topic=new_topic(partitions=1, prefix="dead-letters"),
        catalogs=catalogs,
        dsn=chdb_dsn,
        database=ch_database,
        redis_url=redis_url,
        key_prefix=f"test-{ch_database}",
        client=ch_client,
    )


@pytest.mark.parametrize("engine", ["python", "native"])
@pytest.mark.parametrize("workers", [1, 2])
def test_kafka_flow_totals_and_dead_letters(
    rig: Rig, workers: int, engine: Literal["python", "native"]
) -> None:
    scenario = build_scenario()
    produce(rig.brokers, rig.topic, scenario.lines)

    stats = rig.run(workers=workers, engine=engine)

    assert stats.consumed == len(scenario.lines)
    assert stats.accepted == len(scenario.accepted)
    assert stats.duplicates == scenario.duplicates
    assert dict(stats.rejected) == dict(scenario.rejected)
    assert rig.totals() == expected_totals(scenario)
    assert rejected_counts(rig.client, rig.database) == dict(scenario.rejected)
    letters = read_topic(rig.brokers, rig.dead_letter_topic)
    assert Counter(h["meterwax.reason"].decode() for _, h in letters) == scenario.rejected
    originals = set(scenario.lines)
    for value, headers in letters:
        assert value in originals  # the original bytes, untouched
        assert headers["meterwax.origin"].decode() == rig.topic
        assert int(headers["meterwax.offset"]) >= 0


@pytest.mark.parametrize("engine", ["python", "native"])
def test_second_run_from_offset_zero_with_fresh_state_changes_no_total(
    rig: Rig, engine: Literal["python", "native"]
) -> None:
    scenario = build_scenario()
    produce(rig.brokers, rig.topic, scenario.lines)
    first = rig.run(engine=engine)
    totals = rig.totals()

    second = rig.run(engine=engine)  # fresh state: only Redis remembers what was counted

    assert second.consumed == first.consumed
    assert second.accepted == 0
    assert second.redis_duplicates == first.accepted
    assert second.reconciles
    assert rig.totals() == totals == expected_totals(scenario)


def test_true_duplicates_older_than_the_state_are_caught_by_redis(rig: Rig) -> None:
    scenario = build_scenario(count=400)
    produce(rig.brokers, rig.topic, scenario.lines)
    rig.run()
    # The same events again, as new messages at new offsets (a producer retrying
    # after a timeout), read by a fresh flow that has no state of its own.
    produce(rig.brokers, rig.topic, [line for line in scenario.lines if line[:1] == b"{"][:300])

    stats = rig.run()

    assert stats.accepted == 0
    assert rig.totals() == expected_totals(scenario)


@pytest.mark.parametrize("engine", ["python", "native"])
def test_restart_from_recovery_continues_without_double_counting(
    rig: Rig, tmp_path: Path, engine: Literal["python", "native"]
) -> None:
    scenario: Scenario = build_scenario()
    half = len(scenario.lines) // 2
    produce(rig.brokers, rig.topic, scenario.lines[:half])
    first = rig.run(recovery=tmp_path, engine=engine)

    produce(rig.brokers, rig.topic, scenario.lines[half:])
    second = rig.run(recovery=tmp_path, engine=engine)

    assert first.consumed + second.consumed == len(scenario.lines)  # resumed, not re-read
    assert first.accepted + second.accepted == len(scenario.accepted)
    assert second.redis_duplicates == 0
    assert rig.totals() == expected_totals(scenario)
